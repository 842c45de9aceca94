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
    seed: int, contract: Contract, n: int = 3_000
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Post-drift records (features only) and their labels, to score the served model on."""
    from etl.synthetic import Scenario, generate_records

    label = contract.label
    if label is None:
        raise LabelRequiredError(
            f"the drift demo trains and serves a model, but contract {contract.name!r} declares"
            ' no label; run the stationary demo, or give a field role = "label"'
        )
    records = generate_records(
        n, seed=seed, scenario=Scenario.DRIFT, drift_at=0.0, contract=contract
    )
    labels = np.asarray([r[label.name] for r in records])
    if contract.task is Task.BINARY_CLASSIFICATION:
        labels = labels.astype(bool)
    features = [f.name for f in contract.features]
    return [{k: r.get(k) for k in features} for r in records], labels


@dataclass
class StreamProducer:
    """Produces drifted records in chunks, in real time, until stopped."""

    settings: Settings
    clients: AwsClients
    rate: float
    seed: int
    poison_rate: float
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
                        scenario="drift",
                        drift_at=0.0,
                        poison_rate=self.poison_rate,
                        start=datetime.now(UTC),
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


def run_loop(
    settings: Settings,
    clients: AwsClients,
    fleet: Any,
    watcher: Any,
    outputs: dict[str, str],
    state: Path,
    *,
    history: int,
    rate: float,
    seed: int,
    poison_rate: float,
    timeout: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Phases 1-3 of the module docstring; returns the loop's figures for the demo summary."""
    from infra.loadgen import load_result, start_load
    from infra.model_server import start_model_server
    from retrain.runs import promotion_metric
    from retrain.wiring import pointer_path

    n_history = max(history, 5_000)
    lsettings = loop_settings(settings, state)
    contract = load_contract(settings.contract_path)
    metric = promotion_metric(lsettings, contract)
    sample, labels = drifted_sample(
        seed + 999, contract
    )  # before anything starts: no label, no loop
    deadline = time.monotonic() + timeout

    # 1. history → lake → first champion, served; its profile is the current baseline
    progress(f"producing {n_history} stationary records of history (event time 1 h ago)")
    monitor = DriftMonitor(clients, settings, outputs.get("DriftAlarmName"))
    hist, history_end = start_history(settings, clients, n_history, seed, poison_rate)
    hist_poison = sum(hist.poison.values())
    while len(watcher.ids) < hist.good or watcher.dead_letters < hist_poison:
        if time.monotonic() > deadline:
            raise TimeoutError("the history did not reach the lake in time")
        time.sleep(1.0)
        watcher.poll()
        fleet.supervise_once()
        monitor.poll(-1.0)  # any ALARM before the drift starts is a false alarm
    boot = bootstrap_champion(lsettings, clients, history_end, progress)
    server = start_model_server(
        state, None, pointer=pointer_path(lsettings), s3_client=clients.client("s3")
    )
    lsettings = lsettings.replace(
        model_server_url=server.url, model_server_token_file=str(server.token_file)
    )
    progress(f"champion v{boot.model_version} served at {server.url}; baseline {boot.baseline_uri}")
    before = score_endpoint(server.url, sample, labels, contract.task)

    # 2. the drifted stream, the alarm, the dispatcher and the retrain
    t0 = time.monotonic()
    dispatch = DispatchThread(lsettings, clients, t0)
    producer = StreamProducer(settings, clients, rate, seed, poison_rate)
    threads = [
        threading.Thread(target=dispatch.run, daemon=True),
        threading.Thread(target=producer.run, daemon=True),
    ]
    for t in threads:
        t.start()
    progress(f"streaming drifted records at {rate:.0f}/s until the loop closes")
    load_proc, load_out = None, state / "swap-load.json"
    last = 0.0
    try:
        while time.monotonic() < deadline:
            time.sleep(1.0)
            elapsed = time.monotonic() - t0
            watcher.poll()
            fleet.supervise_once()
            monitor.poll(elapsed)
            if monitor.alarm_s is not None and load_proc is None:
                # ≥ 100 requests/s from another process across the model switch
                load_proc = start_load(
                    server.url,
                    requests=12_000,
                    rate=120.0,
                    max_seconds=100.0,
                    out=load_out,
                    record=sample[0],
                )
            if time.monotonic() - last > 5:
                last = time.monotonic()
                progress(
                    f"t+{elapsed:.0f}s lake rows {watcher.rows}, {monitor.line()},"
                    f" retrain {'promoted' if dispatch.promoted else 'waiting'}"
                )
            if dispatch.promoted and monitor.ok_again_s is not None:
                break
    finally:
        producer.stop.set()
        threads[1].join(timeout=30)
        dispatch.stop.set()
        threads[0].join(timeout=30)
    stream_s = time.monotonic() - t0

    # 3. everything produced reaches the lake; the new model on the same post-drift sample
    want = set(hist.good_ids) | set(producer.good_ids)
    poison = hist_poison + producer.poison
    while time.monotonic() < deadline + 60 and (
        not want <= set(watcher.ids) or watcher.dead_letters < poison
    ):
        time.sleep(1.0)
        watcher.poll()
        fleet.supervise_once()
    after = score_endpoint(server.url, sample, labels, contract.task)
    load = load_result(load_proc, load_out, timeout=150) if load_proc is not None else {}
    promoted = dispatch.promoted
    outcome = promoted[1] if promoted else None
    kinds: dict[str, int] = {}
    for s in [hist, *producer.summaries]:
        for k, v in s.poison.items():
            kinds[k] = kinds.get(k, 0) + v
    return {
        "produced": hist.produced + producer.produced,
        "poison": poison,
        "poison_by_kind": kinds,
        "good_ids": want,
        "stream_seconds": stream_s,
        "history_records": hist.produced,
        "champion_version": boot.model_version,
        "drift_onset_s": 0.0,
        "drift_alarm_s": monitor.alarm_s,
        "max_drift_score": monitor.max_score,
        "last_drift_score": monitor.last_score,
        "false_alarms": 0
        if monitor.alarm_s is None
        else sum(1 for t in monitor.alarm_times if t < 0),
        "retrain_started_s": dispatch.received_s,
        "deployed_s": promoted[0] if promoted else None,
        "retrain_to_serving_s": (outcome.timings or {}).get("total_s") if outcome else None,
        "retrain_status": [r.status for _, r in dispatch.results],
        "retrain_errors": dispatch.errors,
        "metric": metric,
        "metric_champion": (outcome.metrics_champion or {}).get(metric) if outcome else None,
        "metric_challenger": outcome.metrics_challenger.get(metric) if outcome else None,
        **{f"{k}_after_drift_before_retrain": v for k, v in before.items()},
        **{f"{k}_after_drift_after_retrain": v for k, v in after.items()},
        "alarm_ok_again_s": monitor.ok_again_s,
        "alarm_state": monitor.state,
        "requests_during_swap": load.get("ok", 0) + load.get("failed", 0) if load else 0,
        "failed_requests_during_swap": load.get("failed") if load else None,
        # the caller stops it, or keeps it up with the stack (`driftline demo --keep`)
        "model_server": server,
    }
