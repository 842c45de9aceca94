"""The drift baseline's model: per-feature profiles, the versioned :class:`Profile` and its JSON
document (``driftline.profile/2``; ``/1`` still loads and is calibrated when a window opens).

A numeric feature has interior bin edges (the outer bins are open-ended, ``(-inf, e0)`` and
``[e_last, +inf)``), the count in each bin, nulls (non-finite values count as nulls and are also
counted apart), min and max; a categorical feature the top-K values with their counts, plus one
``other`` count for every value outside the top K. The calibration (:mod:`etl.calibration`)
travels in the same document.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from etl import jsonsafe
from etl.calibration import Calibration
from etl.contract import Contract
from etl.exceptions import BaselineError

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


def check_contract(profile: Profile, contract: Contract) -> None:
    """Refuse a baseline built for another contract (or another version of this one)."""
    if profile.contract_hash != contract.hash:
        raise BaselineError(
            f"baseline {profile.version!r} was built for contract {profile.contract_name!r} with"
            f" hash {profile.contract_hash}, but the running contract {contract.name!r} has hash"
            f" {contract.hash}; rebuild the baseline with `driftline baseline build` against the"
            " current contract (or run with the contract the baseline was built for)"
        )


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
