"""Model quality on the stream, for contracts whose label rides on the record (inline).

A ``BatchObserver`` next to the drift window: each decoded batch is scored with the served model
(:class:`consumers.scoring.BatchScorer`), and since each row carries its label, each row is a
labelled prediction for this shard's :class:`etl.quality.ClassificationWindow` (or the regression
window). A window closes like a drift window (``drift_window_s`` of processing time) once it holds
``quality_min_labels`` labels, and its figures go to CloudWatch next to the drift metrics
(``consumers/quality_metrics.py``), where the quality alarm watches ``QualityAUC``.

Rows with a null label are not labelled predictions: they count as predictions only (coverage).
Late labels (``[labels] arrival = "late"``) are joined by the processor's label stage instead
(``consumers/late_quality.py``, docs/quality.md). Nothing here may fail the data path.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consumers.metrics import MetricsPublisher
from consumers.quality_metrics import quality_datums
from consumers.scoring import BatchScorer
from etl.contract import Contract, Task
from etl.quality import QualityFigures, QualityWindow, new_window

log = logging.getLogger("driftline.quality")


class QualityObserver:
    """Scores each batch, feeds the inline labels to a quality window, publishes it on close."""

    def __init__(
        self,
        contract: Contract,
        scorer: BatchScorer,
        publisher: MetricsPublisher,
        *,
        window_s: float,
        min_labels: int,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        label = contract.label
        if label is None or contract.labels.late:
            raise ValueError(f"contract {contract.name!r} has no inline label to score against")
        self.label = label.name
        self.scorer = scorer
        self.publisher = publisher
        self.window_s, self.min_labels = window_s, min_labels
        self._wall = wall_clock
        self.window: QualityWindow = new_window(contract.task is Task.REGRESSION)
        self.opened_at: float | None = None
        self.errors = 0
        self.closed: list[QualityFigures] = []

    def observe(self, rows: pa.Table, dead_letters: int, now: float) -> None:
        try:
            if self.opened_at is None:
                self.opened_at = now
            scored = self.scorer.score(rows)
            if scored is None:
                return  # no model deployed yet
            labels = rows.column(self.label)
            known = pc.is_valid(labels).to_numpy(zero_copy_only=False)
            self.window.observe_predictions(rows.num_rows)
            y = np.asarray(labels.filter(known).to_numpy(zero_copy_only=False), dtype=np.float64)
            self.window.update(scored.scores[known], y, delays_s=np.zeros(y.size))
        except Exception as exc:  # the data path goes on; the window just misses this batch
            self.errors += 1
            log.error("quality window update failed: %s: %s", type(exc).__name__, exc)

    def flush(self, now: float) -> None:
        try:
            if self.opened_at is None or now - self.opened_at < self.window_s:
                return
            if self.window.labels < self.min_labels:
                return  # extends until enough labels arrived
            figures = self.window.figures()
            datums = quality_datums(
                figures,
                stream_name=self.publisher.stream_name,
                timestamp=self._wall(),
                high_resolution=self.publisher.high_resolution,
            )
            self.publisher.put(datums)
            self.closed.append(figures)
            del self.closed[:-16]
            log.info("quality window closed: labels=%d auc=%s", figures.labels, figures.auc)
            self.window.reset()
            self.opened_at = None
        except Exception as exc:
            self.errors += 1
            log.error("quality window close failed: %s: %s", type(exc).__name__, exc)


class Observers:
    """Several batch observers as one (the processor takes one)."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def observe(self, rows: pa.Table, dead_letters: int, now: float) -> None:
        for o in self.observers:
            o.observe(rows, dead_letters, now)

    def flush(self, now: float) -> None:
        for o in self.observers:
            o.flush(now)


def make_quality_observer(
    settings: Any, contract: Contract, clients: Any, pointer: Path
) -> QualityObserver | None:
    """The quality observer from the process settings (None when off or not applicable)."""
    if not settings.quality_scoring or settings.stream_name is None:
        return None
    if contract.labels.late:
        return None  # the processor's label stage joins late labels (consumers/late_quality.py)
    if contract.label is None:
        log.warning("quality scoring off: contract %s has no inline label", contract.name)
        return None
    publisher = MetricsPublisher(
        clients.client("cloudwatch"),
        settings.metrics_namespace,
        stream_name=settings.stream_name,
        high_resolution=settings.metrics_high_resolution,
    )
    return QualityObserver(
        contract,
        BatchScorer(pointer),
        publisher,
        window_s=settings.drift_window_s,
        min_labels=settings.quality_min_labels,
    )
