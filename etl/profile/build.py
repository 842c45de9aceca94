"""Building and merging profiles: bins that follow the data (:mod:`etl.binning`), counts of
each feature, the thresholds calibrated to a false-alarm rate (:mod:`etl.calibration`) at build
and merge time.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from etl.profile.columns import (
    arrow_column,
    as_arrow,
    categorical_counts,
    categorical_values,
    column_names,
    num_rows,
    numeric_counts,
    numeric_values,
    top_categories,
)
from etl.profile.model import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    CategoricalProfile,
    DataWindow,
    FeatureProfile,
    NumericProfile,
    Profile,
    check_contract,
    make_version,
)


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


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    """How a profile is built: ``bins`` quantile bins per numeric feature, the ``top_k`` values
    of a categorical one, and thresholds calibrated to ``target_rate`` false windows per feature
    for windows of ``window_rows`` rows."""

    bins: int = DEFAULT_BINS
    top_k: int = DEFAULT_TOP_K
    target_rate: float = DEFAULT_TARGET_RATE
    window_rows: int = DEFAULT_WINDOW_ROWS

    def check(self) -> None:
        if self.bins < 1 or self.top_k < 1:
            raise BaselineError(f"bins={self.bins} and top_k={self.top_k} must both be >= 1")
        try:
            check_rate(self.target_rate, self.window_rows)
        except ValueError as exc:
            raise BaselineError(f"{exc}; pass e.g. target_rate=1e-4, window_rows=500") from None


def build_profile(
    data: Any,
    contract: Contract,
    *,
    options: ProfileOptions = ProfileOptions(),
    source: str = "",
    edges_from: Profile | None = None,
    created_at: str | None = None,
    features: Iterable[str] | None = None,
) -> Profile:
    """Profile the contract's features in ``data`` (pyarrow Table, DataFrame or mapping of arrays).

    ``edges_from`` reuses another profile's bin edges and categories, so that profiles of parts
    of a dataset merge exactly into the profile of the whole. A feature of the contract that the
    data lacks is an error here: a baseline must cover every monitored feature.
    """
    options.check()
    if edges_from is not None:
        check_contract(edges_from, contract)
    data = as_arrow(data)
    feats = _profile_features(data, contract, options, edges_from, features)
    start, end = _time_range(data, contract)
    created = created_at or _utcnow_iso()
    profile = Profile(
        contract_name=contract.name,
        contract_hash=contract.hash,
        features=feats,
        window=DataWindow(start=start, end=end, rows=num_rows(data), source=source),
        bins=edges_from.bins if edges_from is not None else options.bins,
        top_k=edges_from.top_k if edges_from is not None else options.top_k,
        created_at=created,
    )
    profile = replace(profile, version=make_version(created, profile))
    return calibrate(profile, target_rate=options.target_rate, window_rows=options.window_rows)


def _profile_features(
    data: Any,
    contract: Contract,
    options: ProfileOptions,
    edges_from: Profile | None,
    features: Iterable[str] | None,
) -> dict[str, FeatureProfile]:
    """Each wanted feature of the contract, profiled (on ``edges_from``'s bins when given)."""
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
        feats[f.name] = _feature_profile(data, f, bins=options.bins, top_k=options.top_k, like=like)
    return feats


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
    merged = Profile(
        contract_name=a.contract_name,
        contract_hash=a.contract_hash,
        features={name: _merge_feature(fa, b.features[name]) for name, fa in a.features.items()},
        window=_merge_windows(a.window, b.window),
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


def _merge_feature(fa: FeatureProfile, fb: FeatureProfile) -> FeatureProfile:
    """One feature's counts added up; bins (edges or categories) must be the same."""
    name = fa.name
    if isinstance(fa, NumericProfile) and isinstance(fb, NumericProfile):
        if fa.edges != fb.edges:
            raise BaselineError(
                f"feature {name!r}: bin edges differ; build the parts with"
                " edges_from=<one profile> so they merge"
            )
        mins = [m for m in (fa.min, fb.min) if m is not None]
        maxs = [m for m in (fa.max, fb.max) if m is not None]
        return replace(
            fa,
            counts=_add(fa.counts, fb.counts),
            nulls=fa.nulls + fb.nulls,
            min=min(mins) if mins else None,
            max=max(maxs) if maxs else None,
            nonfinite=fa.nonfinite + fb.nonfinite,
        )
    if isinstance(fa, CategoricalProfile) and isinstance(fb, CategoricalProfile):
        if fa.categories != fb.categories:
            raise BaselineError(
                f"feature {name!r}: categories differ; build the parts with"
                " edges_from=<one profile> so they merge"
            )
        return replace(fa, counts=_add(fa.counts, fb.counts), nulls=fa.nulls + fb.nulls)
    raise BaselineError(f"feature {name!r}: kinds differ ({fa.kind} vs {fb.kind})")


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _merge_windows(a: DataWindow, b: DataWindow) -> DataWindow:
    """Where the union's data came from: the earliest start, the latest end, both sources."""
    starts = [s for s in (a.start, b.start) if s is not None]
    ends = [e for e in (a.end, b.end) if e is not None]
    return DataWindow(
        start=min(starts) if starts else None,
        end=max(ends) if ends else None,
        rows=a.rows + b.rows,
        source=" + ".join(s for s in (a.source, b.source) if s),
    )
