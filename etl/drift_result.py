"""What a closed drift window reports: each feature's statistics (:class:`FeatureDrift`) and the
window's (:class:`DriftResult`), with the feature :class:`Status` (see :mod:`etl.drift`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class Status(StrEnum):
    """A feature's state in a window."""

    OK = "ok"
    EMPTY = "empty"
    MISSING_IN_BASELINE = "missing_in_baseline"
    MISSING_IN_DATA = "missing_in_data"


MISSING = (Status.MISSING_IN_BASELINE, Status.MISSING_IN_DATA)


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's statistics for one window."""

    name: str
    kind: Literal["numeric", "categorical", "unknown"]
    status: Status
    rows: int = 0
    nulls: int = 0
    psi: float | None = None
    js_distance: float | None = None
    ks_statistic: float | None = None
    chi2_pvalue: float | None = None
    null_rate_delta: float | None = None
    out_of_range_share: float | None = None
    nonfinite: int = 0

    statistic: float | None = None
    dof: int | None = None
    evidence: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    cusum: float | None = None
    cusum_threshold: float | None = None
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class DriftResult:
    """A closed window's statistics; ``drift_score`` is the largest feature score (None when no
    feature was scored, or the window has fewer than ``min_rows`` rows), ``max_psi`` the largest
    PSI."""

    rows: int
    features: tuple[FeatureDrift, ...]
    baseline_version: str = ""
    contract_hash: str = ""
    drift_score: float | None = None
    missing: tuple[str, ...] = field(default=())
    max_psi: float | None = None
    min_rows: int = 0

    @property
    def too_small(self) -> bool:
        """Fewer rows than the window minimum: statistics shown, no score."""
        return self.rows < self.min_rows

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drift_score": self.drift_score,
            "max_psi": self.max_psi,
            "min_rows": self.min_rows,
            "baseline_version": self.baseline_version,
            "contract_hash": self.contract_hash,
            "missing": list(self.missing),
            "features": [f.to_dict() for f in self.features],
        }
