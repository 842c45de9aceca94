"""A local stack holding what every console page shows, seeded quickly through the real APIs.

Used by the console's functional tests, its browser tests and ``bench/console.py``:

* the template deployed into the emulator (``deploy_local``) and the Glue table;
* one flush per shard through the real decoder and :class:`etl.lake.LakeWriter` (rows, Glue
  partitions, manifests, dead letters, among them a ``<script>`` payload, a non-UTF-8 one and an
  oversize one);
* a baseline built from the first rows and published as current (``save_baseline``);
* per-window drift metrics for every feature over ``hours`` (``PutMetricData``, the consumer's
  metric names and dimensions), drifting in the last quarter;
* alarm transitions made by the real local alarm evaluator, evaluated at three moments;
* optionally two trained, registered model versions (v1 approved and serving, v2 pending) and a
  retrain run record (``retrain.runs.save_state``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from consumers.metrics import FEATURE_METRICS
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import Contract, load_contract
from etl.lake import GlueCatalog, LakeLayout, LakeWriter
from etl.profile import build_profile, save_baseline
from etl.records import RawRecord, RecordDecoder
from etl.settings import Settings, load_settings
from etl.synthetic import Scenario, encode_record, generate_frame, generate_records
from infra.alarm_evaluator import AlarmEvaluator
from infra.context import settings_from_outputs
from infra.stack import deploy_local

XSS = "<script>document.title='pwned'</script>"
SHARDS = ("shardId-000000000000", "shardId-000000000001")


@dataclass
class SeededStack:
    settings: Settings
    contract: Contract
    clients: AwsClients
    dead_letters: int
    rows: int


def stack_settings(endpoint: str, outputs: dict[str, str], **extra: Any) -> Settings:
    base = load_settings(config_path=None, env={})
    return base.replace(endpoint_url=endpoint, **settings_from_outputs(outputs), **extra)


def seed(
    clients: AwsClients,
    state_dir: Path,
    *,
    hours: int = 3,
    records: int = 1200,
    seed_value: int = 11,
    extra_settings: dict[str, Any] | None = None,
) -> SeededStack:
    assert clients.endpoint_url is not None
    configure_awswrangler(clients.endpoint_url)
    result = deploy_local(clients)
    settings = stack_settings(clients.endpoint_url, dict(result.outputs), **(extra_settings or {}))
    contract = load_contract(settings.contract_path)
    layout = LakeLayout(bucket=settings.require("lake_bucket"), table=contract.name)
    catalog = GlueCatalog(
        contract,
        layout,
        settings.require("glue_database"),
        clients.session,
        endpoint_url=clients.endpoint_url,
    )
    catalog.ensure_table()
    now = datetime.now(UTC)
    docs = generate_records(
        records, seed=seed_value, start=now - timedelta(minutes=30), scenario=Scenario.DRIFT
    )
    writer = LakeWriter(contract, layout, clients.client("s3"), catalog=catalog)
    decoder = RecordDecoder(contract)
    dead = rows = 0
    tables = []
    for i, shard in enumerate(SHARDS):
        part = docs[i::2]
        payloads = [encode_record(d) for d in part]
        payloads += _poison() if i == 0 else []
        raw = [
            RawRecord(p, str(n + 1), f"pk-{n}", int(now.timestamp() * 1000))
            for n, p in enumerate(payloads)
        ]
        batch = decoder.decode(raw, shard_id=shard, ingest_time=now)
        writer.write(shard, "1", str(len(raw)), batch.table, batch.dead_letters)
        dead += len(batch.dead_letters)
        rows += batch.table.num_rows
        tables.append(batch.table)
    put_leases(clients, settings.require("application_name"), {s: 604 for s in SHARDS})
    profile = build_profile(tables[0], contract, source="console seed")
    save_baseline(
        clients.client("s3"), settings.require("lake_bucket"), settings.baseline_prefix, profile
    )
    put_drift_metrics(clients, settings, contract, hours=hours, seed_value=seed_value)
    evaluate_alarms(clients, state_dir, hours=hours)
    return SeededStack(settings, contract, clients, dead, rows)


def put_leases(clients: AwsClients, table: str, checkpoints: dict[str, int]) -> None:
    """Lease items shaped as the KCL writes them (key ``leaseKey``; owner, counter, checkpoint),
    one worker per shard: what a running fleet leaves in its lease table."""
    ddb = clients.client("dynamodb")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i, (shard, checkpoint) in enumerate(sorted(checkpoints.items())):
        ddb.put_item(
            TableName=table,
            Item={
                "leaseKey": {"S": shard},
                "leaseOwner": {"S": f"worker-{i + 1}:7f3c9a2e-{i:04d}"},
                "leaseCounter": {"N": str(40 + i)},
                "checkpoint": {"S": str(checkpoint)},
                "checkpointSubSequenceNumber": {"N": "0"},
                "ownerSwitchesSinceCheckpoint": {"N": "0"},
            },
        )


def _poison() -> list[bytes]:
    return [
        XSS.encode(),  # malformed JSON whose text is markup
        b"\xff\xfe not utf-8 \x80\x81",
        b'{"pad": "' + b"x" * 70_000 + b'"}',
        b"[1, 2, 3]",
    ]


def put_drift_metrics(
    clients: AwsClients, settings: Settings, contract: Contract, *, hours: int, seed_value: int
) -> int:
    """Per-window metrics for every feature over ``hours``; returns the datums written."""
    rng = np.random.default_rng(seed_value)
    stream = settings.require("stream_name")
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    windows = hours * 60
    drift_from = int(windows * 0.75)
    drift_to = int(windows * 0.92)
    datums: list[dict[str, Any]] = []
    for w in range(windows):
        t = end - timedelta(minutes=windows - w)
        drifting = drift_from <= w < drift_to
        score = max_psi = 0.0
        for j, f in enumerate(contract.features):
            psi = float(rng.gamma(2.0, 0.015)) + (0.25 + 0.05 * j if drifting and j < 2 else 0.0)
            # the calibrated feature score (1 = the line): ~0.15 stationary, > 1.25 drifting
            feature_score = psi / 0.2
            score, max_psi = max(score, feature_score), max(max_psi, psi)
            dims = [{"Name": "Stream", "Value": stream}, {"Name": "Feature", "Value": f.name}]
            values = {
                "PSI": psi,
                "JSDistance": min(1.0, psi**0.5 / 2),
                "KSStatistic": psi / 3,
                "DriftFeatureScore": feature_score,
            }
            for _, metric in FEATURE_METRICS:
                if metric in values:
                    datums.append(_datum(metric, dims, values[metric], t))
        stream_dim = [{"Name": "Stream", "Value": stream}]
        datums.append(_datum("DriftScore", stream_dim, score, t))
        datums.append(_datum("MaxPSI", stream_dim, max_psi, t))
    cw = clients.client("cloudwatch")
    for i in range(0, len(datums), 1000):
        cw.put_metric_data(Namespace=settings.metrics_namespace, MetricData=datums[i : i + 1000])
    return len(datums)


def _datum(name: str, dims: list[dict[str, str]], value: float, t: datetime) -> dict[str, Any]:
    return {"MetricName": name, "Dimensions": dims, "Value": value, "Unit": "None", "Timestamp": t}


def evaluate_alarms(clients: AwsClients, state_dir: Path, *, hours: int) -> None:
    """The real evaluator at three moments: before, during and after the drift."""
    evaluator = AlarmEvaluator(
        clients.client("cloudwatch"), clients.client("events"), state_dir=state_dir
    )
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    windows = hours * 60
    for at in (int(windows * 0.5), int(windows * 0.85), windows):
        evaluator.evaluate_once(now=end - timedelta(minutes=windows - at) + timedelta(seconds=5))


def seed_models(
    clients: AwsClients, settings: Settings, work: Path, *, approve_first: bool = True
) -> None:
    """Two trained versions registered (v1 approved and serving, v2 pending) and a run record."""
    from retrain import registry
    from retrain.artifacts import upload_model
    from retrain.manual import decide
    from retrain.runs import promotion_metric, settings_contract
    from retrain.train import train
    from retrain.wiring import model_group

    s3, sm = clients.client("s3"), clients.client("sagemaker")
    bucket = settings.require("lake_bucket")
    group = model_group(settings)
    metric = promotion_metric(settings, settings_contract(settings))
    registry.ensure_group(sm, group)
    frame = generate_frame(3000, seed=6, scenario=Scenario.DRIFT)
    for i, (name, part) in enumerate((("alpha", frame.iloc[:1500]), ("beta", frame.iloc[1500:]))):
        (work / name).mkdir(parents=True, exist_ok=True)
        part.to_parquet(work / name / "train.parquet")
        train(
            work / name, work / f"{name}-model", hyperparameters={"model_id": name, "max_iter": 20}
        )
        url = upload_model(s3, work / f"{name}-model", f"s3://{bucket}/models/{name}")
        registry.register(
            sm,
            group,
            registry.Candidate(
                model_data_url=url,
                image_uri="local",
                metrics={metric: 0.81 + i / 20, "accuracy": 0.9 + i / 50},
                champion_metrics={metric: 0.8 + i / 100} if i else None,
                lineage={
                    "run_id": f"run-{name}",
                    "window_start": "2026-11-27T08:00:00+00:00",
                    "window_end": "2026-11-27T14:00:00+00:00",
                    "baseline_version": f"baseline-{name}",
                    "code_version": "0123456789ab",
                },
            ),
        )
    if approve_first:
        decide(settings, clients, "approve", 1)
    save_run_record(clients, settings)


def save_run_record(clients: AwsClients, settings: Settings) -> None:
    """The record of the retrain run that registered v2 and kept it for manual approval."""
    from retrain.runs import RunState, RunStatus, save_state
    from retrain.triggers import Trigger

    bucket = settings.require("lake_bucket")
    save_state(
        clients.client("s3"),
        settings,
        RunState(
            run_id="run-beta",
            job_name="driftline-run-beta",
            status=RunStatus.FINISHED,
            event_id="evt-1",
            holder=None,
            window_start="2026-11-27T08:00:00+00:00",
            window_end="2026-11-27T14:00:00+00:00",
            holdout_start="2026-11-27T12:30:00+00:00",
            train_rows=1125,
            holdout_rows=375,
            train_uri=f"s3://{bucket}/retrain/x/train",
            test_uri=f"s3://{bucket}/retrain/x/test",
            output_uri=f"s3://{bucket}/retrain/x/out",
            image_uri="local",
            hyperparameters={},
            started_at=datetime.now(UTC).timestamp(),
            champion_version=1,
            reason="challenger 0.86 vs champion 0.81: kept for manual approval",
            model_version=2,
            trigger=Trigger.QUALITY,
        ),
    )
