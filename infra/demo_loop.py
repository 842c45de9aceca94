"""The closed loop of ``driftline demo --scenario drift``.

1. *History*: stationary records whose event times lie an hour back go through the real consumers
   into the lake; the first champion is trained on that window (the same ``run_retrain`` the alarm
   handler runs), registered, served by the local model server, and its training profile becomes
   the current drift baseline.
2. *Drift*: drifted records stream in real time. The consumers' DriftScore rises, the alarm
   evaluator moves the alarm to ALARM and puts CloudWatch's event on the bus, the rule delivers it
   to its SQS target, and the dispatcher hands it to the retrain handler (idempotent,
   single-flight):
   train on the last minutes of the lake, compare with the champion on the same holdout, promote,
   swap the served model with zero downtime, publish the new baseline.
3. *Recovery*: the consumers pick the new baseline up at the next window; DriftScore falls and the
   alarm returns to OK. Load runs against the model server from another process throughout the
   swap; the champion and the new model are scored on the same fresh post-drift sample.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from etl.aws import AwsClients
from etl.contract import Contract, Task, load_contract
from etl.exceptions import LabelRequiredError
from etl.label_producer import LateLabels
from etl.producer import ProduceRun, ProduceSummary, produce
from etl.settings import Settings

log = logging.getLogger("driftline.demo")

#: The alarm-driven retrain trains on this much recent event time (the drifted stream only).
RETRAIN_WINDOW_HOURS = 0.25
CHUNK = 2_000


def score_endpoint(
    url: str, sample: list[dict[str, Any]], labels: np.ndarray, task: Task | None
) -> dict[str, float]:
    """The served model on ``sample`` (through ``POST /invocations``): ROC AUC and accuracy for
    binary classification, RMSE and MAE for regression."""
    from sklearn.metrics import roc_auc_score

    scores: list[float] = []
    for i in range(0, len(sample), 500):
        body = json.dumps({"instances": sample[i : i + 500]}).encode()
        req = urllib.request.Request(
            f"{url}/invocations",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
            scores += [float(p["score"]) for p in json.loads(resp.read())["predictions"]]
    s = np.asarray(scores)
    if task is Task.REGRESSION:
        err = s - labels.astype(float)
        return {
            "rmse": round(float(np.sqrt(np.mean(err**2))), 4),
            "mae": round(float(np.mean(np.abs(err))), 4),
        }
    return {
        "roc_auc": round(float(roc_auc_score(labels, s)), 4),
        "accuracy": round(float(np.mean((s >= 0.5) == labels)), 4),
    }


def drifted_sample(
    seed: int, contract: Contract, n: int = 3_000, scenario: str = "drift"
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Records after the change of ``scenario`` (features only; ``stationary``: no change) and
    their labels, to score the served model on."""
    from etl.synthetic import Scenario, generate_records

    label = contract.label
    if label is None:
        raise LabelRequiredError(
            f"the drift demo trains and serves a model, but contract {contract.name!r} declares"
            ' no label; run the stationary demo, or give a field role = "label"'
        )
    records = generate_records(
        n, seed=seed, scenario=Scenario(scenario), drift_at=0.0, contract=contract
    )
    labels = np.asarray([r[label.name] for r in records])
    if contract.task is Task.BINARY_CLASSIFICATION:
        labels = labels.astype(bool)
    features = [f.name for f in contract.features]
    return [{k: r.get(k) for k in features} for r in records], labels


@dataclass
class StreamProducer:
    """Produces drifted (or ``scenario``) records in chunks, in real time, until stopped."""

    settings: Settings
    clients: AwsClients
    rate: float
    seed: int
    poison_rate: float
    scenario: str = "drift"
    #: A late-label contract: how its label records follow the records (None: the default).
    labels: LateLabels | None = None
    summaries: list[ProduceSummary] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        i = 0
        while not self.stop.is_set():
            self.summaries.append(
                produce(
                    self.settings,
                    self.clients,
                    ProduceRun(
                        records=CHUNK,
                        rate=self.rate,
                        seed=self.seed + 100 + i,
                        scenario=self.scenario,
                        drift_at=0.0,
                        poison_rate=self.poison_rate,
                        start=datetime.now(UTC),
                        labels=self.labels,
                    ),
                )
            )
            i += 1

    @property
    def good_ids(self) -> list[str]:
        return [t for s in self.summaries for t in s.good_ids]

    @property
    def poison(self) -> int:
        return sum(sum(s.poison.values()) for s in self.summaries)

    @property
    def produced(self) -> int:
        return sum(s.produced for s in self.summaries)


@dataclass
class DispatchThread:
    """The local dispatcher (retrain rule's SQS target → handler), run in a thread."""

    settings: Settings
    clients: AwsClients
    t0: float
    stop: threading.Event = field(default_factory=threading.Event)
    received_s: float | None = None
    results: list[tuple[float, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        from infra.dispatcher import Dispatcher
        from retrain.gate import handle_event

        def handle(*args: Any, **kwargs: Any) -> Any:
            if self.received_s is None:
                self.received_s = round(time.monotonic() - self.t0, 1)
            return handle_event(*args, **kwargs)

        dispatcher = Dispatcher(self.settings, self.clients, handle=handle)
        while not self.stop.is_set():
            try:
                report = dispatcher.poll_once(wait_s=1)
            except Exception as exc:  # reported in the summary, never silent
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.stop.wait(1.0)
                continue
            self.errors += report.failed + report.dead_lettered
            for r in report.results:
                self.results.append((round(time.monotonic() - self.t0, 1), r))

    @property
    def promoted(self) -> tuple[float, Any] | None:
        for at, r in self.results:
            if r.outcome is not None and r.outcome.promoted:
                return at, r.outcome
        return None


def loop_settings(settings: Settings, state: Path) -> Settings:
    return settings.replace(
        retrain_window_hours=RETRAIN_WINDOW_HOURS,
        retrain_cooldown_s=120.0,
        model_cache_dir=str(state / "models"),
    )


def bootstrap_champion(
    settings: Settings,
    clients: AwsClients,
    history_end: datetime,
    progress: Callable[[str], None],
) -> Any:
    """Train, register and deploy the first model on the history window; publishes its baseline."""
    from retrain.run import run_retrain

    progress("training the first champion on the stationary history in the lake")
    outcome = run_retrain(settings, clients, event=None, now=history_end + timedelta(seconds=1))
    if not outcome.promoted:
        raise RuntimeError(f"the first champion was not promoted: {outcome.reason}")
    return outcome


def start_history(
    settings: Settings, clients: AwsClients, n: int, seed: int, poison_rate: float
) -> tuple[ProduceSummary, datetime]:
    """Stationary history an hour back in event time (put as fast as the stream takes it)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    summary = produce(
        settings,
        clients,
        ProduceRun(
            records=n, seed=seed, scenario="stationary", poison_rate=poison_rate, start=start
        ),
    )
    end = start + timedelta(seconds=n / 50.0)
    return summary, end


@dataclass
class DriftMonitor:
    """Watches the drift alarm's state and the DriftScore metric (times relative to the stream)."""

    clients: AwsClients
    settings: Settings
    alarm_name: str | None
    state: str = "?"
    alarm_s: float | None = None
    ok_again_s: float | None = None
    alarm_times: list[float] = field(default_factory=list)
    max_score: float | None = None
    last_score: float | None = None

    def poll(self, elapsed: float) -> None:
        cw = self.clients.client("cloudwatch")
        if self.alarm_name:
            alarms = cw.describe_alarms(AlarmNames=[self.alarm_name]).get("MetricAlarms", [])
            if alarms:
                new = alarms[0]["StateValue"]
                if new == "ALARM" and self.state != "ALARM":
                    self.alarm_times.append(elapsed)
                    if self.alarm_s is None and elapsed >= 0:
                        self.alarm_s = round(elapsed, 1)
                if new == "OK" and self.alarm_s is not None and self.ok_again_s is None:
                    self.ok_again_s = round(elapsed, 1)
                self.state = new
        end = datetime.now(UTC)
        points = cw.get_metric_statistics(
            Namespace=self.settings.metrics_namespace,
            MetricName="DriftScore",
            Dimensions=[{"Name": "Stream", "Value": self.settings.require("stream_name")}],
            StartTime=end - timedelta(hours=1),
            EndTime=end,
            Period=10,
            Statistics=["Maximum"],
        ).get("Datapoints", [])
        if points:
            points.sort(key=lambda p: p["Timestamp"])
            self.last_score = round(float(points[-1]["Maximum"]), 4)
            top = max(float(p["Maximum"]) for p in points)
            self.max_score = round(max(top, self.max_score or 0.0), 4)

    def line(self) -> str:
        return f"drift score {self.last_score} (max {self.max_score}), alarm {self.state}"


@dataclass(frozen=True)
class Rig:
    """The running parts a demo drives: settings, clients, the consumer fleet, the lake watcher."""

    settings: Settings
    clients: AwsClients
    fleet: Any  # consumers.fleet.ConsumerFleet
    watcher: Any  # infra.demo.LakeWatcher

    def tick(self) -> None:
        """One second of watching: read the lake, restart a crashed worker."""
        time.sleep(1.0)
        self.watcher.poll()
        self.fleet.supervise_once()


@dataclass(frozen=True)
class LoopOptions:
    history: int
    rate: float
    seed: int
    poison_rate: float
    timeout: float


def run_loop(
    rig: Rig,
    outputs: dict[str, str],
    state: Path,
    options: LoopOptions,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Phases 1-3 of the module docstring; returns the loop's figures for the demo summary."""
    loop = _ClosedLoop(rig, outputs, state, options, progress)
    hist, history_end = loop.history_to_lake()
    server, boot = loop.serve_champion(history_end)
    before = loop.score(server.url)
    streamed = loop.stream_until_closed(server.url)
    loop.drain([hist, *streamed.producer.summaries])
    after = loop.score(server.url)
    return loop.figures(hist, boot, server, streamed, before, after)


@dataclass
class _Streamed:
    """What phase 2 leaves: its threads' findings and the swap load's process."""

    dispatch: DispatchThread
    producer: StreamProducer
    seconds: float
    load_proc: Any
    load_out: Path


class _ClosedLoop:
    """The loop's steps over one rig; each method is one phase of the module docstring."""

    def __init__(
        self,
        rig: Rig,
        outputs: dict[str, str],
        state: Path,
        options: LoopOptions,
        progress: Callable[[str], None],
    ) -> None:
        from retrain.runs import promotion_metric

        self.rig, self.state, self.options, self.progress = rig, state, options, progress
        self.lsettings = loop_settings(rig.settings, state)
        self.contract = load_contract(rig.settings.contract_path)
        self.metric = promotion_metric(self.lsettings, self.contract)
        # before anything starts: no label, no loop
        self.sample, self.labels = drifted_sample(options.seed + 999, self.contract)
        self.deadline = time.monotonic() + options.timeout
        self.monitor = DriftMonitor(rig.clients, rig.settings, outputs.get("DriftAlarmName"))

    def history_to_lake(self) -> tuple[ProduceSummary, datetime]:
        """1. history → lake (any ALARM before the drift starts is a false alarm)."""
        n_history = max(self.options.history, 5_000)
        self.progress(f"producing {n_history} stationary records of history (event time 1 h ago)")
        rig, opts = self.rig, self.options
        hist, history_end = start_history(
            rig.settings, rig.clients, n_history, opts.seed, opts.poison_rate
        )
        while len(rig.watcher.ids) < hist.good or rig.watcher.dead_letters < sum(
            hist.poison.values()
        ):
            if time.monotonic() > self.deadline:
                raise TimeoutError("the history did not reach the lake in time")
            rig.tick()
            self.monitor.poll(-1.0)
        return hist, history_end

    def serve_champion(self, history_end: datetime) -> tuple[Any, Any]:
        """1. the first champion, trained on the history, served; its profile is the baseline."""
        from infra.model_server import capture_options, start_model_server
        from retrain.wiring import pointer_path

        clients = self.rig.clients
        boot = bootstrap_champion(self.lsettings, clients, history_end, self.progress)
        server = start_model_server(
            self.state, None, pointer=pointer_path(self.lsettings), s3_client=clients.client("s3"),
            capture=capture_options(self.lsettings),  # predictions to s3://<lake>/capture/
        )  # fmt: skip
        self.lsettings = self.lsettings.replace(
            model_server_url=server.url, model_server_token_file=str(server.token_file)
        )
        self.progress(
            f"champion v{boot.model_version} served at {server.url}; baseline {boot.baseline_uri}"
        )
        return server, boot

    def score(self, url: str) -> dict[str, float]:
        return score_endpoint(url, self.sample, self.labels, self.contract.task)

    def stream_until_closed(self, url: str) -> _Streamed:
        """2. the drifted stream, the alarm, the dispatcher and the retrain, until the alarm is
        OK again after a promotion (or the deadline)."""
        rig, opts = self.rig, self.options
        t0 = time.monotonic()
        dispatch = DispatchThread(self.lsettings, rig.clients, t0)
        producer = StreamProducer(rig.settings, rig.clients, opts.rate, opts.seed, opts.poison_rate)
        threads = [
            threading.Thread(target=dispatch.run, daemon=True),
            threading.Thread(target=producer.run, daemon=True),
        ]
        for t in threads:
            t.start()
        self.progress(f"streaming drifted records at {opts.rate:.0f}/s until the loop closes")
        streamed = _Streamed(dispatch, producer, 0.0, None, self.state / "swap-load.json")
        last = 0.0
        try:
            while time.monotonic() < self.deadline:
                time.sleep(1.0)
                elapsed = time.monotonic() - t0
                rig.watcher.poll()
                rig.fleet.supervise_once()
                self.monitor.poll(elapsed)
                if self.monitor.alarm_s is not None and streamed.load_proc is None:
                    streamed.load_proc = self._start_swap_load(url, streamed.load_out)
                if time.monotonic() - last > 5:
                    last = time.monotonic()
                    self.progress(
                        f"t+{elapsed:.0f}s lake rows {rig.watcher.rows}, {self.monitor.line()},"
                        f" retrain {'promoted' if dispatch.promoted else 'waiting'}"
                    )
                if dispatch.promoted and self.monitor.ok_again_s is not None:
                    break
        finally:
            producer.stop.set()
            threads[1].join(timeout=30)
            dispatch.stop.set()
            threads[0].join(timeout=30)
        streamed.seconds = time.monotonic() - t0
        return streamed

    def _start_swap_load(self, url: str, out: Path) -> Any:
        """≥ 100 requests/s from another process across the model switch."""
        from infra.loadgen import start_load

        return start_load(
            url, requests=12_000, rate=120.0, max_seconds=100.0, out=out, record=self.sample[0]
        )

    def drain(self, summaries: list[ProduceSummary]) -> None:
        """3. everything produced reaches the lake (a minute past the deadline at most)."""
        want = {i for s in summaries for i in s.good_ids}
        poison = sum(sum(s.poison.values()) for s in summaries)
        watcher = self.rig.watcher
        while time.monotonic() < self.deadline + 60 and (
            not want <= set(watcher.ids) or watcher.dead_letters < poison
        ):
            self.rig.tick()

    def figures(
        self,
        hist: ProduceSummary,
        boot: Any,
        server: Any,
        streamed: _Streamed,
        before: dict[str, float],
        after: dict[str, float],
    ) -> dict[str, Any]:
        """The loop's figures for the demo summary (the model server rides along for the caller
        to stop, or to keep up with the stack: `driftline demo --keep`)."""
        from infra.loadgen import load_result

        monitor, dispatch, producer = self.monitor, streamed.dispatch, streamed.producer
        load = (
            load_result(streamed.load_proc, streamed.load_out, timeout=150)
            if streamed.load_proc is not None
            else {}
        )
        kinds: dict[str, int] = {}
        for s in [hist, *producer.summaries]:
            for k, v in s.poison.items():
                kinds[k] = kinds.get(k, 0) + v
        return {
            "produced": hist.produced + producer.produced,
            "poison": sum(hist.poison.values()) + producer.poison,
            "poison_by_kind": kinds,
            "good_ids": set(hist.good_ids) | set(producer.good_ids),
            "stream_seconds": streamed.seconds,
            "history_records": hist.produced,
            "champion_version": boot.model_version,
            "drift_onset_s": 0.0,
            "drift_alarm_s": monitor.alarm_s,
            "max_drift_score": monitor.max_score,
            "last_drift_score": monitor.last_score,
            "false_alarms": 0
            if monitor.alarm_s is None
            else sum(1 for t in monitor.alarm_times if t < 0),
            **self._retrain_figures(dispatch),
            **{f"{k}_after_drift_before_retrain": v for k, v in before.items()},
            **{f"{k}_after_drift_after_retrain": v for k, v in after.items()},
            "alarm_ok_again_s": monitor.ok_again_s,
            "alarm_state": monitor.state,
            "requests_during_swap": load.get("ok", 0) + load.get("failed", 0) if load else 0,
            "failed_requests_during_swap": load.get("failed") if load else None,
            "model_server": server,
        }

    def _retrain_figures(self, dispatch: DispatchThread) -> dict[str, Any]:
        promoted, metric = dispatch.promoted, self.metric
        outcome = promoted[1] if promoted else None
        return {
            "retrain_started_s": dispatch.received_s,
            "deployed_s": promoted[0] if promoted else None,
            "retrain_to_serving_s": (outcome.timings or {}).get("total_s") if outcome else None,
            "retrain_status": [r.status for _, r in dispatch.results],
            "retrain_errors": dispatch.errors,
            "metric": metric,
            "metric_champion": (outcome.metrics_champion or {}).get(metric) if outcome else None,
            "metric_challenger": outcome.metrics_challenger.get(metric) if outcome else None,
        }
