"""`driftline baseline build`, `drift check` and `alarms` end to end (local files, emulator S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.profile import as_arrow
from etl.synthetic import Scenario, generate_frame
from infra.alarm_evaluator import HISTORY_FILE, Transition
from infra.cli import main

pytestmark = pytest.mark.functional


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No local stack state, no config file: only what each test sets."""
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    for var in ("DRIFTLINE_ENDPOINT_URL", "DRIFTLINE_LAKE_BUCKET", "DRIFTLINE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _table(n: int, seed: int, scenario: Scenario = Scenario.STATIONARY) -> pa.Table:
    table: pa.Table = as_arrow(generate_frame(n, seed=seed, scenario=scenario, drift_at=0.0))
    return table


def test_local_parquet_baseline_then_csv_check(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a training set as Parquet and a drifted set as CSV
    pq.write_table(_table(5_000, seed=1), env / "train.parquet")
    pacsv.write_csv(_table(2_000, seed=2, scenario=Scenario.DRIFT), env / "drifted.csv")
    # WHEN a baseline is built to a local file
    assert (
        main(
            [
                "baseline",
                "build",
                "--from",
                str(env / "train.parquet"),
                "--out",
                str(env / "b.json"),
            ]
        )
        == 0
    )
    built = json.loads(capsys.readouterr().out)
    # THEN it names its version, rows, the contract's hash and window
    assert built["rows"] == 5_000 and built["contract_hash"] == load_contract().hash
    assert built["window"][0] == "2026-01-01T00:00:00Z"
    # WHEN the drifted CSV is checked against it
    assert (
        main(
            [
                "drift",
                "check",
                "--baseline",
                str(env / "b.json"),
                "--from",
                str(env / "drifted.csv"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    # THEN every feature is reported and the drift score is high
    assert [f["name"] for f in result["features"]] == [f.name for f in load_contract().features]
    assert result["rows"] == 2_000 and result["drift_score"] > 1.0 and result["max_psi"] > 0.2
    # AND as a CI gate it fails; a stationary check passes the same gate
    assert (
        main(
            [
                "drift",
                "check",
                "--baseline",
                str(env / "b.json"),
                "--from",
                str(env / "drifted.csv"),
                "--fail-above",
                "1",
            ]
        )
        == 1
    )
    pq.write_table(_table(2_000, seed=3), env / "calm.parquet")
    assert (
        main(
            [
                "drift",
                "check",
                "--baseline",
                str(env / "b.json"),
                "--from",
                str(env / "calm.parquet"),
                "--fail-above",
                "1",
            ]
        )
        == 0
    )
    assert "drift score (largest score; > 1 = drift)" in capsys.readouterr().out


def test_infinite_values_are_counted_like_nulls_and_a_tiny_file_gets_no_score(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN training data where 3 amounts are +inf and 2 are -inf
    table = _table(3_000, seed=1)
    amount = table.column("amount").to_numpy().copy()
    amount[[5, 50, 500]] = float("inf")
    amount[[7, 70]] = float("-inf")
    table = table.set_column(table.schema.get_field_index("amount"), "amount", pa.array(amount))
    pq.write_table(table, env / "inf.parquet")
    # WHEN a baseline is built from it
    rc = main(["baseline", "build", "--from", str(env / "inf.parquet"), "--out", "b.json"])
    # THEN it succeeds and reports the non-finite values; the file is strict JSON
    assert rc == 0
    built = json.loads(capsys.readouterr().out)
    assert built["nonfinite"] == {"amount": 5}
    doc = json.loads((env / "b.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert doc["features"]["amount"]["nonfinite"] == 5 and doc["features"]["amount"]["nulls"] == 5
    # WHEN a 1-row file is checked with the CI gate
    pq.write_table(_table(1, seed=9, scenario=Scenario.DRIFT), env / "one.parquet")
    argv = ["drift", "check", "--baseline", "b.json", "--from", str(env / "one.parquet")]
    rc = main([*argv, "--fail-above", "1"])
    # THEN there is no score, the gate does not fail on noise, and it says why
    out, err = capsys.readouterr()
    assert "drift score (largest score; > 1 = drift): -" in out
    assert rc == 0
    assert "only 1 rows, fewer than the window minimum 500" in err
    # AND --min-rows 1 scores it
    assert main([*argv, "--min-rows", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drift_score"] is not None


def test_baseline_for_another_contract_is_refused(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(_table(1_000, seed=1), env / "train.parquet")
    assert (
        main(
            [
                "baseline",
                "build",
                "--from",
                str(env / "train.parquet"),
                "--out",
                str(env / "b.json"),
            ]
        )
        == 0
    )
    text = (Path(__file__).parents[2] / "etl/contracts/card_transactions.toml").read_text()
    (env / "v2.toml").write_text(text.replace("version = 1", "version = 2"))
    capsys.readouterr()
    rc = main(
        [
            "drift",
            "check",
            "--baseline",
            str(env / "b.json"),
            "--contract",
            str(env / "v2.toml"),
            "--from",
            str(env / "train.parquet"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert load_contract().hash in err and "rebuild the baseline" in err


def test_s3_sources_and_current_pointer(
    env: Path,
    aws: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the emulator with a lake bucket holding training data (Parquet) and new data (CSV)
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", aws.endpoint_url or "")
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", "lake")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="lake")
    pq.write_table(_table(3_000, seed=1), env / "t.parquet")
    s3.upload_file(str(env / "t.parquet"), "lake", "training/part-0.parquet")
    pacsv.write_csv(_table(1_000, seed=2, scenario=Scenario.DRIFT), env / "d.csv")
    s3.upload_file(str(env / "d.csv"), "lake", "incoming/d.csv")
    # WHEN a baseline is built from an S3 prefix without --out
    assert main(["baseline", "build", "--from", "s3://lake/training/"]) == 0
    built = json.loads(capsys.readouterr().out)
    # THEN it is stored under baselines/<table>/ and the pointer names it
    assert built["uri"] == f"s3://lake/baselines/card_transactions/{built['version']}.json"
    pointer = json.loads(
        s3.get_object(Bucket="lake", Key="baselines/card_transactions/CURRENT.json")["Body"].read()
    )
    assert pointer == {"version": built["version"], "uri": built["uri"]}
    # WHEN new data on S3 is checked against the current baseline
    assert main(["drift", "check", "--from", "s3://lake/incoming/d.csv", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["baseline_version"] == built["version"] and result["drift_score"] > 1.0


def test_alarms_shows_states_and_history(
    env: Path,
    aws: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", aws.endpoint_url or "")
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="driftline-drift-score",
        Namespace="Driftline",
        MetricName="DriftScore",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=0.2,
        ComparisonOperator="GreaterThanThreshold",
    )
    cw.put_metric_alarm(
        AlarmName="other",
        Namespace="X",
        MetricName="Y",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    state = env / "state"
    state.mkdir()
    t = Transition(
        time="2026-11-22T05:01:00.000+0000",
        alarm_name="driftline-drift-score",
        alarm_arn="arn",
        previous_state="OK",
        state="ALARM",
        reason="r",
        reason_data="{}",
    )
    (state / HISTORY_FILE).write_text(t.to_json() + "\n")
    assert main(["alarms", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in doc["alarms"]] == ["driftline-drift-score"]
    assert doc["alarms"][0]["datapoints"] == "2 of 3 x 60s"
    assert [(h["previous_state"], h["state"]) for h in doc["history"]] == [("OK", "ALARM")]
    assert main(["alarms"]) == 0
    assert "OK -> ALARM" in capsys.readouterr().out


def test_lake_window_source_reads_only_the_named_dates(
    env: Path,
    aws: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a lake table with two event_date partitions of 1,000 rows each
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", aws.endpoint_url or "")
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", "lake")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="lake")
    for i, day in enumerate(["2026-01-01", "2026-01-02"]):
        pq.write_table(_table(1_000, seed=10 + i), env / f"{day}.parquet")
        s3.upload_file(
            str(env / f"{day}.parquet"),
            "lake",
            f"lake/card_transactions/event_date={day}/event_hour=00/part.parquet",
        )
    # WHEN a baseline is built from one day of the lake
    assert (
        main(
            [
                "baseline",
                "build",
                "--from",
                "lake:2026-01-02:2026-01-02",
                "--out",
                str(env / "b.json"),
            ]
        )
        == 0
    )
    built = json.loads(capsys.readouterr().out)
    # THEN only that day's rows were profiled; the whole lake has both days
    assert built["rows"] == 1_000
    assert (
        main(["drift", "check", "--baseline", str(env / "b.json"), "--from", "lake", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"] == 2_000
