"""The processor's drift observer on the emulator: windows close by policy, metrics land,
a new baseline takes effect at the next window, a foreign baseline is refused without failing."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa
import pytest

from consumers.drift_observer import make_drift_observer
from etl.aws import AwsClients
from etl.contract import load_contract, parse_contract
from etl.profile import as_arrow, build_profile, save_baseline
from etl.settings import load_settings
from etl.synthetic import Scenario, generate_frame

pytestmark = pytest.mark.functional
CONTRACT = load_contract()


def _rows(n: int, seed: int, scenario: Scenario = Scenario.STATIONARY) -> pa.Table:
    table: pa.Table = as_arrow(generate_frame(n, seed=seed, scenario=scenario, drift_at=0.0))
    return table


def test_windows_publish_and_follow_the_current_baseline(aws: AwsClients) -> None:
    # GIVEN a lake bucket with a current baseline, and the observer the processor would build
    s3, cw = aws.client("s3"), aws.client("cloudwatch")
    s3.create_bucket(Bucket="lake")
    first = build_profile(_rows(5_000, seed=1), CONTRACT, created_at="2026-01-01T00:00:00Z")
    save_baseline(s3, "lake", "baselines", first)
    settings = load_settings(
        {"lake_bucket": "lake", "stream_name": "tx", "drift_window_s": 60, "drift_min_rows": 500},
        env={},
        config_path=None,
    )
    obs = make_drift_observer(settings, CONTRACT, aws)
    assert obs is not None and obs.window is not None

    # WHEN 400 rows arrive over 61 s: old enough but too small → the window extends
    obs.observe(_rows(400, seed=2), dead_letters=1, now=0.0)
    obs.flush(61.0)
    assert obs.closed == []
    # AND 400 more drifted rows arrive → it closes and publishes
    obs.observe(_rows(400, seed=3, scenario=Scenario.DRIFT), dead_letters=3, now=70.0)
    obs.flush(70.0)

    # THEN one window of 800 rows was published with a drift score
    (result,) = obs.closed
    assert result.rows == 800 and result.drift_score is not None
    assert result.baseline_version == first.version
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="Driftline")["Metrics"]}
    assert {"DriftScore", "PSI", "WindowRows", "DeadLetters", "DeadLetterRate"} <= names

    # WHEN a new baseline is published, THEN the next window uses it
    second = build_profile(_rows(5_000, seed=9), CONTRACT, created_at="2026-02-01T00:00:00Z")
    save_baseline(s3, "lake", "baselines", second)
    obs.observe(_rows(600, seed=4), dead_letters=0, now=71.0)
    obs.flush(140.0)  # this window was opened under the first baseline
    obs.observe(_rows(600, seed=5), dead_letters=0, now=141.0)
    obs.flush(210.0)
    assert [r.baseline_version for r in obs.closed] == [
        first.version,
        first.version,
        second.version,
    ]

    # WHEN a baseline for another contract becomes current
    other_doc = CONTRACT.to_dict()
    other_doc["version"] = 2
    other = parse_contract(other_doc)
    foreign = dataclasses.replace(second, contract_hash=other.hash, version="foreign")
    save_baseline(s3, "lake", "baselines", foreign)
    obs.observe(_rows(600, seed=6), dead_letters=0, now=211.0)
    obs.flush(280.0)
    # THEN it is refused (logged, counted), the old one stays, and nothing raised
    obs.observe(_rows(600, seed=7), dead_letters=0, now=281.0)
    obs.flush(350.0)
    assert obs.errors == 2  # refused at both closes since; never raised
    assert obs.closed[-1].baseline_version == second.version


def test_without_a_baseline_windows_still_publish_rows_and_dead_letters(aws: AwsClients) -> None:
    aws.client("s3").create_bucket(Bucket="lake")
    settings = load_settings(
        {"lake_bucket": "lake", "stream_name": "tx", "drift_min_rows": 10}, env={}, config_path=None
    )
    obs = make_drift_observer(settings, CONTRACT, aws)
    assert obs is not None and obs.window is None
    obs.observe(_rows(50, seed=1), dead_letters=5, now=0.0)
    obs.flush(60.0)
    assert [(r.rows, r.drift_score) for r in obs.closed] == [(50, None)]
    cw = aws.client("cloudwatch")
    got = cw.get_metric_statistics(
        Namespace="Driftline",
        MetricName="DeadLetterRate",
        Dimensions=[{"Name": "Stream", "Value": "tx"}],
        StartTime=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [d["Maximum"] for d in got] == [5 / 55]
