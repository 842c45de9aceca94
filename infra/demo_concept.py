"""The loop of ``driftline demo --scenario concept``: a concept drift only quality sees.

1. *History*: stationary records (event time an hour back) into the lake; the first champion is
   trained on them, served, its profile the drift baseline (as in :mod:`infra.demo_loop`). The
   quality alarm is armed at the champion's holdout ROC AUC minus ``margin``
   (``driftline quality --arm``), and the consumers score every batch with the served model
   (``quality_scoring``) and publish a quality window per ``drift_window_s``.
2. *Concept drift*: records stream in real time whose features keep the stationary distribution
   while the label's relation to them changed (``etl.synthetic.Scenario.CONCEPT``). The drift
   windows see nothing new, so the drift alarm stays OK; the labels (inline with their records
   for ``label_delay_s = 0``) make the quality windows' AUC fall; the alarm evaluator moves the
   quality alarm to ALARM, EventBridge's retrain rule delivers the event and the dispatcher runs
   the gate, which records the run's trigger as ``quality``; the challenger, trained on the
   recent lake window, is promoted and served.
3. *Recovery*: the consumers' scorer picks the new model up; a quality window of the new model
   scores at or above the line and the quality alarm returns to OK.

``auc_before`` is the served champion on a fresh stationary sample, ``auc_at_change`` the same
model on a fresh post-change sample, ``auc_after`` the promoted model on that same sample (all
through the model server's ``/invocations``); the stream's own windows give
``stream_auc_worst`` and ``stream_auc_last``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.contract import Contract, Task
from etl.exceptions import ContractError, LabelRequiredError
from etl.label_producer import LateLabels
from etl.settings import Settings
from infra.demo_loop import (
    DispatchThread,
    LoopOptions,
    Rig,
    StreamProducer,
    _ClosedLoop,
    drifted_sample,
    score_endpoint,
)

#: The quality alarm is armed this far below the champion's holdout ROC AUC.
QUALITY_MARGIN = 0.05
#: Records before the change that make every shard's scorer load the served model (~20 a shard:
#: far fewer than a window's 200 labels, so the first window is almost all changed labels).
WARM_UP_RECORDS = 40
SCORING_LINE = '"msg": "scoring with model '
#: The fields ``--label-delay S > 0`` adds to an inline contract (:func:`late_contract_text`).
LATE_KIND_FIELD = "record_kind"
LATE_TIME_FIELD = "labelled_at"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def scoring_processors(work_dir: Path) -> int:
    """Record processors whose scorer has loaded a model, from their logs."""
    from consumers.daemon import PROCESSOR_LOG

    pids = set()
    for path in work_dir.glob(f"worker-*/{PROCESSOR_LOG}"):
        for line in path.read_text(errors="replace").splitlines():
            if SCORING_LINE in line:
                pids.add((path.parent.name, json.loads(line).get("pid")))
    return len(pids)


@dataclass(frozen=True)
class ConceptOptions:
    """The concept loop's own settings on top of :class:`infra.demo_loop.LoopOptions`."""

    #: Seconds between a record and its label (0: the label rides on the record).
    label_delay_s: float = 0.0
    #: The quality windows' length (the consumers' ``drift_window_s``, the alarms' period).
    window_s: float = 10.0
    margin: float = QUALITY_MARGIN


@dataclass
class QualityMonitor:
    """The quality alarm's state and the stream's ``QualityAUC`` / ``LabelCoverage`` windows
    (times in seconds since the concept stream started)."""

    clients: AwsClients
    settings: Settings
    alarm_name: str
    state: str = "?"
    alarm_s: float | None = None
    #: The alarm's own StateUpdatedTimestamp of its first ALARM (epoch seconds).
    alarm_at: float | None = None
    ok_again_s: float | None = None
    transitions: list[tuple[float, str]] = field(default_factory=list)
    auc: list[tuple[dt.datetime, float]] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)

    def poll(self, elapsed: float) -> None:
        cw = self.clients.client("cloudwatch")
        alarms = cw.describe_alarms(AlarmNames=[self.alarm_name]).get("MetricAlarms", [])
        if alarms:
            self._saw(alarms[0]["StateValue"], elapsed)
            if self.alarm_s is not None and self.alarm_at is None:
                self.alarm_at = alarms[0]["StateUpdatedTimestamp"].timestamp()
        self.auc = self._series(cw, "QualityAUC", "Minimum")
        self.coverage = [v for _, v in self._series(cw, "LabelCoverage", "Average")]

    def _saw(self, new: str, elapsed: float) -> None:
        if new != self.state:
            self.transitions.append((round(elapsed, 1), new))
        if new == "ALARM" and self.alarm_s is None:
            self.alarm_s = round(elapsed, 1)
        if new == "OK" and self.alarm_s is not None and self.ok_again_s is None:
            self.ok_again_s = round(elapsed, 1)
        self.state = new

    def _series(self, cw: Any, metric: str, stat: str) -> list[tuple[dt.datetime, float]]:
        end = dt.datetime.now(dt.UTC)
        points = cw.get_metric_statistics(
            Namespace=self.settings.metrics_namespace,
            MetricName=metric,
            Dimensions=[{"Name": "Stream", "Value": self.settings.require("stream_name")}],
            StartTime=end - dt.timedelta(hours=1),
            EndTime=end + dt.timedelta(minutes=1),
            Period=10,
            Statistics=[stat],
        ).get("Datapoints", [])
        return sorted((p["Timestamp"], float(p[stat])) for p in points)

    def restored_since(self, wall: float, threshold: float) -> bool:
        """Whether a quality window of a period that began at or after ``wall`` (epoch seconds:
        the promotion) scored at or above ``threshold``: the new model's own figure. The alarm
        going OK is not enough: re-arming at the promotion re-evaluates it, and periods with no
        data yet count as not breaching."""
        return any(t.timestamp() >= wall and v >= threshold for t, v in self.auc)

    def line(self) -> str:
        last = round(self.auc[-1][1], 3) if self.auc else None
        return f"quality AUC {last}, quality alarm {self.state}"


def recorded_trigger(settings: Settings, clients: AwsClients, event_id: str | None) -> str | None:
    """The trigger the gate recorded for ``event_id`` (its idempotency record's result)."""
    from retrain.wiring import idempotency_table

    if event_id is None:
        return None
    item = (
        clients.client("dynamodb")
        .get_item(
            TableName=idempotency_table(settings),
            Key={"pk": {"S": f"event#{event_id}"}},
            ConsistentRead=True,
        )
        .get("Item", {})
    )
    result = item.get("result", {}).get("S")
    trigger = json.loads(result).get("trigger") if result else None
    return str(trigger) if trigger is not None else None


def check_contract(contract: Contract) -> None:
    """The concept demo needs a binary label: its quality alarm watches ROC AUC."""
    if contract.label is None:
        raise LabelRequiredError(
            f"the concept demo scores the served model against labels, but contract"
            f' {contract.name!r} declares no label; give a field role = "label"'
        )
    if contract.task is not Task.BINARY_CLASSIFICATION:
        raise LabelRequiredError(
            f"the concept demo's quality alarm watches ROC AUC, but contract {contract.name!r}"
            f" is a {contract.task} task; run it with a binary classification contract"
            " (e.g. etl/contracts/card_transactions.toml)"
        )


def evaluator_transitions(state: Path) -> list[list[str]]:
    """Every state change the local alarm evaluator made: [time, alarm, old state, new state]."""
    from infra.alarm_evaluator import read_history

    return [[t.time, t.alarm_name, t.previous_state, t.state] for t in read_history(state)]


def detection_s(
    alarm_at: float | None, first_arrival: float | None, concept: ConceptOptions
) -> float | None:
    """Seconds from the first changed label's arrival on the stream (the first changed record's
    Kinesis arrival, plus the label delay) to the quality alarm's ALARM."""
    if alarm_at is None or first_arrival is None:
        return None
    return round(alarm_at - (first_arrival + concept.label_delay_s), 1)


def late_contract_text(text: str, contract: Contract) -> str:
    """A late-label variant of an inline contract's TOML (``--label-delay S > 0``): the kind and
    time fields appended as optional attributes, and ``[labels] arrival = "late"``. Its label
    field must already be optional (a data record of a late contract carries none)."""
    taken = {f.name for f in contract.fields} & {LATE_KIND_FIELD, LATE_TIME_FIELD}
    if taken:
        raise ContractError(
            f"contract {contract.name!r} already has fields {sorted(taken)}: the demo's late"
            " labels cannot add them; give a late-label contract with --contract"
        )
    return (
        f"{text.rstrip()}\n\n# -- added by `driftline demo --label-delay`: late labels --\n"
        f'[[fields]]\nname = "{LATE_KIND_FIELD}"\ntype = "string"\nrole = "attribute"\n'
        "required = false\nnullable = true\n\n"
        f'[[fields]]\nname = "{LATE_TIME_FIELD}"\ntype = "timestamp"\nrole = "attribute"\n'
        "required = false\nnullable = true\n\n"
        f'[labels]\narrival = "late"\nkind_field = "{LATE_KIND_FIELD}"\n'
        f'time_field = "{LATE_TIME_FIELD}"\nhorizon_s = 3600\n'
    )


def labels_in_lake(settings: Settings, clients: AwsClients, contract: Contract) -> int:
    """Rows of the lake's labels table, from its committed manifests (a replay rewrites the same
    manifest: each range counts once)."""
    from etl.label_lake import labels_table

    s3 = clients.client("s3")
    bucket = settings.require("lake_bucket")
    rows = 0
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{settings.manifest_prefix}/{labels_table(contract)}/"
    )
    for page in pages:
        for item in page.get("Contents", []):
            doc = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            rows += int(doc.get("rows", 0)) if doc.get("state") == "committed" else 0
    return rows


def arm_quality_alarm(settings: Settings, clients: AwsClients, margin: float) -> dict[str, Any]:
    """``driftline quality --arm``: threshold = the champion's holdout ROC AUC - ``margin``."""
    from retrain.quality_alarm import arm, champion_of
    from retrain.runs import settings_contract
    from retrain.wiring import model_group

    champion = champion_of(clients.client("sagemaker"), model_group(settings))
    armed = arm(
        clients.client("cloudwatch"), settings, settings_contract(settings), champion, margin
    )
    return {
        "name": armed.alarm,
        "champion_version": armed.champion_version,
        "holdout_auc": armed.holdout,
        "threshold": armed.threshold,
    }


def run_concept_loop(
    rig: Rig,
    outputs: dict[str, str],
    state: Path,
    options: tuple[LoopOptions, ConceptOptions],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Phases 1-3 of the module docstring; returns the loop's figures for the demo summary."""
    loop = _ConceptLoop(rig, outputs, state, options, progress)
    hist, history_end = loop.history_to_lake()
    loop.labels_landed(hist)
    server, boot = loop.serve_champion(history_end)
    armed = arm_quality_alarm(loop.lsettings, rig.clients, loop.concept.margin)
    progress(f"quality alarm {armed['name']} armed at {armed['threshold']}")
    warm = loop.warm_scorers()
    before = loop.score_on(server.url, loop.before_sample)
    at_change = loop.score_on(server.url, loop.after_sample)
    streamed = loop.stream_until_restored(armed["threshold"])
    loop.drain([hist, warm, *streamed.producer.summaries])
    late = loop.late_figures([hist, warm, *streamed.producer.summaries], streamed)
    after = loop.score_on(server.url, loop.after_sample)
    figures = loop.concept_figures((hist, warm), boot, streamed, armed)
    figures.update(
        auc_before=before.get("roc_auc"),
        auc_at_change=at_change.get("roc_auc"),
        auc_after=after.get("roc_auc"),
        model_server=server,
        **late,
    )
    return figures


@dataclass
class _ConceptStream:
    dispatch: DispatchThread
    producer: StreamProducer
    seconds: float = 0.0


class _ConceptLoop(_ClosedLoop):
    """The closed loop's history and champion, a concept stream, and the quality alarm."""

    def __init__(
        self,
        rig: Rig,
        outputs: dict[str, str],
        state: Path,
        options: tuple[LoopOptions, ConceptOptions],
        progress: Callable[[str], None],
    ) -> None:
        from retrain.triggers import quality_alarm_name

        super().__init__(rig, outputs, state, options[0], progress)
        self.concept = options[1]
        check_contract(self.contract)
        seed = options[0].seed + 999
        # fresh records of the same features' world, labelled before and after the change
        self.before_sample = drifted_sample(seed, self.contract, scenario="stationary")
        self.after_sample = drifted_sample(seed + 1, self.contract, scenario="concept")
        self.quality = QualityMonitor(
            rig.clients, rig.settings, quality_alarm_name(rig.settings.stack_name)
        )

    def score_on(self, url: str, sample: tuple[list[dict[str, Any]], Any]) -> dict[str, float]:
        """The served model's ROC AUC and accuracy on ``sample`` (records, labels)."""
        return score_endpoint(url, sample[0], sample[1], self.contract.task)

    def late_labels(self) -> LateLabels | None:
        """A late-label contract's concept stream: every label ``label_delay_s`` after its
        record, as a label record (None: inline labels, or the producer's default)."""
        if not self.contract.labels.late:
            return None
        return LateLabels(delay_s=self.concept.label_delay_s, seed=self.options.seed)

    def late_figures(self, summaries: list[Any], run: _ConceptStream) -> dict[str, Any]:
        """A late-label contract: label records sent and in the lake's labels table (waited for
        as the records are, a minute past the deadline at most), and what the promoted retrain
        trained on (labelled rows; records left out for no label yet). {} for inline labels."""
        if not self.contract.labels.late:
            return {}
        sent = sum(s.labels_sent for s in summaries)
        rig = self.rig
        while (
            landed := labels_in_lake(rig.settings, rig.clients, self.contract)
        ) < sent and time.monotonic() < self.deadline + 60:
            rig.tick()
        promoted = run.dispatch.promoted
        outcome = promoted[1] if promoted else None
        return {
            "labels_sent": sent,
            "labels_in_lake": landed,
            "retrain_train_rows": outcome.train_rows if outcome else None,
            "retrain_holdout_rows": outcome.holdout_rows if outcome else None,
            "retrain_unlabelled_rows": outcome.unlabelled_rows if outcome else None,
        }

    def labels_landed(self, hist: Any) -> None:
        """A late-label contract: wait until the history's label records are in the lake's
        labels table (the first champion trains on the records joined with them)."""
        if not self.contract.labels.late:
            return
        want = hist.labels_sent
        while (got := labels_in_lake(self.rig.settings, self.rig.clients, self.contract)) < want:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"{got} of {want} history labels reached the lake in time")
            self.rig.tick()
        self.progress(f"{want} history label records in the lake's labels table")

    def warm_scorers(self) -> Any:
        """A few records before the change (labelled, stationary), so each shard's scorer has
        loaded the served model before the first changed record arrives (it loads on the first
        batch it scores); waits until every processor says so (a minute at most)."""
        from etl.producer import ProduceRun, produce

        rig = self.rig
        summary = produce(
            rig.settings,
            rig.clients,
            ProduceRun(records=WARM_UP_RECORDS, seed=self.options.seed + 50, start=_now()),
        )
        shards = int(
            rig.clients.client("kinesis").describe_stream_summary(
                StreamName=rig.settings.require("stream_name")
            )["StreamDescriptionSummary"]["OpenShardCount"]
        )
        deadline = time.monotonic() + 60.0
        while scoring_processors(rig.fleet.work_dir) < shards and time.monotonic() < deadline:
            rig.tick()
        self.progress(
            f"{scoring_processors(rig.fleet.work_dir)} of {shards} record processors score with"
            " the served model"
        )
        return summary

    def stream_until_restored(self, threshold: float) -> _ConceptStream:
        """2-3: the concept stream, until a retrain promoted, a window of the new model scored at
        or above ``threshold`` and the quality alarm is OK again (or the deadline)."""
        rig, opts = self.rig, self.options
        t0 = time.monotonic()
        rig.watcher.since = time.time()  # rows arriving from now on are after the change
        run = _ConceptStream(
            DispatchThread(self.lsettings, rig.clients, t0),
            StreamProducer(
                rig.settings,
                rig.clients,
                opts.rate,
                opts.seed,
                opts.poison_rate,
                "concept",
                labels=self.late_labels(),
            ),
        )
        threads = [
            threading.Thread(target=run.dispatch.run, daemon=True),
            threading.Thread(target=run.producer.run, daemon=True),
        ]
        for t in threads:
            t.start()
        self.progress(f"streaming concept-drifted records at {opts.rate:.0f}/s")
        try:
            self._watch(run, t0, threshold)
        finally:
            run.producer.stop.set()
            threads[1].join(timeout=30)
            run.dispatch.stop.set()
            threads[0].join(timeout=30)
        run.seconds = time.monotonic() - t0
        return run

    def _watch(self, run: _ConceptStream, t0: float, threshold: float) -> None:
        last, promoted_at = 0.0, None
        while time.monotonic() < self.deadline:
            time.sleep(1.0)
            elapsed = time.monotonic() - t0
            self.rig.watcher.poll()
            self.rig.fleet.supervise_once()
            self.monitor.poll(elapsed)
            self.quality.poll(elapsed)
            if time.monotonic() - last > 5:
                last = time.monotonic()
                self.progress(
                    f"t+{elapsed:.0f}s lake rows {self.rig.watcher.rows}, {self.quality.line()},"
                    f" {self.monitor.line()},"
                    f" retrain {'promoted' if run.dispatch.promoted else 'waiting'}"
                )
            if run.dispatch.promoted and promoted_at is None:
                promoted_at = time.time()
            restored = promoted_at is not None and self.quality.restored_since(
                promoted_at, threshold
            )
            if restored and self.quality.state == "OK":
                return

    def concept_figures(
        self, before: tuple[Any, Any], boot: Any, run: _ConceptStream, armed: dict[str, Any]
    ) -> dict[str, Any]:
        """The summary's figures (the sample scores are added by the caller)."""
        q, window = self.quality, self.concept.window_s
        alarm_s = detection_s(q.alarm_at, self.rig.watcher.first_arrival, self.concept)
        promoted = run.dispatch.promoted
        event_id = next((r.event_id for _, r in run.dispatch.results if r.outcome), None)
        aucs = [v for _, v in q.auc]
        return {
            **self._counts(before, run),
            "champion_version": boot.model_version,
            "label_delay_s": self.concept.label_delay_s,
            "window_s": window,
            "quality_threshold": armed["threshold"],
            "champion_holdout_auc": armed["holdout_auc"],
            "quality_alarm_s": alarm_s,
            "quality_alarm_windows": None if alarm_s is None else round(alarm_s / window, 2),
            "quality_alarm_stream_s": q.alarm_s,
            "quality_alarm_state": q.state,
            "quality_ok_again_s": q.ok_again_s,
            "quality_transitions": q.transitions,
            "quality_windows": self._windows(),
            "stream_auc_worst": round(min(aucs), 4) if aucs else None,
            "stream_auc_last": round(aucs[-1], 4) if aucs else None,
            "label_coverage": round(sum(q.coverage) / len(q.coverage), 4) if q.coverage else None,
            "drift_alarm_state": self.monitor.state,
            "drift_alarms": len(self.monitor.alarm_times),
            "max_drift_score": self.monitor.max_score,
            **self._retrain_figures(run.dispatch),
            "retrain_trigger": recorded_trigger(self.lsettings, self.rig.clients, event_id),
            "alarm_transitions": evaluator_transitions(self.state),
            "deployed_s": promoted[0] if promoted else None,
        }

    def _windows(self) -> list[list[float]]:
        """The stream's QualityAUC datapoints (minimum over shards per 10 s period) as
        [period start − the first changed label's arrival (s), AUC], the first 12."""
        first = self.rig.watcher.first_arrival
        if first is None:
            return []
        first += self.concept.label_delay_s
        return [[round(t.timestamp() - first, 1), round(v, 4)] for t, v in self.quality.auc[:12]]

    def _counts(self, before: tuple[Any, Any], run: _ConceptStream) -> dict[str, Any]:
        """What was produced: history, warm-up and the concept stream."""
        summaries = [*before, *run.producer.summaries]
        kinds: dict[str, int] = {}
        for s in summaries:
            for k, v in s.poison.items():
                kinds[k] = kinds.get(k, 0) + v
        return {
            "produced": sum(s.produced for s in summaries),
            "poison": sum(kinds.values()),
            "poison_by_kind": kinds,
            "good_ids": {i for s in summaries for i in s.good_ids},
            "stream_seconds": run.seconds,
            "history_records": before[0].produced,
            "warm_up_records": before[1].produced,
        }
