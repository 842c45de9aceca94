"""The KCL record processor: decode → validate → buffer per shard → flush to the lake → checkpoint.

The MultiLangDaemon (Java) starts one child process per leased shard and talks to it over
stdin/stdout (so this module never prints: logs go to stderr). The sink contract:

* a record is checkpointed only after it is durable in the lake or the dead-letter prefix;
* a flush covers a contiguous sequence range and writes keys derived from it;
* after a crash or a lease handover, the ranges that were flushed but not checkpointed (their
  manifests lie past the checkpoint) are replayed exactly: committed ones are skipped and
  checkpointed, a pending one is rewritten with the same range, so the same objects are rewritten;
* ``lease_lost`` drops the buffer without checkpointing; ``shard_ended`` and ``shutdown_requested``
  flush, then checkpoint;
* a lake write that still fails after bounded retries ends the process (``SystemExit``): the
  daemon then exits and its supervisor restarts it from the last checkpoint. Nothing is skipped.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import operator
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, Protocol

import pyarrow as pa
import pybase64
from amazon_kclpy.messages import Record

from consumers.flush import FlushPolicy, FlushReason
from etl.exceptions import LakeWriteError
from etl.keys import sequence_key
from etl.lake import LakeWriter, Manifest
from etl.records import DeadLetter, RawRecord, Reason, RecordDecoder

log = logging.getLogger("driftline.consumer")


class Checkpointer(Protocol):
    def checkpoint(
        self, sequence_number: str | None = None, sub_sequence_number: int | None = None
    ) -> None: ...


class LabelStage(Protocol):
    """Late labels on the stream (``consumers.late_quality.LateLabelStage``): takes label records
    out before validation, joins them with the scored data rows, and snapshots the join between
    a durable flush and its checkpoint."""

    def route(
        self, records: Sequence[RawRecord], shard_id: str
    ) -> tuple[list[RawRecord], Any, list[DeadLetter]]: ...

    def observe(self, rows: pa.Table, labels: Any, now: float) -> None: ...

    def restore(self, shard_id: str, checkpoint: str | None) -> None: ...

    def before_checkpoint(
        self, shard_id: str, last: str, now: float, *, force: bool = False
    ) -> None: ...

    def after_checkpoint(self, shard_id: str, last: str) -> None: ...

    def due(self, now: float) -> bool: ...


class BatchObserver(Protocol):
    """Sees every decoded batch (e.g. the drift window); must never fail the data path."""

    def observe(self, rows: pa.Table, dead_letters: int, now: float) -> None: ...

    def flush(self, now: float) -> None: ...


@dataclass
class _Buffer:
    tables: list[pa.Table] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    first: str | None = None
    last: str | None = None
    records: int = 0
    nbytes: int = 0
    opened_at: float = 0.0

    def add(
        self,
        decoded_rows: pa.Table,
        dead: list[DeadLetter],
        first: str,
        last: str,
        count: int,
        nbytes: int,
        now: float,
    ) -> None:
        if self.first is None:
            self.first, self.opened_at = first, now
        self.last = last
        if decoded_rows.num_rows:
            self.tables.append(decoded_rows)
        self.dead_letters.extend(dead)
        self.records += count
        self.nbytes += nbytes


def to_raw_records(records: Sequence[Any]) -> list[RawRecord]:
    """Convert amazon_kclpy ``Record`` objects (or the protocol's dicts) to :class:`RawRecord`.

    This runs once per record before anything else, so it is written like the decoder: for the
    daemon's ``Record`` objects the columns are gathered with C-level ``map``s, the payloads are
    base64-decoded by pybase64 (SIMD; the standard library's decoder alone took longer than
    decoding and validating the JSON: 2.4 µs vs 0.5 µs per 1 KB record) and the named tuples are
    built in C. The arrival time is the daemon's integer milliseconds, not the ``datetime`` that
    ``Record`` derives from it.
    """
    if not records:
        return []
    if all(map(isinstance, records, repeat(Record))):
        payloads = _b64decode_all(list(map(_DATA_B64, records)))
        rows = zip(
            payloads,
            map(_SEQ, records),
            map(_PKEY, records),
            map(_ARRIVAL_MS, records),
            strict=True,
        )
        out: list[RawRecord] = list(map(tuple.__new__, repeat(RawRecord), rows))
        return out
    return [_to_raw_record(r) for r in records]


def _kpl_aggregated(records: Sequence[RawRecord]) -> set[int]:
    """Positions of records that share a sequence number with another one in the batch.

    The KCL hands over the user records of a KPL aggregate one by one, all with the aggregate's
    sequence number (and a sub-sequence number), always within one batch. Rows are identified by
    (shard, sequence number) downstream, so they would collide: they go to the dead letters whole.
    """
    seqs = list(map(_RAW_SEQ, records))
    if len(set(seqs)) == len(seqs):
        return set()
    counts = Counter(seqs)
    return {i for i, seq in enumerate(seqs) if counts[seq] > 1}


def _b64decode_all(texts: list[str]) -> list[bytes]:
    try:
        return list(map(_B64_STRICT, texts))
    except ValueError:  # not canonical base64 (never from the daemon): decode as Record does
        return [base64.b64decode(t) for t in texts]


def _to_raw_record(r: Any) -> RawRecord:
    """One record from a protocol dict or any object shaped like ``Record`` (tests, tools)."""
    if isinstance(r, dict):
        data_b64, seq, pkey = r["data"], r["sequenceNumber"], r.get("partitionKey", "")
        arrival = r.get("approximateArrivalTimestamp")
    else:
        data_b64, seq, pkey = r.data, r.sequence_number, r.partition_key
        arrival = r.approximate_arrival_timestamp
    if isinstance(arrival, datetime):
        arrival_ms: int | None = int(arrival.timestamp() * 1000)
    else:
        arrival_ms = int(arrival) if arrival is not None else None
    return RawRecord(
        data=base64.b64decode(data_b64),
        sequence_number=str(seq),
        partition_key=pkey or "",
        approximate_arrival_ms=arrival_ms,
    )


_B64_STRICT = functools.partial(pybase64.b64decode, validate=True)
_RAW_SEQ = operator.attrgetter("sequence_number")
_RAW_DATA = operator.attrgetter("data")
_RECORD_FIELDS = ("data", "sequence_number", "partition_key", "timestamp_millis")


def _record_getters() -> tuple[Callable[[Any], Any], ...]:
    """Getters for ``Record``'s base64 text, sequence number, partition key and arrival ms.

    The library exposes them as Python properties over private attributes; reading the attributes
    directly costs half as much. They are used only if a probe record shows they hold exactly what
    the properties return, so a library that stores its fields differently gets the properties.
    """
    probe = Record(
        {
            "data": "e30=",
            "partitionKey": "pk",
            "sequenceNumber": "42",
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": 7,
        }
    )
    public = tuple(operator.attrgetter(name) for name in _RECORD_FIELDS)
    private = tuple(operator.attrgetter(f"_{name}") for name in _RECORD_FIELDS)
    try:
        same = all(p(probe) == q(probe) for p, q in zip(public, private, strict=True))
    except AttributeError:
        same = False
    return private if same else public


_DATA_B64, _SEQ, _PKEY, _ARRIVAL_MS = _record_getters()


@dataclass(frozen=True, slots=True)
class Clocks:
    """Time as a :class:`ShardProcessor` sees it (tests inject their own), and how often it
    tries a throttled checkpoint."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = time.sleep
    checkpoint_attempts: int = 6


class ShardProcessor:
    """Everything the KCL asks of a processor, written against plain inputs so it is testable.

    :class:`KclRecordProcessor` adapts the amazon_kclpy message objects to these methods.
    """

    def __init__(
        self,
        decoder: RecordDecoder,
        writer: LakeWriter,
        policy: FlushPolicy,
        *,
        observer: BatchObserver | None = None,
        clocks: Clocks | None = None,
        labels: LabelStage | None = None,
    ) -> None:
        self.decoder = decoder
        self.labels = labels
        self.writer = writer
        self.policy = policy
        self.observer = observer
        clocks = clocks or Clocks()
        self._clock = clocks.monotonic
        self._wall = clocks.wall
        self._sleep = clocks.sleep
        self._checkpoint_attempts = clocks.checkpoint_attempts
        self.shard_id = ""
        self._buffer = _Buffer()
        self._replay: deque[Manifest] = deque()
        self._fed: str | None = None
        self.checkpointed: str | None = None
        self.skipped_replayed = 0

    # -- lifecycle -------------------------------------------------------------------------
    def initialize(self, shard_id: str, checkpoint: str | None) -> None:
        self.shard_id = shard_id
        self._buffer = _Buffer()
        self.checkpointed = checkpoint
        self._replay = deque(self.writer.uncheckpointed(shard_id, checkpoint))
        self._fed = None  # the last record the label join saw
        if self.labels is not None:
            self.labels.restore(shard_id, checkpoint)
        log.info(
            "initialized",
            extra={"shard": shard_id, "checkpoint": checkpoint, "replay_ranges": len(self._replay)},
        )

    def process(self, records: Sequence[RawRecord], checkpointer: Checkpointer) -> None:
        now = self._clock()
        pending = list(records)
        while pending:
            if self._replay:
                pending = self._take_replay(pending, checkpointer, now)
            else:
                self._add(pending, now)
                pending = []
                self._maybe_flush(checkpointer, now)
        if not records:
            self._maybe_flush(checkpointer, now)
        if self.labels is not None and self.labels.due(now):
            self._close_labels(now, force=False)
        if self.observer is not None:
            self.observer.flush(now)

    def lease_lost(self) -> None:
        dropped = self._buffer.records
        self._buffer = _Buffer()
        log.warning(
            "lease lost: buffer dropped, not checkpointed",
            extra={"shard": self.shard_id, "dropped_records": dropped},
        )

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        self._flush(checkpointer, FlushReason.SHARD_END)
        self._close_labels(self._clock(), force=True)
        # The KCL requires a checkpoint at SHARD_END (no sequence number) before children start.
        self._checkpoint(checkpointer, None)

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        self._flush(checkpointer, FlushReason.SHUTDOWN)
        self._close_labels(self._clock(), force=True)
        if self.observer is not None:
            self.observer.flush(self._clock())

    # -- late labels -------------------------------------------------------------------------
    def _close_labels(self, now: float, *, force: bool) -> None:
        """Close the label join's window at the checkpoint itself: only when nothing is buffered
        or being replayed, so the join holds exactly the records up to the checkpoint."""
        seq = self.checkpointed
        if self.labels is None or self._buffer.records or self._replay:
            return
        if seq is None or not seq.isdigit():
            return
        if self._fed is not None and sequence_key(self._fed) > sequence_key(seq):
            return  # the join saw records past the checkpoint (a refused checkpoint): not here
        self._save_labels(seq, now, force=force)
        self.labels.after_checkpoint(self.shard_id, seq)

    def _save_labels(self, last: str, now: float, *, force: bool = False) -> None:
        """The join's snapshot under ``last``, after the flush and before its checkpoint."""
        if self.labels is None:
            return
        try:
            self.labels.before_checkpoint(self.shard_id, last, now, force=force)
        except LakeWriteError as exc:
            log.critical(
                "label-join snapshot not saved; exiting before the checkpoint so the KCL"
                " replays from the last one",
                extra={"shard": self.shard_id, "last": last, "error": str(exc)},
            )
            raise SystemExit(3) from None

    def _checkpoint_labelled(self, checkpointer: Checkpointer, last: str, now: float) -> None:
        """Snapshot, checkpoint, then publish what the checkpointed snapshot closed."""
        self._save_labels(last, now)
        self._checkpoint(checkpointer, last)
        if self.labels is not None and self.checkpointed == last:
            self.labels.after_checkpoint(self.shard_id, last)

    def _route(
        self, records: Sequence[RawRecord]
    ) -> tuple[Sequence[RawRecord], Any, list[DeadLetter]]:
        if self.labels is None:
            return records, None, []
        return self.labels.route(records, self.shard_id)

    def _join_only(self, records: Sequence[RawRecord], now: float) -> None:
        """A replayed range already committed to the lake: not rewritten, but the join (restored
        at the checkpoint) must still see its predictions and labels."""
        if self.labels is None or not records:
            return
        self._fed = records[-1].sequence_number
        aggregated = _kpl_aggregated(records)  # dead letters in the lake: not joined either
        rows = [r for i, r in enumerate(records) if i not in aggregated] if aggregated else records
        data, labels, _ = self._route(rows)
        batch = self.decoder.decode(data, shard_id=self.shard_id, ingest_time=self._wall())
        self.labels.observe(batch.table, labels, now)

    # -- buffering ---------------------------------------------------------------------------
    def _add(self, records: Sequence[RawRecord], now: float) -> None:
        if not records:
            return
        aggregated = _kpl_aggregated(records)
        rows = [r for i, r in enumerate(records) if i not in aggregated] if aggregated else records
        data, labels, label_dead = self._route(rows)
        batch = self.decoder.decode(data, shard_id=self.shard_id, ingest_time=self._wall())
        dead, nbytes = batch.dead_letters + label_dead, batch.input_bytes
        if data is not rows:  # label records count toward the buffer's bytes like any record
            nbytes += sum(map(len, map(_RAW_DATA, rows))) - sum(map(len, map(_RAW_DATA, data)))
        if aggregated:
            dead = dead + [self._aggregated_letter(records[i]) for i in sorted(aggregated)]
            nbytes += sum(len(records[i].data) for i in aggregated)
        if self.labels is not None:
            self.labels.observe(batch.table, labels, now)
            self._fed = records[-1].sequence_number
        self._buffer.add(
            batch.table,
            dead,
            records[0].sequence_number,
            records[-1].sequence_number,
            len(records),
            nbytes,
            now,
        )
        if self.observer is not None:
            try:
                self.observer.observe(batch.table, len(dead), now)
            except Exception:  # the observer must never stall or fail the data path
                log.exception("batch observer failed", extra={"shard": self.shard_id})

    def _aggregated_letter(self, r: RawRecord) -> DeadLetter:
        return DeadLetter(
            reason=Reason.KPL_AGGREGATED.value,
            detail=(
                f"sequence number {r.sequence_number} is shared with other records of this batch:"
                " a KPL aggregate; disable KPL aggregation (each row is identified by its shard"
                " and sequence number)"
            ),
            data=r.data,
            shard_id=self.shard_id,
            sequence_number=r.sequence_number,
            partition_key=r.partition_key,
            approximate_arrival_ms=r.approximate_arrival_ms,
        )

    def _take_replay(
        self, records: list[RawRecord], checkpointer: Checkpointer, now: float
    ) -> list[RawRecord]:
        """Consume records belonging to the next replayed range; returns the rest."""
        m = self._replay[0]
        first, last = sequence_key(m.first_sequence), sequence_key(m.last_sequence)
        keys = [sequence_key(r.sequence_number) for r in records]
        # Records before the range (never flushed): flush them on their own first.
        before = sum(1 for k in keys if k < first)
        if before:
            self._add(records[:before], now)
            self._flush(checkpointer, FlushReason.REPLAY)
            return records[before:]
        inside = sum(1 for k in keys if k <= last)
        chunk, rest = records[:inside], records[inside:]
        if m.state == "committed":
            self.skipped_replayed += len(chunk)
            self._join_only(chunk, now)
        else:
            self._add(chunk, now)
        reached = bool(chunk) and sequence_key(chunk[-1].sequence_number) >= last
        if reached or (rest and sequence_key(rest[0].sequence_number) > last):
            self._replay.popleft()
            if m.state == "committed":
                self._checkpoint_labelled(checkpointer, m.last_sequence, now)
            else:
                self._flush(
                    checkpointer,
                    FlushReason.REPLAY,
                    force_range=(m.first_sequence, m.last_sequence),
                )
        return rest

    def _maybe_flush(self, checkpointer: Checkpointer, now: float) -> None:
        b = self._buffer
        reason = self.policy.decide(
            records=b.records, nbytes=b.nbytes, age_s=now - b.opened_at if b.records else 0.0
        )
        if reason is not None:
            self._flush(checkpointer, reason)

    def _flush(
        self,
        checkpointer: Checkpointer,
        reason: FlushReason,
        force_range: tuple[str, str] | None = None,
    ) -> None:
        b = self._buffer
        if b.records == 0 or b.first is None or b.last is None:
            return
        first, last = force_range or (b.first, b.last)
        rows = (
            pa.concat_tables(b.tables)
            if b.tables
            else self.writer.contract.arrow_schema().empty_table()
        )
        started = time.perf_counter()
        try:
            self.writer.write(self.shard_id, first, last, rows, b.dead_letters)
        except LakeWriteError:
            log.critical(
                "lake write failed after retries; exiting so the KCL restarts from the"
                " last checkpoint",
                extra={"shard": self.shard_id, "first": first, "last": last},
            )
            raise SystemExit(3) from None
        log.info(
            "flushed",
            extra={
                "shard": self.shard_id,
                "reason": reason.value,
                "first": first,
                "last": last,
                "rows": rows.num_rows,
                "dead_letters": len(b.dead_letters),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        self._buffer = _Buffer()
        # Give the flushed buffer's Arrow memory back to the OS (RSS stays near the buffer limit).
        pa.default_memory_pool().release_unused()
        self._checkpoint_labelled(checkpointer, last, self._clock())

    def _checkpoint(self, checkpointer: Checkpointer, seq: str | None) -> None:
        from amazon_kclpy.checkpoint_error import CheckpointError

        for attempt in range(1, self._checkpoint_attempts + 1):
            try:
                checkpointer.checkpoint(seq)
                self.checkpointed = seq
                return
            except CheckpointError as exc:
                code = str(exc.value)
                if code == "ShutdownException":
                    # The lease is gone: another worker replays from the previous checkpoint and
                    # rewrites the same objects. Nothing is lost.
                    log.warning(
                        "checkpoint refused: lease lost", extra={"shard": self.shard_id, "seq": seq}
                    )
                    return
                if code == "ThrottlingException" and attempt < self._checkpoint_attempts:
                    self._sleep(min(5.0, 0.2 * 2**attempt))
                    continue
                log.critical(
                    "checkpoint failed", extra={"shard": self.shard_id, "seq": seq, "error": code}
                )
                raise SystemExit(4) from None


def _fatal(fn: Callable[..., None]) -> Callable[..., None]:
    """amazon_kclpy logs and *continues* after an exception in a processor method, so the next
    flush would checkpoint past the failed batch. Any unexpected error ends the child instead: its
    relay restarts it from the last checkpoint (consumers.relay), and nothing is skipped."""

    def wrapped(self: KclRecordProcessor, arg: Any) -> None:
        try:
            fn(self, arg)
        except SystemExit:
            raise
        except Exception as exc:
            if isinstance(exc, json.JSONDecodeError) and not exc.doc.strip():
                # amazon_kclpy read end of file where a checkpoint answer belongs: the daemon
                # (or the relay in front of us) is gone. Not an error of ours.
                log.warning(
                    "the daemon closed the protocol; exiting (replayed from the last checkpoint)",
                    extra={"method": fn.__name__},
                )
                raise SystemExit(6) from None
            log.critical(
                "record processor failed; exiting to replay from the last checkpoint",
                exc_info=True,
                extra={"method": fn.__name__},
            )
            raise SystemExit(5) from None

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


class KclRecordProcessor:
    """amazon_kclpy v3 processor interface over a :class:`ShardProcessor`."""

    version = 3

    def __init__(self, make_processor: Callable[[], ShardProcessor]) -> None:
        self._make = make_processor
        self.processor: ShardProcessor | None = None

    def _p(self) -> ShardProcessor:
        if self.processor is None:
            self.processor = self._make()
        return self.processor

    @_fatal
    def initialize(self, initialize_input: Any) -> None:
        self._p().initialize(initialize_input.shard_id, initialize_input.sequence_number)

    @_fatal
    def process_records(self, process_records_input: Any) -> None:
        self._p().process(
            to_raw_records(process_records_input.records), process_records_input.checkpointer
        )

    @_fatal
    def lease_lost(self, lease_lost_input: Any) -> None:
        self._p().lease_lost()

    @_fatal
    def shard_ended(self, shard_ended_input: Any) -> None:
        self._p().shard_ended(shard_ended_input.checkpointer)

    @_fatal
    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._p().shutdown_requested(shutdown_requested_input.checkpointer)
