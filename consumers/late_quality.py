"""Late labels on the stream: the record processor's label stage (route, score, join, snapshot).

For a contract with ``[labels] arrival = "late"`` and ``kind_field`` (labels on the same stream),
the :class:`~consumers.processor.ShardProcessor` hands every batch to :class:`LateLabelStage`
first: label records are taken out before validation (:mod:`consumers.label_routing`), the data
records are decoded as always (they go to the lake with a null label column: the lake keeps what
arrived), then the decoded rows are scored by the served model (``BatchScorer``) and enter this
shard's :class:`~etl.quality_join.LabelJoin` as predictions (their event time is the
prediction's time) and the label rows as labels.

Exactly once with the checkpoint (docs/quality.md):

1. the flush makes the lake range durable;
2. :meth:`LateLabelStage.before_checkpoint` closes the window if it is due (``window_s`` and
   ``min_labels``, like the inline quality window) and saves the join's snapshot, with the closed
   window's figures still to publish, under the flush's last sequence number
   (:class:`~etl.quality_state.JoinStateStore`); a failed save raises ``LakeWriteError`` and the
   processor exits before its checkpoint (nothing lost: the range is replayed);
3. the processor checkpoints that sequence number;
4. :meth:`LateLabelStage.after_checkpoint` publishes the closed window (same metric names as the
   inline window) and saves the snapshot again without it.

A restarted processor restores the snapshot its checkpoint names and publishes what it still
holds to publish (a crash after 3, before 4); the records after the checkpoint are replayed into
it. A window is published only once its snapshot is checkpointed, so a crash before the checkpoint
re-forms it from the replay instead of publishing it twice. The one gap: a crash between a
publish and the second save (4) publishes that window again on restart.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from consumers.label_routing import LabelRouter, LabelRows
from consumers.metrics import MetricsPublisher
from consumers.quality_metrics import quality_datums
from consumers.scoring import BatchScorer
from etl.contract import Contract, Task
from etl.exceptions import ConfigError
from etl.quality import QualityFigures
from etl.quality_join import LabelJoin, new_join
from etl.quality_state import JoinStateStore
from etl.records import DeadLetter, RawRecord

log = logging.getLogger("driftline.quality")

#: Snapshots older than the checkpoint's are pruned every this many checkpoints.
PRUNE_EVERY = 20


def refuse_label_stream(contract: Contract) -> None:
    """Late labels on a second stream are not consumed yet: refuse at start, naming the key."""
    stream = contract.labels.stream
    if contract.labels.late and stream is not None:
        raise ConfigError(
            "labels.stream",
            f"contract {contract.name!r} declares late labels on a second stream ({stream!r});"
            " the consumer joins late labels only on the records' own stream: set [labels]"
            " kind_field (and label_kind) instead of stream, and put label records on the same"
            " stream with the prediction's partition key (docs/quality.md)",
        )


class LateLabelStage:
    """One shard's late-label join, fed by the processor; ``scorer=None`` routes only."""

    def __init__(
        self,
        contract: Contract,
        *,
        scorer: BatchScorer | None,
        publisher: MetricsPublisher | None,
        store: JoinStateStore | None,
        window_s: float,
        min_labels: int,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        refuse_label_stream(contract)
        self.router = LabelRouter(contract)
        self.contract = contract
        self.scorer, self.publisher, self.store = scorer, publisher, store
        self.window_s, self.min_labels = window_s, min_labels
        self._wall = wall_clock
        self.id_field = contract.id_field.name
        self.time_field = contract.event_time_field.name
        self.join = self._new_join()
        self.opened_at: float | None = None
        self.to_publish: list[dict[str, Any]] = []
        self.closed: list[QualityFigures] = []
        self.unscored = 0
        self.errors = 0
        self._checkpoints = 0

    @property
    def joining(self) -> bool:
        return self.scorer is not None and self.store is not None

    def _new_join(self) -> LabelJoin:
        return new_join(self.contract.task is Task.REGRESSION, self.contract.labels.horizon_s)

    # -- the batch -------------------------------------------------------------------------
    def route(
        self, records: Sequence[RawRecord], shard_id: str
    ) -> tuple[list[RawRecord], LabelRows, list[DeadLetter]]:
        routed = self.router.split(records, shard_id)
        return routed.data, routed.labels, routed.dead_letters

    def observe(self, rows: pa.Table, labels: LabelRows, now: float) -> None:
        """Predictions from the decoded rows, then the batch's labels, into the join."""
        if not self.joining:
            return
        if self.opened_at is None:
            self.opened_at = now
        if rows.num_rows:
            self._predict(rows)
        if not len(labels):
            return
        try:
            self.join.add_labels(labels.ids, labels.labels, labels.times)
        except Exception as exc:  # a join bug must not stall the shard's data path: counted
            self.errors += 1
            log.error("label join update failed: %s: %s", type(exc).__name__, exc)

    def _predict(self, rows: pa.Table) -> None:
        assert self.scorer is not None
        try:
            scored = self.scorer.score(rows)
        except Exception as exc:  # a scoring failure must not stop the data path: counted
            self.errors += 1
            self.unscored += rows.num_rows
            log.error("scoring for the label join failed: %s: %s", type(exc).__name__, exc)
            return
        if scored is None:
            self.unscored += rows.num_rows  # no model deployed yet: nothing to join
            return
        ids = [str(v) for v in rows.column(self.id_field).to_pylist()]
        try:
            self.join.add_predictions(ids, scored.scores.tolist(), _epoch_s(rows[self.time_field]))
        except Exception as exc:  # as above: counted, never raised into the data path
            self.errors += 1
            log.error("label join update failed: %s: %s", type(exc).__name__, exc)

    # -- exactly once with the checkpoint -----------------------------------------------------
    def restore(self, shard_id: str, checkpoint: str | None) -> None:
        """The join as of ``checkpoint`` (its snapshot), and publish what it still held."""
        self.join, self.to_publish, self.opened_at = self._new_join(), [], None
        if not self.joining or checkpoint is None:
            return
        assert self.store is not None
        doc = self.store.load(shard_id, checkpoint)
        if doc is None:
            if checkpoint.isdigit():
                log.warning(
                    "no label-join snapshot at the checkpoint: the join starts empty",
                    extra={"shard": shard_id, "checkpoint": checkpoint},
                )
            return
        self.join = LabelJoin.restore(doc, self._new_join().window)
        self.to_publish = list(doc.get("to_publish", []))
        log.info(
            "label join restored",
            extra={"shard": shard_id, "checkpoint": checkpoint, "pending": len(self.join.pending)},
        )
        if self.to_publish:
            self.after_checkpoint(shard_id, checkpoint)

    def due(self, now: float) -> bool:
        return (
            self.opened_at is not None
            and now - self.opened_at >= self.window_s
            and self.join.window.labels >= self.min_labels
        )

    def before_checkpoint(
        self, shard_id: str, last: str, now: float, *, force: bool = False
    ) -> None:
        """Close the window if due (or ``force`` and it holds labels), then save the snapshot
        under ``last``. Raises ``LakeWriteError`` when the save fails: hold the checkpoint."""
        if not self.joining:
            return
        assert self.store is not None
        if self.due(now) or (force and self.join.window.labels > 0):
            figures = self.join.close_window()
            stamp = self._wall().isoformat()
            self.to_publish.append({"timestamp": stamp, "figures": figures.to_dict()})
            self.opened_at = None
        self.store.save(shard_id, last, self._doc())

    def after_checkpoint(self, shard_id: str, last: str) -> None:
        """Publish the windows the checkpointed snapshot holds; save it again without them."""
        if not self.joining:
            return
        assert self.store is not None
        self._checkpoints += 1
        if self.to_publish:
            for item in self.to_publish:
                self._publish(QualityFigures(**item["figures"]), item["timestamp"])
            self.to_publish = []
            try:
                self.store.save(shard_id, last, self._doc())
            except Exception as exc:  # the next flush's snapshot supersedes it
                self.errors += 1
                log.error("label-join snapshot not re-saved after publishing: %s", exc)
        if self._checkpoints % PRUNE_EVERY == 0 and last.isdigit():
            try:
                self.store.prune(shard_id, last)
            except Exception as exc:
                log.warning("label-join snapshots not pruned: %s", exc)

    def _publish(self, figures: QualityFigures, stamp: str) -> None:
        self.closed.append(figures)
        del self.closed[:-16]
        c = self.join.counts
        log.info(
            "late-label quality window closed: labels=%d predictions=%d auc=%s",
            figures.labels,
            figures.predictions,
            figures.auc,
            extra={
                "joined": c.joined,
                "unlabelled": c.unlabelled,
                "orphan_labels": c.orphan_labels,
                "changed": c.changed,
                "duplicates": c.duplicates,
                "unscored": self.unscored,
                "errors": self.errors,
            },
        )
        if self.publisher is None:
            return
        datums = quality_datums(
            figures,
            stream_name=self.publisher.stream_name,
            timestamp=dt.datetime.fromisoformat(stamp),
            high_resolution=self.publisher.high_resolution,
        )
        self.publisher.put(datums)

    def _doc(self) -> dict[str, Any]:
        doc = self.join.snapshot()
        doc["to_publish"] = list(self.to_publish)
        return doc


def _epoch_s(col: pa.ChunkedArray) -> list[float]:
    """Timestamps as epoch seconds (floats)."""
    micros = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    values = np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6
    out: list[float] = values.tolist()
    return out


def make_label_stage(
    settings: Any, contract: Contract, clients: Any, pointer: Any
) -> LateLabelStage | None:
    """The label stage for a late-label contract (None otherwise); joining only with
    ``quality_scoring`` (else label records are routed and checkpointed, not joined)."""
    if not contract.labels.late:
        return None
    refuse_label_stream(contract)
    if not settings.quality_scoring or not settings.lake_bucket or not settings.stream_name:
        log.warning(
            "late label records are routed but not joined: quality_scoring, lake_bucket and"
            " stream_name must all be set"
        )
        return LateLabelStage(
            contract,
            scorer=None,
            publisher=None,
            store=None,
            window_s=settings.drift_window_s,
            min_labels=settings.quality_min_labels,
        )
    publisher = MetricsPublisher(
        clients.client("cloudwatch"),
        settings.metrics_namespace,
        stream_name=settings.stream_name,
        high_resolution=settings.metrics_high_resolution,
    )
    return LateLabelStage(
        contract,
        scorer=BatchScorer(pointer),
        publisher=publisher,
        store=JoinStateStore(clients.client("s3"), settings.lake_bucket, contract.name),
        window_s=settings.drift_window_s,
        min_labels=settings.quality_min_labels,
    )
