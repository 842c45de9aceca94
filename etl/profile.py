"""Drift baselines: a versioned, mergeable per-feature profile of a dataset.

A :class:`Profile` is what the on-stream drift statistics compare against. It is built from the data
a model was trained on (``driftline baseline build``) and stored as JSON next to the lake:

* numeric feature → interior bin edges that follow the data (:mod:`etl.binning`: one bin per value
  for low-cardinality features and point masses, quantile bins for the rest, default 10; the outer
  bins are open-ended, ``(-inf, e0)`` and ``[e_last, +inf)``), the count in each bin, nulls
  (non-finite values count as nulls and are also counted apart), min, max;
* categorical feature (string, bool) → the top-K values (default 20) with their counts, plus one
  ``other`` count for every value outside the top K.

Bins are half-open on the right: a value equal to an edge falls into the bin above it
(``numpy.searchsorted(edges, x, side="right")``). Profiles built with the same edges and categories
merge exactly (counts add), so the profiles of two halves merge into the profile of the whole:

>>> import numpy as np
>>> from etl.contract import parse_contract
>>> c = parse_contract({"name": "readings", "partition_key": "site", "fields": [
...     {"name": "reading_id", "type": "string", "role": "id"},
...     {"name": "taken_at", "type": "timestamp", "role": "event_time"},
...     {"name": "site", "type": "string", "role": "attribute"},
...     {"name": "temperature", "type": "float", "role": "feature"},
...     {"name": "level", "type": "int", "role": "feature"},
...     {"name": "mode", "type": "string", "role": "feature"}]})
>>> rng = np.random.default_rng(0)
>>> data = {"temperature": rng.lognormal(3, 1, 1000), "level": rng.integers(0, 24, 1000),
...         "mode": np.array(["auto"] * 1000)}
>>> whole = build_profile(data, c, created_at="2026-01-01T00:00:00Z")
>>> half = lambda s: {k: v[s] for k, v in data.items()}
>>> a = build_profile(half(slice(0, 500)), c, edges_from=whole)
>>> b = build_profile(half(slice(500, None)), c, edges_from=whole)
>>> merge(a, b).features == whole.features
True

The profile also carries the per-feature thresholds calibrated to a false-alarm rate
(:mod:`etl.calibration`), computed from its own bins at build and merge time.

Storage (I/O at the edge, the S3 client is injected): ``baselines/<table>/<version>.json`` and a
pointer ``baselines/<table>/CURRENT.json`` naming the current one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from etl import aws, jsonsafe
from etl.binning import data_edges
from etl.calibration import (
    DEFAULT_DRAWS,
    DEFAULT_TARGET_RATE,
    DEFAULT_WINDOW_ROWS,
    Calibration,
    calibrate_feature,
    check_rate,
)
from etl.contract import Contract, Field
from etl.exceptions import BaselineError

log = logging.getLogger(__name__)

#: The document format this module writes and reads.
PROFILE_FORMAT = "driftline.profile/2"
#: Formats this module reads: /1 (no calibration, no exact-value bins) is calibrated on load.
READABLE_FORMATS = ("driftline.profile/1", PROFILE_FORMAT)
POINTER_NAME = "CURRENT.json"
DEFAULT_BINS = 10
DEFAULT_TOP_K = 20
OTHER = "__other__"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# -- column access (pyarrow, pandas or a mapping of arrays) ------------------------------------
def column_names(data: Any) -> list[str]:
    """The column names of a pyarrow Table, a pandas DataFrame or a mapping of arrays."""
    if isinstance(data, pa.Table | pa.RecordBatch):
        return list(data.schema.names)
    if isinstance(data, Mapping):
        return [str(k) for k in data]
    if hasattr(data, "columns"):  # pandas.DataFrame
        return [str(c) for c in data.columns]
    raise BaselineError(
        "expected a pyarrow Table, a pandas DataFrame or a mapping of arrays,"
        f" got {type(data).__name__}"
    )


def arrow_column(data: Any, name: str) -> pa.Array | pa.ChunkedArray:
    """One column as an Arrow array (zero-copy where the input allows it)."""
    if isinstance(data, pa.Table | pa.RecordBatch):
        return data.column(name)
    if not isinstance(data, Mapping) and hasattr(data, "columns"):  # pandas DataFrame
        return as_arrow(data[[name]]).column(0)
    col = data[name]
    if isinstance(col, pa.Array | pa.ChunkedArray):
        return col
    if hasattr(col, "to_numpy") and hasattr(col, "dtype"):  # pandas Series
        return pa.Array.from_pandas(col)
    arr = np.asarray(col)
    return pa.array(arr, from_pandas=arr.dtype.kind in "fO")


def as_arrow(data: Any) -> Any:
    """A pandas DataFrame as a pyarrow Table (converted once); anything else unchanged."""
    if isinstance(data, pa.Table | pa.RecordBatch | Mapping) or not hasattr(data, "columns"):
        return data
    with warnings.catch_warnings():
        # pyarrow reads tz-aware columns through Series.values, which pandas 3 deprecates
        warnings.filterwarnings("ignore", message=".*Series.values.*")
        return pa.Table.from_pandas(data, preserve_index=False)


def num_rows(data: Any) -> int:
    if isinstance(data, pa.Table | pa.RecordBatch):
        return int(data.num_rows)
    names = column_names(data)
    if hasattr(data, "shape") and not isinstance(data, Mapping):
        return int(data.shape[0])
    return len(data[names[0]]) if names else 0


def numeric_values(col: pa.Array | pa.ChunkedArray) -> FloatArray:
    """A numeric column as float64 with NaN for nulls (NaN and ±inf count as null)."""
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BaselineError(
                f"expected a numeric column, got Arrow type {col.type}; fix the data or the"
                " contract"
            ) from exc
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    out = col.to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=np.float64)


def categorical_values(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A categorical column as Arrow strings (bools become ``"true"``/``"false"``)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    if pa.types.is_dictionary(col.type):
        return pc.cast(col, pa.string())
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BaselineError(f"cannot read Arrow type {col.type} as a categorical column") from exc


# -- the profile --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NumericProfile:
    """Counts of one numeric feature in its bins. ``len(counts) == len(edges) + 1``.

    ``nulls`` includes the ``nonfinite`` (±inf, NaN in a float column is a null);
    ``discrete`` says every baseline value has a bin of its own (:mod:`etl.binning`).
    """

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    nulls: int
    min: float | None
    max: float | None
    kind: Literal["numeric"] = "numeric"
    discrete: bool = False
    nonfinite: int = 0

    @property
    def count(self) -> int:
        """Non-null values."""
        return sum(self.counts)

    @property
    def n(self) -> int:
        """Rows seen, nulls included."""
        return self.count + self.nulls

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "nulls": self.nulls,
            "min": self.min,
            "max": self.max,
            "discrete": self.discrete,
            "nonfinite": self.nonfinite,
        }


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    """Counts of one categorical feature: the top-K values, then ``other`` (the last count)."""

    name: str
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    nulls: int
    kind: Literal["categorical"] = "categorical"

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def n(self) -> int:
        return self.count + self.nulls

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "categories": list(self.categories),
            "counts": list(self.counts),
            "nulls": self.nulls,
        }


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, slots=True)
class DataWindow:
    """Where a profile's data came from."""

    start: str | None = None
    end: str | None = None
    rows: int = 0
    source: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    """A versioned, JSON-serialisable drift baseline for the features of one contract."""

    contract_name: str
    contract_hash: str
    features: Mapping[str, FeatureProfile]
    window: DataWindow = field(default_factory=DataWindow)
    bins: int = DEFAULT_BINS
    top_k: int = DEFAULT_TOP_K
    created_at: str = ""
    version: str = ""
    calibration: Calibration | None = None

    @property
    def table(self) -> str:
        """The lake table (and baseline folder) this profile belongs to: the contract's name."""
        return self.contract_name

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": self.version,
            "created_at": self.created_at,
            "contract": {"name": self.contract_name, "hash": self.contract_hash},
            "window": {
                "start": self.window.start,
                "end": self.window.end,
                "rows": self.window.rows,
                "source": self.window.source,
            },
            "params": {"bins": self.bins, "top_k": self.top_k},
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "calibration": self.calibration.to_dict() if self.calibration else None,
        }

    def to_json(self) -> str:
        return jsonsafe.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<baseline>") -> Profile:
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BaselineError(
                f"{source}: not a JSON document ({exc}); rebuild it with `driftline baseline build`"
            ) from None
        return cls.from_dict(doc, source=source)

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "<baseline>") -> Profile:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        if (
            isinstance(got, str)
            and got.startswith("driftline.profile/")
            and (got not in READABLE_FORMATS)
        ):
            raise BaselineError(
                f"{source}: baseline format {got!r} is not one this driftline reads"
                f" ({', '.join(READABLE_FORMATS)}); upgrade driftline, or rebuild the baseline"
                " with this version's `driftline baseline build`"
            )
        if got not in READABLE_FORMATS:
            raise BaselineError(
                f"{source}: not a driftline baseline (format {got!r}, expected {PROFILE_FORMAT!r});"
                " build one with `driftline baseline build`"
            )
        try:
            contract = doc["contract"]
            window = doc.get("window") or {}
            params = doc.get("params") or {}
            feats: dict[str, FeatureProfile] = {}
            for name, f in doc["features"].items():
                feats[name] = _feature_from_dict(str(name), f)
            cal = doc.get("calibration")
            return cls(
                contract_name=str(contract["name"]),
                contract_hash=str(contract["hash"]),
                features=feats,
                window=DataWindow(
                    start=window.get("start"),
                    end=window.get("end"),
                    rows=int(window.get("rows", 0)),
                    source=str(window.get("source", "")),
                ),
                bins=int(params.get("bins", DEFAULT_BINS)),
                top_k=int(params.get("top_k", DEFAULT_TOP_K)),
                created_at=str(doc.get("created_at", "")),
                version=str(doc.get("version", "")),
                calibration=Calibration.from_dict(cal) if cal else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BaselineError(
                f"{source}: malformed baseline ({type(exc).__name__}: {exc}); rebuild it with"
                " `driftline baseline build`"
            ) from None


def _feature_from_dict(name: str, f: Mapping[str, Any]) -> FeatureProfile:
    kind = f["kind"]
    counts = tuple(int(c) for c in f["counts"])
    if kind == "numeric":
        edges = tuple(float(e) for e in f["edges"])
        if len(counts) != len(edges) + 1 or list(edges) != sorted(set(edges)):
            raise ValueError(
                f"feature {name!r}: {len(edges)} edges need {len(edges) + 1} counts"
                " and edges must be strictly increasing"
            )
        return NumericProfile(
            name=name,
            edges=edges,
            counts=counts,
            nulls=int(f["nulls"]),
            min=None if f.get("min") is None else float(f["min"]),
            max=None if f.get("max") is None else float(f["max"]),
            discrete=bool(f.get("discrete", False)),
            nonfinite=int(f.get("nonfinite", 0)),
        )
    if kind == "categorical":
        cats = tuple(str(c) for c in f["categories"])
        if len(counts) != len(cats) + 1:
            raise ValueError(
                f"feature {name!r}: {len(cats)} categories need {len(cats) + 1} counts"
            )
        return CategoricalProfile(name=name, categories=cats, counts=counts, nulls=int(f["nulls"]))
    raise ValueError(f"feature {name!r}: unknown kind {kind!r}")


# -- building -----------------------------------------------------------------------------------
def numeric_counts(values: FloatArray, edges: Sequence[float] | FloatArray) -> tuple[IntArray, int]:
    """(counts per bin, nulls) of ``values`` in the bins of ``edges``; NaN and ±inf are nulls."""
    nan = ~np.isfinite(values)
    nulls = int(nan.sum())
    valid = values[~nan] if nulls else values
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), valid, side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64), nulls


def categorical_counts(
    col: pa.Array | pa.ChunkedArray, categories: Sequence[str] | pa.Array
) -> tuple[IntArray, int]:
    """(counts per category then ``other``, nulls) of a string column, vectorised by Arrow."""
    k = len(categories)
    value_set = (
        categories if isinstance(categories, pa.Array) else pa.array(list(categories), pa.string())
    )
    idx = pc.index_in(col, value_set=value_set)
    nulls = int(col.null_count)
    filled = pc.fill_null(idx, k)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks != 1 else filled.chunk(0)
    counts = np.bincount(filled.to_numpy(zero_copy_only=False), minlength=k + 1).astype(np.int64)
    counts[k] -= nulls  # nulls were filled into the "other" slot
    return counts, nulls


def top_categories(col: pa.Array | pa.ChunkedArray, top_k: int) -> tuple[str, ...]:
    """The ``top_k`` most frequent non-null values; ties broken by value so the order is stable."""
    vc = pc.value_counts(col.drop_null() if isinstance(col, pa.Array) else pc.drop_null(col))
    values = vc.field("values").to_pylist()
    counts = vc.field("counts").to_pylist()
    ranked = sorted(zip(values, counts, strict=True), key=lambda vc: (-vc[1], str(vc[0])))
    return tuple(str(v) for v, _ in ranked[:top_k])


def _feature_profile(
    data: Any, f: Field, *, bins: int, top_k: int, like: FeatureProfile | None
) -> FeatureProfile:
    col = arrow_column(data, f.name)
    if f.is_numeric:
        if like is not None and not isinstance(like, NumericProfile):
            raise BaselineError(
                f"feature {f.name!r} is numeric but the reference profile has it as {like.kind}"
            )
        values = numeric_values(col)
        finite = np.isfinite(values)
        valid = values[finite]
        edges, discrete = (
            (like.edges, like.discrete) if like is not None else data_edges(valid, bins)
        )
        counts, nulls = numeric_counts(values, edges)
        return NumericProfile(
            name=f.name,
            edges=tuple(edges),
            counts=tuple(int(c) for c in counts),
            nulls=nulls,
            min=float(valid.min()) if valid.size else None,
            max=float(valid.max()) if valid.size else None,
            discrete=discrete,
            nonfinite=int(np.count_nonzero(np.isinf(values))),
        )
    if like is not None and not isinstance(like, CategoricalProfile):
        raise BaselineError(
            f"feature {f.name!r} is categorical but the reference profile has it as {like.kind}"
        )
    scol = categorical_values(col)
    cats = like.categories if like is not None else top_categories(scol, top_k)
    ccounts, cnulls = categorical_counts(scol, cats)
    return CategoricalProfile(
        name=f.name, categories=tuple(cats), counts=tuple(int(c) for c in ccounts), nulls=cnulls
    )


def _time_range(data: Any, contract: Contract) -> tuple[str | None, str | None]:
    name = contract.event_time_field.name
    if name not in column_names(data):
        return None, None
    col = arrow_column(data, name)
    if not pa.types.is_timestamp(col.type):
        try:
            col = pc.cast(col, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None, None
    mm = pc.min_max(col)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return _iso(lo), _iso(hi)


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    if isinstance(t, dt.datetime):
        aware = t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
        return str(aware.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))
    return str(t)


def _utcnow_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _content_digest(profile: Profile) -> str:
    doc = profile.to_dict()
    doc.pop("version", None)
    doc.pop("created_at", None)
    doc.pop("calibration", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:8]


def make_version(created_at: str, profile: Profile) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex of the content>``: sortable by time, distinct by content."""
    stamp = "".join(ch for ch in created_at[:19] if ch.isdigit())
    stamp = f"{stamp[:8]}T{stamp[8:14]}Z" if len(stamp) >= 14 else "undated"
    return f"{stamp}-{_content_digest(profile)}"


def build_profile(
    data: Any,
    contract: Contract,
    *,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    source: str = "",
    edges_from: Profile | None = None,
    created_at: str | None = None,
    features: Iterable[str] | None = None,
    target_rate: float = DEFAULT_TARGET_RATE,
    window_rows: int = DEFAULT_WINDOW_ROWS,
) -> Profile:
    """Profile the contract's features in ``data`` (pyarrow Table, DataFrame or mapping of arrays).

    ``edges_from`` reuses another profile's bin edges and categories, so that profiles of parts
    of a dataset merge exactly into the profile of the whole. A feature of the contract that the
    data lacks is an error here: a baseline must cover every monitored feature. The thresholds are
    calibrated to ``target_rate`` false windows per feature for windows of ``window_rows`` rows.
    """
    if bins < 1 or top_k < 1:
        raise BaselineError(f"bins={bins} and top_k={top_k} must both be >= 1")
    try:
        check_rate(target_rate, window_rows)
    except ValueError as exc:
        raise BaselineError(f"{exc}; pass e.g. target_rate=1e-4, window_rows=500") from None
    if edges_from is not None:
        check_contract(edges_from, contract)
    data = as_arrow(data)
    wanted = set(features) if features is not None else None
    present = set(column_names(data))
    feats: dict[str, FeatureProfile] = {}
    for f in contract.features:
        if wanted is not None and f.name not in wanted:
            continue
        if f.name not in present:
            raise BaselineError(
                f"feature {f.name!r} of contract {contract.name!r} is not in the data (columns:"
                f" {sorted(present)}); profile data that carries every feature"
            )
        like = edges_from.features.get(f.name) if edges_from is not None else None
        if edges_from is not None and like is None:
            raise BaselineError(
                f"feature {f.name!r} is not in the reference profile"
                f" {edges_from.version!r}; build without edges_from"
            )
        feats[f.name] = _feature_profile(data, f, bins=bins, top_k=top_k, like=like)
    start, end = _time_range(data, contract)
    created = created_at or _utcnow_iso()
    profile = Profile(
        contract_name=contract.name,
        contract_hash=contract.hash,
        features=feats,
        window=DataWindow(start=start, end=end, rows=num_rows(data), source=source),
        bins=edges_from.bins if edges_from is not None else bins,
        top_k=edges_from.top_k if edges_from is not None else top_k,
        created_at=created,
    )
    profile = replace(profile, version=make_version(created, profile))
    return calibrate(profile, target_rate=target_rate, window_rows=window_rows)


def calibrate(
    profile: Profile,
    *,
    target_rate: float = DEFAULT_TARGET_RATE,
    window_rows: int = DEFAULT_WINDOW_ROWS,
) -> Profile:
    """The profile with every feature's thresholds calibrated (seeded by the feature's name, so
    the same profile always gets the same thresholds)."""
    cals = {}
    for name, fp in profile.features.items():
        oor = 0.0
        if isinstance(fp, NumericProfile) and not fp.discrete and fp.count > 0:
            oor = 2.0 / (fp.count + 1)
        cals[name] = calibrate_feature(
            np.asarray(fp.counts, np.int64),
            fp.nulls,
            window_rows=window_rows,
            target_rate=target_rate,
            oor_rate=oor,
            ks=isinstance(fp, NumericProfile),
            seed=zlib.crc32(name.encode()),
        )
    cal = Calibration(
        target_rate=target_rate, window_rows=window_rows, draws=DEFAULT_DRAWS, features=cals
    )
    return replace(profile, calibration=cal)


def merge(a: Profile, b: Profile) -> Profile:
    """The profile of the union of two datasets profiled with the same edges and categories."""
    if a.contract_hash != b.contract_hash:
        raise BaselineError(
            f"cannot merge profiles of different contracts ({a.contract_hash[:12]} vs"
            f" {b.contract_hash[:12]})"
        )
    if set(a.features) != set(b.features):
        raise BaselineError(
            f"cannot merge profiles of different features: {sorted(a.features)}"
            f" vs {sorted(b.features)}"
        )
    feats: dict[str, FeatureProfile] = {}
    for name, fa in a.features.items():
        fb = b.features[name]
        if isinstance(fa, NumericProfile) and isinstance(fb, NumericProfile):
            if fa.edges != fb.edges:
                raise BaselineError(
                    f"feature {name!r}: bin edges differ; build the parts with"
                    " edges_from=<one profile> so they merge"
                )
            mins = [m for m in (fa.min, fb.min) if m is not None]
            maxs = [m for m in (fa.max, fb.max) if m is not None]
            feats[name] = NumericProfile(
                name=name,
                edges=fa.edges,
                counts=tuple(x + y for x, y in zip(fa.counts, fb.counts, strict=True)),
                nulls=fa.nulls + fb.nulls,
                min=min(mins) if mins else None,
                max=max(maxs) if maxs else None,
                discrete=fa.discrete,
                nonfinite=fa.nonfinite + fb.nonfinite,
            )
        elif isinstance(fa, CategoricalProfile) and isinstance(fb, CategoricalProfile):
            if fa.categories != fb.categories:
                raise BaselineError(
                    f"feature {name!r}: categories differ; build the parts with"
                    " edges_from=<one profile> so they merge"
                )
            feats[name] = CategoricalProfile(
                name=name,
                categories=fa.categories,
                counts=tuple(x + y for x, y in zip(fa.counts, fb.counts, strict=True)),
                nulls=fa.nulls + fb.nulls,
            )
        else:
            raise BaselineError(f"feature {name!r}: kinds differ ({fa.kind} vs {fb.kind})")
    starts = [s for s in (a.window.start, b.window.start) if s is not None]
    ends = [e for e in (a.window.end, b.window.end) if e is not None]
    sources = [s for s in (a.window.source, b.window.source) if s]
    merged = Profile(
        contract_name=a.contract_name,
        contract_hash=a.contract_hash,
        features=feats,
        window=DataWindow(
            start=min(starts) if starts else None,
            end=max(ends) if ends else None,
            rows=a.window.rows + b.window.rows,
            source=" + ".join(sources),
        ),
        bins=a.bins,
        top_k=a.top_k,
        created_at=max(a.created_at, b.created_at),
    )
    merged = replace(merged, version=make_version(merged.created_at, merged))
    if a.calibration is None:
        return merged
    return calibrate(
        merged, target_rate=a.calibration.target_rate, window_rows=a.calibration.window_rows
    )


def check_contract(profile: Profile, contract: Contract) -> None:
    """Refuse a baseline built for another contract (or another version of this one)."""
    if profile.contract_hash != contract.hash:
        raise BaselineError(
            f"baseline {profile.version!r} was built for contract {profile.contract_name!r} with"
            f" hash {profile.contract_hash}, but the running contract {contract.name!r} has hash"
            f" {contract.hash}; rebuild the baseline with `driftline baseline build` against the"
            " current contract (or run with the contract the baseline was built for)"
        )


# -- storage ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BaselinePointer:
    """The content of ``baselines/<table>/CURRENT.json``."""

    version: str
    uri: str


def baseline_key(prefix: str, table: str, version: str) -> str:
    return f"{prefix}/{table}/{version}.json"


def pointer_key(prefix: str, table: str) -> str:
    return f"{prefix}/{table}/{POINTER_NAME}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    return aws.split_s3_uri(uri, BaselineError)


def _is_missing(exc: Exception) -> bool:
    return aws.is_not_found(exc)


def save_baseline(
    s3_client: Any, bucket: str, prefix: str, profile: Profile, *, make_current: bool = True
) -> str:
    """Write the profile (and, by default, the pointer naming it current); returns its s3 URI."""
    key = baseline_key(prefix, profile.table, profile.version)
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=profile.to_json().encode(), ContentType="application/json"
    )
    uri = f"s3://{bucket}/{key}"
    if make_current:
        pointer = json.dumps({"version": profile.version, "uri": uri}, sort_keys=True)
        s3_client.put_object(
            Bucket=bucket,
            Key=pointer_key(prefix, profile.table),
            Body=pointer.encode(),
            ContentType="application/json",
        )
    log.info("baseline %s written to %s (current=%s)", profile.version, uri, make_current)
    return uri


def read_pointer(s3_client: Any, bucket: str, prefix: str, table: str) -> BaselinePointer | None:
    """The current-baseline pointer, or None when no baseline was published yet."""
    key = pointer_key(prefix, table)
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _is_missing(exc):
            return None
        raise
    try:
        doc = json.loads(body)
        return BaselinePointer(version=str(doc["version"]), uri=str(doc["uri"]))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BaselineError(
            f"s3://{bucket}/{key}: malformed pointer ({exc}); republish the"
            " baseline with `driftline baseline build`"
        ) from None


def load_baseline(uri: str | Path, *, s3_client: Any = None) -> Profile:
    """Load a baseline from ``s3://bucket/key`` (client required) or a local file path."""
    text = str(uri)
    if text.startswith("s3://"):
        if s3_client is None:
            raise BaselineError(f"{text}: an S3 client is needed to read an s3:// baseline")
        bucket, key = split_s3_uri(text)
        try:
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _is_missing(exc):
                raise BaselineError(
                    f"{text} does not exist; list baselines under"
                    f" s3://{bucket}/{key.rsplit('/', 1)[0]}/"
                ) from None
            raise
        return Profile.from_json(body, source=text)
    path = Path(text.removeprefix("file://"))
    if not path.is_file():
        raise BaselineError(f"baseline file {str(path)!r} does not exist")
    return Profile.from_json(path.read_bytes(), source=str(path))


def write_baseline_file(path: str | Path, profile: Profile) -> Path:
    p = Path(str(path).removeprefix("file://"))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(profile.to_json())
    tmp.replace(p)
    return p


def load_current_baseline(
    s3_client: Any, bucket: str, prefix: str, table: str, *, contract: Contract | None = None
) -> Profile | None:
    """The baseline the pointer names (None if none yet); checked against ``contract`` if given."""
    pointer = read_pointer(s3_client, bucket, prefix, table)
    if pointer is None:
        return None
    profile = load_baseline(pointer.uri, s3_client=s3_client)
    if contract is not None:
        check_contract(profile, contract)
    return profile


class CurrentBaseline:
    """Follows the pointer: ``refresh()`` re-reads it and loads the profile only when it changed.

    The record processor calls ``refresh()`` at every window close, so a newly published baseline
    takes effect without a restart. A baseline for another contract is refused (BaselineError).
    """

    def __init__(self, s3_client: Any, bucket: str, prefix: str, contract: Contract) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._prefix = prefix
        self._contract = contract
        self.profile: Profile | None = None
        self.pointer: BaselinePointer | None = None

    def refresh(self) -> Profile | None:
        pointer = read_pointer(self._s3, self._bucket, self._prefix, self._contract.name)
        if pointer is None or pointer == self.pointer:
            return self.profile
        profile = load_baseline(pointer.uri, s3_client=self._s3)
        check_contract(profile, self._contract)
        self.profile, self.pointer = profile, pointer
        log.info("drift baseline now %s", pointer.version)
        return profile
