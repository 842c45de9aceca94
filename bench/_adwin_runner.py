"""ADWIN (River) over the detection bench's streams, in River's own venv (``make bench-tools``).

    bench/.tools/river/bin/python bench/_adwin_runner.py IN.npz OUT.json

``IN.npz`` holds the baselines ``warm_b`` (rows x features), per trial ``t`` ``stream_t`` (the
windows' rows, ``windows*window_rows x features``) and ``base[t]`` (its baseline), ``window_rows``,
``delta`` and
``kinds`` (per feature: 0 numeric, 1 categorical codes, 2 numeric with nulls in the baseline).
Detectors, ``ADWIN(delta)`` each: one per numeric feature on its non-null values; one per category
code of a categorical feature on its indicator; one on the null indicator of a feature whose
baseline has nulls. They first see the baseline rows (warm-up, detections ignored), then the
stream. Output: per trial, the sorted indices of the windows in which any detector fired.
Pure Python plus River: no driftline import (this venv does not have it).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
from river.drift import ADWIN


def _detectors(
    kinds: list[int], warm: np.ndarray, delta: float
) -> list[tuple[int, str, float, ADWIN]]:
    out = []
    for j, kind in enumerate(kinds):
        if kind == 1:
            for code in np.unique(warm[:, j]):
                out.append((j, "eq", float(code), ADWIN(delta=delta)))
        else:
            out.append((j, "value", 0.0, ADWIN(delta=delta)))
        if kind == 2:
            out.append((j, "null", 0.0, ADWIN(delta=delta)))
    return out


def _feed(det: tuple[int, str, float, ADWIN], column: np.ndarray) -> list[int]:
    """Rows (of ``column``) at which the detector fired."""
    _, how, code, adwin = det
    fired = []
    for i, x in enumerate(column.tolist()):
        if how == "value":
            if math.isnan(x):
                continue
            adwin.update(x)
        elif how == "null":
            adwin.update(1.0 if math.isnan(x) else 0.0)
        else:
            adwin.update(1.0 if x == code else 0.0)
        if adwin.drift_detected:
            fired.append(i)
    return fired


def run_trial(
    kinds: list[int], warm: np.ndarray, stream: np.ndarray, window_rows: int, delta: float
) -> list[int]:
    windows: set[int] = set()
    for det in _detectors(kinds, warm, delta):
        _feed(det, warm[:, det[0]])
        windows.update(i // window_rows for i in _feed(det, stream[:, det[0]]))
    return sorted(windows)


def main() -> int:
    data = np.load(sys.argv[1])
    kinds = [int(k) for k in data["kinds"]]
    window_rows = int(data["window_rows"])
    delta = float(data["delta"])
    trials = int(data["trials"])
    out = [
        run_trial(kinds, data[f"warm_{data['base'][t]}"], data[f"stream_{t}"], window_rows, delta)
        for t in range(trials)
    ]
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
