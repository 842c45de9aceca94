"""The join of predictions with their late labels by the contract's id field, into a quality window.

Pure keyed state, one per shard (a label record carries its prediction's partition key, so both
land on the same shard). What it tolerates:

* a label before its prediction: held (``early``) until the prediction comes, then joined;
* a label that never arrives: the prediction waits ``horizon_s`` of stream time, then counts as
  unlabelled (label coverage counts labels joined over predictions seen);
* a label that changes: last one wins, counted; if the first one is in the open window it is taken
  out of it exactly (``remove``), else the new one counts in the open window;
* the same prediction or label again (a replay after a crash, an at-least-once retry): no effect.

Time is the stream's own (the largest prediction or label time seen), never the wall clock, so a
replay of the same records from a snapshot reaches the same state: with the snapshot written
before the checkpoint (``etl/quality_state.py``) the join is exactly once in effect.

>>> from etl.quality import ClassificationWindow
>>> j = LabelJoin(ClassificationWindow(), horizon_s=3600)
>>> j.add_labels(["b"], [1.0], [100.0])          # early: its prediction is not here yet
>>> j.add_predictions(["a", "b"], [0.2, 0.9], [10.0, 20.0])
>>> j.add_labels(["a", "a"], [1.0, 0.0], [50.0, 60.0])   # a changes its mind: last one wins
>>> c = j.counts
>>> (c.joined, c.early_labels, c.changed, j.window.figures().auc)
(2, 1, 1, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from etl.quality import ClassificationWindow, QualityFigures, QualityWindow, RegressionWindow

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class JoinCounts:
    """What the join saw since it started (carried in its snapshot)."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    early_labels: int = 0
    changed: int = 0
    duplicates: int = 0
    unlabelled: int = 0
    orphan_labels: int = 0


@dataclass(slots=True)
class _Joined:
    score: float
    predicted_at: float
    label: float
    labelled_at: float
    in_window: bool


@dataclass(slots=True)
class _LabelBatch:
    """One ``add_labels`` call's window changes: rows in (one per id, the last) and rows out."""

    add: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    out: list[tuple[float, float, float]] = field(default_factory=list)

    def put(self, key: str, row: tuple[float, float, float]) -> None:
        self.add[key] = row


class LabelJoin:
    """Predictions waiting for labels, labels waiting for predictions, and the open window."""

    def __init__(self, window: QualityWindow, horizon_s: float) -> None:
        self.window = window
        self.horizon_s = horizon_s
        self.pending: dict[str, tuple[float, float]] = {}  # id -> (score, predicted_at)
        self.early: dict[str, tuple[float, float]] = {}  # id -> (label, labelled_at)
        self.joined: dict[str, _Joined] = {}
        self.counts = JoinCounts()
        self.stream_time = float("-inf")
        self.window_opened_at: float | None = None

    # -- input -----------------------------------------------------------------------------
    def add_predictions(
        self, ids: Sequence[str], scores: Sequence[float], times: Sequence[float]
    ) -> None:
        """Predictions (the model's score or value) with the time they were made."""
        rows: list[tuple[float, float, float]] = []
        new = 0
        for key, score, t in zip(ids, scores, times, strict=True):
            if key in self.pending or key in self.joined:
                self.counts.duplicates += 1
                continue
            new += 1
            self._tick(t)
            held = self.early.pop(key, None)
            if held is None:
                self.pending[key] = (float(score), float(t))
                continue
            self.joined[key] = _Joined(float(score), float(t), held[0], held[1], True)
            self.counts.joined += 1
            rows.append((float(score), held[0], held[1] - float(t)))
        self.counts.predictions += new
        self.window.observe_predictions(new)
        self._feed(rows, +1)

    def add_labels(
        self, ids: Sequence[str], labels: Sequence[float], times: Sequence[float]
    ) -> None:
        """Labels with the time they became known (the label's time, else its arrival)."""
        batch = _LabelBatch()
        for key, raw, when in zip(ids, labels, times, strict=True):
            label, t = float(raw), float(when)
            self.counts.labels += 1
            self._tick(t)
            done = self.joined.get(key)
            if done is not None:
                if done.label == label:
                    self.counts.duplicates += 1
                else:
                    self._change(key, done, label, t, batch)
                continue
            waiting = self.pending.pop(key, None)
            if waiting is None:
                if self.early.get(key, (None, None))[0] == label:
                    self.counts.duplicates += 1
                else:
                    self.early[key] = (label, t)  # last one wins here too
                    self.counts.early_labels += 1
                continue
            self.joined[key] = _Joined(waiting[0], waiting[1], label, t, True)
            self.counts.joined += 1
            batch.put(key, (waiting[0], label, t - waiting[1]))
        self._feed(batch.out, -1)
        self._feed(list(batch.add.values()), +1)

    def _change(self, key: str, done: _Joined, label: float, t: float, batch: _LabelBatch) -> None:
        """Last one wins: the old label leaves the open window (if it is in it), the new enters."""
        if done.in_window and key not in batch.add:
            batch.out.append((done.score, done.label, done.labelled_at - done.predicted_at))
        done.label, done.labelled_at, done.in_window = label, t, True
        batch.put(key, (done.score, label, t - done.predicted_at))
        self.counts.changed += 1
        self.window.count_changed()

    def _feed(self, rows: list[tuple[float, float, float]], sign: int) -> None:
        if not rows:
            return
        score, label, delay = (np.array(c, np.float64) for c in zip(*rows, strict=True))
        if sign > 0:
            self.window.update(score, label, delays_s=delay)
        else:
            self.window.remove(score, label, delays_s=delay)

    def _tick(self, t: float) -> None:
        self.stream_time = max(self.stream_time, float(t))
        if self.window_opened_at is None:
            self.window_opened_at = self.stream_time

    # -- time ------------------------------------------------------------------------------
    def expire(self) -> None:
        """Forget what is older than the horizon (stream time): unlabelled predictions, orphan
        labels, and joined ids whose label may no longer change."""
        cutoff = self.stream_time - self.horizon_s
        stale = [k for k, (_, t) in self.pending.items() if t < cutoff]
        for k in stale:
            del self.pending[k]
        self.counts.unlabelled += len(stale)
        orphans = [k for k, (_, t) in self.early.items() if t < cutoff]
        for k in orphans:
            del self.early[k]
        self.counts.orphan_labels += len(orphans)
        for k in [k for k, j in self.joined.items() if j.labelled_at < cutoff and not j.in_window]:
            del self.joined[k]

    def close_window(self) -> QualityFigures:
        """The open window's figures; a new window opens (joined ids stay, for changes)."""
        figures = self.window.figures()
        self.window.reset()
        for j in self.joined.values():
            j.in_window = False
        self.window_opened_at = None
        self.expire()
        return figures

    # -- snapshot (exactly once with the checkpoint) -----------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state; the open window is rebuilt from the joined ids flagged in it."""
        w = self.window
        return {
            "version": SNAPSHOT_VERSION,
            "horizon_s": self.horizon_s,
            "stream_time": None if self.stream_time == float("-inf") else self.stream_time,
            "window_opened_at": self.window_opened_at,
            "window_predictions": w.predictions,
            "window_changed": w.labels_changed,
            "counts": asdict(self.counts),
            "pending": {k: list(v) for k, v in self.pending.items()},
            "early": {k: list(v) for k, v in self.early.items()},
            "joined": {k: asdict(v) for k, v in self.joined.items()},
        }

    @classmethod
    def restore(cls, doc: dict[str, Any], window: QualityWindow) -> LabelJoin:
        """The join a :meth:`snapshot` was taken of, with ``window`` (empty) refilled."""
        if doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"join snapshot version {doc.get('version')!r} is not {SNAPSHOT_VERSION}"
            )
        j = cls(window, float(doc["horizon_s"]))
        j.stream_time = float("-inf") if doc["stream_time"] is None else float(doc["stream_time"])
        j.window_opened_at = doc["window_opened_at"]
        j.counts = JoinCounts(**doc["counts"])
        j.pending = {k: (float(v[0]), float(v[1])) for k, v in doc["pending"].items()}
        j.early = {k: (float(v[0]), float(v[1])) for k, v in doc["early"].items()}
        j.joined = {k: _Joined(**v) for k, v in doc["joined"].items()}
        rows = [
            (v.score, v.label, v.labelled_at - v.predicted_at)
            for v in j.joined.values()
            if v.in_window
        ]
        window.reset()
        window.observe_predictions(int(doc["window_predictions"]))
        window.count_changed(int(doc["window_changed"]))
        j._feed(rows, +1)
        return j


def new_join(regression: bool, horizon_s: float, threshold: float | None = 0.5) -> LabelJoin:
    """A join feeding the window a contract's task needs."""
    window: QualityWindow = (
        RegressionWindow()
        if regression
        else ClassificationWindow(0.5 if threshold is None else threshold)
    )
    return LabelJoin(window, horizon_s)
