"""The label join (pure): early labels, missing labels, changed labels, repeats, and exactly once
through snapshots taken at checkpoints and replays after a crash. scikit-learn is the oracle of the
figures, computed on the final label of every id."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, roc_auc_score

from etl.quality import ClassificationWindow, RegressionWindow
from etl.quality_join import LabelJoin, new_join

Event = tuple[str, str, float, float]  # (kind, id, value, time)


def events(n: int, seed: int) -> tuple[list[Event], dict[str, tuple[float, float]]]:
    """A stream of predictions and late labels: 10 % of labels never come, 5 % arrive before their
    prediction, 5 % change once later, 5 % are delivered twice. Returns the events in arrival order
    and, per labelled id, (score, final label)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, Event]] = []
    final: dict[str, tuple[float, float]] = {}
    for i in range(n):
        key, t = f"id-{i}", float(i)
        y = float(rng.random() < 0.3)
        score = float(np.round(1 / (1 + np.exp(-(rng.normal() + 1.5 * y - 0.7))), 3))
        out.append((t, ("p", key, score, t)))
        r = rng.random()
        if r < 0.10:
            continue  # never labelled
        lt = t - 0.5 if r < 0.15 else t + rng.exponential(40.0)
        out.append((lt, ("l", key, y, lt)))
        if r > 0.95:
            out.append((lt + 0.1, ("l", key, y, lt + 0.1)))  # delivered twice
        if 0.85 < r <= 0.90:
            y = 1.0 - y
            out.append((lt + 30.0, ("l", key, y, lt + 30.0)))  # changed: last one wins
        final[key] = (score, y)
    out.sort(key=lambda e: e[0])
    return [e for _, e in out], final


def feed(join: LabelJoin, batch: list[Event]) -> None:
    """One processor batch: its predictions, then its labels (a batch's order within kinds)."""
    for kind in ("p", "l"):
        rows = [e for e in batch if e[0] == kind]
        if not rows:
            continue
        ids, values, times = [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
        if kind == "p":
            join.add_predictions(ids, values, times)
        else:
            join.add_labels(ids, values, times)


def test_the_window_holds_every_ids_final_label_and_equals_sklearn() -> None:
    # GIVEN predictions and labels with early, missing, changed and repeated labels
    stream, final = events(3_000, seed=1)
    join = LabelJoin(ClassificationWindow(), horizon_s=1e9)
    # WHEN they arrive in batches of 50 (one window, nothing expires)
    for a in range(0, len(stream), 50):
        feed(join, stream[a : a + 50])
    # THEN the window is the final label of every labelled id, nothing twice
    f = join.window.figures()
    scores = np.array([s for s, _ in final.values()])
    labels = np.array([y for _, y in final.values()])
    assert f.labels == len(final)
    assert f.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert f.predictions == 3_000 and f.label_coverage == len(final) / 3_000
    c = join.counts
    assert c.joined == len(final) and c.early_labels > 0 and c.duplicates > 0
    assert c.changed == f.labels_changed > 0
    assert len(join.pending) == 3_000 - len(final) and not join.early


def test_labels_missing_past_the_horizon_count_as_unlabelled_and_orphans_expire() -> None:
    join = LabelJoin(ClassificationWindow(), horizon_s=100)
    join.add_predictions(["a", "b"], [0.1, 0.9], [0.0, 0.0])
    join.add_labels(["zz"], [1], [10.0])  # its prediction never comes
    join.add_labels(["b"], [1], [20.0])
    join.add_predictions(["c"], [0.5], [500.0])  # stream time moves on
    figures = join.close_window()
    assert (figures.labels, figures.predictions, figures.label_coverage) == (1, 3, 1 / 3)
    assert (join.counts.unlabelled, join.counts.orphan_labels) == (1, 1)
    assert set(join.pending) == {"c"} and not join.early and "b" not in join.joined


def test_a_label_changed_after_its_window_closed_counts_in_the_open_window() -> None:
    join = LabelJoin(ClassificationWindow(), horizon_s=1e6)
    join.add_predictions(["a", "b"], [0.2, 0.8], [0.0, 0.0])
    join.add_labels(["a", "b"], [0, 1], [1.0, 1.0])
    first = join.close_window()
    join.add_labels(["a"], [1], [2.0])  # a changes after its window closed
    second = join.window.figures()
    assert (first.labels, first.auc) == (2, 1.0)
    assert (second.labels, second.labels_changed, second.precision) == (1, 1, 0.0)


def test_regression_join() -> None:
    join = new_join(regression=True, horizon_s=60)
    assert isinstance(join.window, RegressionWindow)
    join.add_predictions(["a", "b"], [10.0, 20.0], [0.0, 0.0])
    join.add_labels(["a", "b", "b"], [12.0, 20.0, 25.0], [5.0, 5.0, 9.0])
    f = join.window.figures()
    assert f.mae == pytest.approx(mean_absolute_error([12.0, 25.0], [10.0, 20.0]))
    assert (f.labels, f.labels_changed, f.delay_p50_s) == (2, 1, 7.0)


def state(join: LabelJoin) -> dict[str, Any]:
    doc = join.snapshot()
    return {**doc, "figures": asdict(join.window.figures())}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_crash_and_replay_from_the_checkpoints_snapshot_is_exactly_once(seed: int) -> None:
    # GIVEN a stream in batches; after every 3rd batch the processor flushes: it saves the join's
    # snapshot under the last sequence (batch index) and only then checkpoints
    stream, _ = events(1_500, seed=seed)
    batches = [stream[a : a + 40] for a in range(0, len(stream), 40)]
    reference = LabelJoin(ClassificationWindow(), horizon_s=200)
    for i, b in enumerate(batches):
        feed(reference, b)
        if i % 7 == 6:
            reference.close_window()
    # WHEN the processor is killed at random points (after a snapshot, before its checkpoint,
    # or between flushes) and restarts from the checkpoint's snapshot, replaying what follows
    rng = np.random.default_rng(seed)
    crashes = set(rng.choice(len(batches), 6, replace=False).tolist())
    snapshots: dict[int, str] = {}
    checkpoint, replayed = -1, 0
    join = LabelJoin(ClassificationWindow(), horizon_s=200)
    i = 0
    while i < len(batches):
        feed(join, batches[i])
        if i % 7 == 6:
            join.close_window()
        if i % 3 == 2:
            snapshots[i] = json.dumps(join.snapshot())  # durable ...
            if rng.random() < 0.7:
                checkpoint = i  # ... then checkpointed (or killed in between)
        if i in crashes:
            crashes.discard(i)
            doc = json.loads(snapshots[checkpoint]) if checkpoint >= 0 else None
            join = (
                LabelJoin.restore(doc, ClassificationWindow())
                if doc
                else LabelJoin(ClassificationWindow(), horizon_s=200)
            )
            replayed += i - checkpoint
            i = checkpoint + 1  # the KCL redelivers everything after the checkpoint
            continue
        i += 1
    # THEN state, counts and the open window's figures equal a run that never crashed
    assert replayed > 6
    got, want = state(join), state(reference)
    for key in ("counts", "pending", "early", "joined", "stream_time", "window_predictions"):
        assert got[key] == want[key], key
    for key, value in want["figures"].items():
        if value is None:
            assert got["figures"][key] is None, key
        else:
            assert got["figures"][key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_a_snapshot_restores_the_open_window() -> None:
    stream, _ = events(800, seed=9)
    join = LabelJoin(ClassificationWindow(threshold=0.4), horizon_s=1e9)
    feed(join, stream)
    back = LabelJoin.restore(json.loads(json.dumps(join.snapshot())), ClassificationWindow(0.4))
    a, b = join.window.figures(), back.window.figures()
    assert (a.labels, a.auc, a.precision, a.labels_changed, a.predictions) == (
        b.labels,
        b.auc,
        b.precision,
        b.labels_changed,
        b.predictions,
    )
    with pytest.raises(ValueError, match="version"):
        LabelJoin.restore({"version": 99}, ClassificationWindow())
