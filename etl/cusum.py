"""A one-sided CUSUM over per-window evidence: small persistent shifts add up across windows.

``S ← max(0, S + z − k)``; drift when ``S > h``. ``z`` is a window's evidence in z units (about
standard normal while nothing changes, see :mod:`etl.calibration`), ``k`` the reference value
(0.5: tuned to shifts worth about one z per window) and ``h`` the threshold that
:func:`etl.calibration.cusum_threshold` sets for a null average run length of ``2/α`` windows.
A pure object, as River's detectors: ``update(z)`` then read ``drift_detected``; it pickles (the
state survives a lease handover) and ``reset()`` starts over.

>>> c = Cusum(threshold=3.0)
>>> [c.update(z) for z in (0.2, 1.5, 1.5, 1.5, 1.5)]
[False, False, False, False, True]
>>> round(c.statistic, 2)
4.0
"""

from __future__ import annotations

from dataclasses import dataclass

from etl.calibration import CUSUM_K, Z_MAX


@dataclass(slots=True)
class Cusum:
    threshold: float
    k: float = CUSUM_K
    statistic: float = 0.0
    drift_detected: bool = False

    def peek(self, z: float) -> float:
        """The statistic after ``z``, without taking it in."""
        return min(max(0.0, self.statistic + z - self.k), 4.0 * Z_MAX)

    def update(self, z: float) -> bool:
        self.statistic = self.peek(z)
        self.drift_detected = self.statistic > self.threshold
        return self.drift_detected

    def reset(self) -> None:
        self.statistic, self.drift_detected = 0.0, False
