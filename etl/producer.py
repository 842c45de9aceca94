"""Put records on a Kinesis stream: batched PutRecords, retrying only what failed.

:class:`KinesisProducer` splits the input into requests of at most 500 records and 5 MiB (data
plus partition key bytes, as Kinesis counts them). A request can partly fail (``FailedRecordCount``
with a per-entry ``ErrorCode``); only those entries are sent again, after a full-jitter exponential
backoff, up to ``max_attempts`` per request. A whole request refused for throughput is retried the
same way. Retried entries may land after later ones of the same partition key: Kinesis orders by
sequence number, consumers must not assume production order across a retry.

:func:`produce` is the synthetic workload behind ``driftline produce`` and the demo: seeded records,
a seeded fraction replaced by poison, optional rate limiting, and a summary that lists the good
records' ids (the contract's id field) so a reader can check exactly-once delivery. It works for
any contract: the records come from the contract's generator plan (``etl/generator.py``).

>>> plan_batches([100] * 1001)
[range(0, 500), range(500, 1000), range(1000, 1001)]
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from etl.aws import AwsClients, error_code, error_message
from etl.contract import Contract, load_contract
from etl.exceptions import ProducerError
from etl.label_producer import LabelPlan, LateLabels, plan_labels
from etl.settings import Settings
from etl.synthetic import POISON_KINDS, Scenario, encode_record, generate_records, make_poison

log = logging.getLogger(__name__)

MAX_RECORDS_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024

#: Whole-request errors worth retrying (throughput and transient service errors).
RETRYABLE_REQUEST_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


def entry_size(data: bytes, partition_key: str) -> int:
    """The bytes Kinesis counts for one entry against its limits."""
    return len(data) + len(partition_key.encode("utf-8"))


def plan_batches(
    sizes: Sequence[int],
    *,
    max_records: int = MAX_RECORDS_PER_REQUEST,
    max_bytes: int = MAX_BYTES_PER_REQUEST,
) -> list[range]:
    """Split entries (by their :func:`entry_size`) into consecutive requests within both limits."""
    batches: list[range] = []
    start, nbytes = 0, 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise ProducerError(
                f"record {i} is {size} bytes, over the {max_bytes}-byte request limit"
            )
        if i > start and (i - start >= max_records or nbytes + size > max_bytes):
            batches.append(range(start, i))
            start, nbytes = i, 0
        nbytes += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a :meth:`KinesisProducer.put` call did; lists are indexed like the input."""

    sent: int
    retried: int
    attempts: int
    sequence_numbers: list[str]
    shard_ids: list[str]


class KinesisProducer:
    """Batched, bounded-retry PutRecords for one stream. ``client`` is a boto3 Kinesis client."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.client = client
        self.stream_name = stream_name
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rng = rng or random.Random()
        self.sleep = sleep

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(retry - 1))] for retry 1, 2, ..."""
        return self.rng.uniform(
            0.0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1))
        )

    def put(self, records: Iterable[tuple[bytes, str]]) -> PutResult:
        """Put ``(data, partition_key)`` pairs; raise :class:`ProducerError` if any stay unsent."""
        entries = list(records)
        for i, (data, key) in enumerate(entries):
            if not 1 <= len(key) <= 256:
                raise ProducerError(
                    f"record {i}: partition key {key[:40]!r} has {len(key)} characters; Kinesis"
                    " takes 1-256"
                )
            if entry_size(data, key) > MAX_RECORD_BYTES:
                raise ProducerError(
                    f"record {i} is {entry_size(data, key)} bytes (data + partition key), over"
                    f" Kinesis' {MAX_RECORD_BYTES}-byte record limit; split or shrink it"
                )
        seqs = [""] * len(entries)
        shards = [""] * len(entries)
        retried = attempts = 0
        for batch in plan_batches([entry_size(d, k) for d, k in entries]):
            r, a = self._put_batch(entries, list(batch), seqs, shards)
            retried += r
            attempts += a
        return PutResult(
            sent=len(entries),
            retried=retried,
            attempts=attempts,
            sequence_numbers=seqs,
            shard_ids=shards,
        )

    def _put_batch(
        self,
        entries: list[tuple[bytes, str]],
        pending: list[int],
        seqs: list[str],
        shards: list[str],
    ) -> tuple[int, int]:
        retried = 0
        last_code, last_message = "", ""
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                retried += len(pending)
                self.sleep(self.backoff(attempt - 1))
            request = [{"Data": entries[i][0], "PartitionKey": entries[i][1]} for i in pending]
            try:
                resp = self.client.put_records(StreamName=self.stream_name, Records=request)
            except ClientError as exc:
                last_code, last_message = error_code(exc), error_message(exc)
                if last_code not in RETRYABLE_REQUEST_ERRORS:
                    raise ProducerError(
                        f"PutRecords on stream {self.stream_name!r} failed with {last_code}:"
                        f" {last_message}; {len(pending)} records not sent (not retryable)"
                    ) from exc
                log.warning(
                    "PutRecords throttled (%s), attempt %d/%d",
                    last_code,
                    attempt,
                    self.max_attempts,
                )
                continue
            still: list[int] = []
            for i, result in zip(pending, resp["Records"], strict=True):
                code = result.get("ErrorCode")
                if code:
                    still.append(i)
                    last_code, last_message = str(code), str(result.get("ErrorMessage", ""))
                else:
                    seqs[i] = result["SequenceNumber"]
                    shards[i] = result["ShardId"]
            if not still:
                return retried, attempt
            log.info(
                "PutRecords: %d of %d entries failed (%s), attempt %d/%d",
                len(still),
                len(pending),
                last_code,
                attempt,
                self.max_attempts,
            )
            pending = still
        raise ProducerError(
            f"{len(pending)} records could not be put on stream {self.stream_name!r} after"
            f" {self.max_attempts} attempts; last error {last_code}: {last_message}. Add shards or"
            " lower the rate (--rate), or raise producer_max_attempts"
        )


# -- the synthetic workload -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProduceSummary:
    """What :func:`produce` put on the stream."""

    stream_name: str
    produced: int
    good: int
    poison: dict[str, int]
    good_ids: list[str] = field(repr=False)
    seconds: float
    retried: int
    attempts: int
    scenario: str
    seed: int
    first_event_time: str | None
    last_event_time: str | None
    #: late-label contracts: each labelled id's last label sent (what the join ends with)
    labels: dict[str, Any] = field(default_factory=dict, repr=False)
    labels_sent: int = 0
    labels_changed: int = 0

    @property
    def records_per_second(self) -> float:
        return self.produced / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self, *, with_ids: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "stream_name": self.stream_name,
            "produced": self.produced,
            "good": self.good,
            "poison": dict(self.poison),
            "poison_total": sum(self.poison.values()),
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second, 1),
            "retried": self.retried,
            "attempts": self.attempts,
            "scenario": self.scenario,
            "seed": self.seed,
            "first_event_time": self.first_event_time,
            "last_event_time": self.last_event_time,
        }
        if self.labels_sent:
            doc.update(
                labels_sent=self.labels_sent,
                labels_changed=self.labels_changed,
                labelled_ids=len(self.labels),
            )
        if with_ids:
            doc["good_ids"] = list(self.good_ids)
        return doc


def poison_plan(n: int, poison_rate: float, seed: int) -> dict[int, str]:
    """Which record indices become poison, and of which kind (kinds cycle in index order)."""
    if not 0.0 <= poison_rate <= 1.0:
        raise ValueError(f"poison_rate is a fraction in [0, 1], got {poison_rate}")
    count = round(n * poison_rate)
    rng = np.random.default_rng([seed, 0x9015])
    chosen = sorted(int(i) for i in rng.choice(n, size=count, replace=False)) if count else []
    return {i: POISON_KINDS[j % len(POISON_KINDS)] for j, i in enumerate(chosen)}


def build_payloads(
    records: Sequence[dict[str, Any]],
    plan: dict[int, str],
    *,
    seed: int,
    contract: Contract,
) -> list[tuple[bytes, str]]:
    """``(data, partition key)`` per record, poison where ``plan`` says."""
    rng = np.random.default_rng([seed, 0x9016])
    key_field, id_field = contract.partition_key, contract.id_field.name
    out = []
    for i, rec in enumerate(records):
        kind = plan.get(i)
        data = make_poison(kind, rng, rec, contract=contract) if kind else encode_record(rec)
        key = rec.get(key_field)  # an optional partition key may be absent or null
        out.append((data, str(rec[id_field] if key is None or key == "" else key)))
    return out


@dataclass(frozen=True)
class ProduceRun:
    """What to produce: how many records, how fast, from which seed and scenario.

    With ``rate`` (records/s) the puts are paced and event times advance at that rate; ``start``
    is the first event time (``None``: the generator's fixed default, so runs are reproducible).
    ``labels``: for a late-label contract, how its label records follow the data records
    (``etl/label_producer.py``; default: every good record labelled at once, none changed).
    """

    records: int
    rate: float | None = None
    seed: int = 0
    scenario: Scenario | str = Scenario.STATIONARY
    poison_rate: float = 0.0
    drift_at: float = 0.5
    start: datetime | None = None
    labels: LateLabels | None = None

    def __post_init__(self) -> None:
        if self.records < 0:
            raise ValueError(f"records must be >= 0, got {self.records}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0 records/s, got {self.rate}")


def produce(
    settings: Settings,
    clients: AwsClients,
    run: ProduceRun,
    *,
    contract: Contract | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ProduceSummary:
    """Generate ``run.records`` synthetic records of the contract (``settings.contract_path``
    unless given) and put them on ``settings.stream_name``.

    >>> run = ProduceRun(records=1000, poison_rate=0.01)
    >>> produce(settings, clients, run).good  # doctest: +SKIP
    990
    """
    stream = settings.require("stream_name")
    contract = contract or load_contract(settings.contract_path)
    scenario = Scenario(run.scenario)
    rows = generate_records(
        run.records,
        seed=run.seed,
        scenario=scenario,
        drift_at=run.drift_at,
        start=run.start,
        events_per_second=run.rate or 50.0,
        contract=contract,
    )
    plan = poison_plan(run.records, run.poison_rate, run.seed)
    labelled = _label_plan(contract, rows, plan, run)
    payloads = build_payloads(
        rows if labelled is None else labelled.data_rows, plan, seed=run.seed, contract=contract
    )
    producer = _producer(settings, clients, stream, run.seed, sleep)
    schedule = None
    if labelled is not None:
        label_stream = contract.labels.stream
        target = (
            producer
            if label_stream is None
            else _producer(settings, clients, label_stream, run.seed, sleep)
        )
        schedule = LabelSchedule(target, labelled)
    paced = _put_paced(producer, payloads, run.rate, sleep, clock, schedule)
    id_field, et_field = contract.id_field.name, contract.event_time_field.name
    return ProduceSummary(
        stream_name=stream,
        produced=len(payloads),
        good=len(payloads) - len(plan),
        poison={kind: sum(1 for k in plan.values() if k == kind) for kind in POISON_KINDS},
        good_ids=[str(r[id_field]) for i, r in enumerate(rows) if i not in plan],
        seconds=paced.seconds,
        retried=paced.retried,
        attempts=paced.attempts,
        scenario=scenario.value,
        seed=run.seed,
        first_event_time=rows[0][et_field] if rows else None,
        last_event_time=rows[-1][et_field] if rows else None,
        labels={} if labelled is None else dict(labelled.final),
        labels_sent=0 if labelled is None else len(labelled.puts),
        labels_changed=0 if labelled is None else sum(p.changed for p in labelled.puts),
    )


def _producer(
    settings: Settings, clients: AwsClients, stream: str, seed: int, sleep: Callable[[float], None]
) -> KinesisProducer:
    return KinesisProducer(
        clients.client("kinesis"),
        stream,
        max_attempts=settings.producer_max_attempts,
        backoff_base_s=settings.producer_backoff_base_s,
        rng=random.Random(seed),
        sleep=sleep,
    )


def _label_plan(
    contract: Contract, rows: list[dict[str, Any]], poison: dict[int, str], run: ProduceRun
) -> LabelPlan | None:
    if not contract.labels.late:
        if run.labels is not None:
            raise ProducerError(
                f"contract {contract.name!r} has inline labels: late label records (label delay,"
                ' coverage) need a contract with [labels] arrival = "late"'
            )
        return None
    labels = run.labels or LateLabels(seed=run.seed)
    return plan_labels(contract, rows, labels, skip=frozenset(poison))


class LabelSchedule:
    """Label records due some seconds after their data record's put (a heap by due time)."""

    def __init__(self, producer: KinesisProducer, plan: LabelPlan) -> None:
        self.producer, self.plan = producer, plan
        self._heap: list[tuple[float, int]] = []
        self.retried = self.attempts = 0

    def sent(self, lo: int, hi: int, at: float) -> None:
        """Data records ``lo..hi-1`` were put at ``at``: schedule their labels."""
        for i in range(lo, hi):
            for j in self.plan.puts_of[i]:
                heapq.heappush(self._heap, (at + self.plan.puts[j].due_s, j))

    def put_due(self, now: float) -> None:
        """Put every label due by ``now``, in due order (a label's resend after it)."""
        due: list[int] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[1])
        if due:
            result = self.producer.put(
                [(self.plan.puts[j].data, self.plan.puts[j].partition_key) for j in due]
            )
            self.retried += result.retried
            self.attempts += result.attempts

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None


@dataclass(frozen=True)
class _Paced:
    seconds: float
    retried: int
    attempts: int


def _put_paced(
    producer: KinesisProducer,
    payloads: Sequence[tuple[bytes, str]],
    rate: float | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    labels: LabelSchedule | None = None,
) -> _Paced:
    """Put ``payloads`` in chunks (a tenth of a second's worth when paced at ``rate``),
    sleeping whenever ahead of the rate; logs progress every 5 s. Label records go out as they
    fall due, between chunks, then the rest at their times after the last chunk."""
    chunk = (
        MAX_RECORDS_PER_REQUEST
        if rate is None
        else max(1, min(MAX_RECORDS_PER_REQUEST, int(rate / 10)))
    )
    t0 = clock()
    retried = attempts = sent = 0
    next_log = t0 + 5.0
    for lo in range(0, len(payloads), chunk):
        part = payloads[lo : lo + chunk]
        if labels is not None:
            labels.put_due(clock())
        result = producer.put(part)
        retried += result.retried
        attempts += result.attempts
        sent += len(part)
        now = clock()
        if labels is not None:
            labels.sent(lo, lo + len(part), now)
        if now >= next_log:
            log.info("produced %d/%d records to %s", sent, len(payloads), producer.stream_name)
            next_log = now + 5.0
        if rate is not None:
            ahead = t0 + sent / rate - now
            if ahead > 0:
                sleep(ahead)
    if labels is not None:
        _drain(labels, sleep, clock)
        retried, attempts = retried + labels.retried, attempts + labels.attempts
    return _Paced(clock() - t0, retried, attempts)


def _drain(
    labels: LabelSchedule, sleep: Callable[[float], None], clock: Callable[[], float]
) -> None:
    """Put the labels still due after the last data record, each at its time."""
    while (due := labels.next_due()) is not None:
        wait = due - clock()
        if wait > 0:
            sleep(min(wait, 1.0))
        labels.put_due(clock())


__all__ = [
    "MAX_BYTES_PER_REQUEST",
    "MAX_RECORDS_PER_REQUEST",
    "KinesisProducer",
    "LabelSchedule",
    "LateLabels",
    "ProduceRun",
    "ProduceSummary",
    "PutResult",
    "build_payloads",
    "entry_size",
    "plan_batches",
    "poison_plan",
    "produce",
]
