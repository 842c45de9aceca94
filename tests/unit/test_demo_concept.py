"""The concept demo's pure parts: flags refused before anything starts, its verdict and words,
the detection latency's arithmetic, the quality alarm's transitions as the monitor records them.
The loop itself runs through the real daemon in tests/e2e/test_demo.py."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from etl.contract import load_contract, parse_contract
from etl.exceptions import ContractError, LabelRequiredError
from infra.cli import main
from infra.commands.demo import concept_restored, concept_words
from infra.demo import late_contract_path
from infra.demo_concept import (
    ConceptOptions,
    QualityMonitor,
    check_contract,
    detection_s,
)


@pytest.fixture(autouse=True)
def no_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    return state


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--label-delay", "5"], "--label-delay applies to --scenario concept only"),
    ],
)
def test_a_label_delay_the_build_cannot_honour_is_refused_before_anything_starts(
    argv: list[str], message: str, no_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the demo is asked for late labels (or a label delay without the concept scenario)
    rc = main(argv)
    err = capsys.readouterr().err
    # THEN it says why in one line, exits 2, and started nothing (no state folder)
    assert rc == 2 and message in err and "Traceback" not in err
    assert not no_stack.exists()


def test_a_negative_label_delay_is_an_argparse_error(
    no_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--scenario", "concept", "--label-delay", "-1"])
    assert exit_.value.code == 2
    assert "argument --label-delay: must be a number >= 0, got '-1'" in capsys.readouterr().err
    assert not no_stack.exists()


def test_the_concept_demo_needs_a_binary_label() -> None:
    check_contract(load_contract())  # the card contract: fine
    doc: dict[str, Any] = {
        "name": "r",
        "partition_key": "id",
        "fields": [
            {"name": "id", "type": "string", "role": "id"},
            {"name": "t", "type": "timestamp", "role": "event_time"},
            {"name": "x", "type": "float", "role": "feature"},
        ],
    }
    with pytest.raises(LabelRequiredError, match="declares no label"):
        check_contract(parse_contract(doc, "t"))
    doc["fields"].append({"name": "y", "type": "float", "role": "label"})
    with pytest.raises(LabelRequiredError, match=r"watches ROC AUC.*regression"):
        check_contract(parse_contract(doc, "t"))


GOOD: dict[str, Any] = {
    "drift_alarms": 0,
    "drift_alarm_state": "OK",
    "max_drift_score": 0.5,
    "quality_alarm_s": 25.1,
    "quality_alarm_windows": 2.51,
    "window_s": 10.0,
    "quality_threshold": 0.83,
    "stream_auc_worst": 0.26,
    "retrain_trigger": "quality",
    "deployed_s": 37.5,
    "auc_before": 0.883,
    "auc_at_change": 0.296,
    "auc_after": 0.871,
    "label_coverage": 1.0,
}


@pytest.mark.parametrize(
    ("change", "restored"),
    [
        ({}, True),
        ({"drift_alarms": 1}, False),
        ({"quality_alarm_s": None}, False),
        ({"retrain_trigger": "drift"}, False),
        ({"deployed_s": None}, False),
        ({"auc_after": 0.80}, False),
        ({"auc_after": 0.834}, True),
    ],
)
def test_the_verdict_needs_every_part_of_the_loop(change: dict[str, Any], restored: bool) -> None:
    r = {**GOOD, **change}
    assert concept_restored(r) is restored
    assert concept_words(r).endswith(f"Quality restored: {'yes' if restored else 'NO'}.")


def test_the_words_say_what_the_json_says() -> None:
    words = concept_words(GOOD)
    assert "the drift alarm stayed OK (max drift score 0.5, 0 ALARM transitions)" in words
    assert "the quality alarm fired 25.1 s (2.51 windows of 10 s)" in words
    assert "a retrain triggered by quality promoted a model at 37.5 s" in words
    assert "0.883 before the change, 0.296 after it, 0.871 after the retrain" in words
    assert "did not fire" in concept_words({**GOOD, "quality_alarm_s": None})


def test_detection_is_timed_from_the_first_label_arrival() -> None:
    inline, late = ConceptOptions(), ConceptOptions(label_delay_s=30.0)
    assert detection_s(1_000.0, 970.0, inline) == 30.0
    assert detection_s(1_000.0, 940.0, late) == 30.0  # labels came 30 s after their records
    assert detection_s(None, 940.0, inline) is None
    assert detection_s(1_000.0, None, inline) is None


def test_the_monitor_records_the_first_alarm_and_the_return_to_ok() -> None:
    q = QualityMonitor(clients=None, settings=None, alarm_name="s-quality-auc")  # type: ignore[arg-type]
    for t, state in [(1.0, "OK"), (5.0, "OK"), (25.7, "ALARM"), (30.0, "ALARM"), (71.3, "OK")]:
        q._saw(state, t)
    assert (q.alarm_s, q.ok_again_s, q.state) == (25.7, 71.3, "OK")
    assert q.transitions == [(1.0, "OK"), (25.7, "ALARM"), (71.3, "OK")]


ROOT = Path(__file__).resolve().parents[2]


def test_a_label_delay_runs_the_demo_on_the_contracts_late_label_variant(no_stack: Path) -> None:
    # WHEN the concept demo is asked for late labels with an inline contract (card, sensor)
    for path in (None, str(ROOT / "etl" / "contracts" / "sensor_readings.toml")):
        inline = load_contract(path)
        late = load_contract(late_contract_path(path))
        # THEN it runs on its late variant: the same fields plus the kind and time attributes,
        # label records on the records' stream, the same name (the same model and tables)
        spec = late.labels
        assert spec.late and (spec.kind_field, spec.time_field) == ("record_kind", "labelled_at")
        assert late.name == inline.name and late.fields[: len(inline.fields)] == inline.fields
        assert late.generator == inline.generator
    # AND a contract already late is used as it is
    given = str(ROOT / "tests" / "contracts" / "card_late_labels.toml")
    assert late_contract_path(given) == given


def test_a_contract_whose_label_is_required_cannot_get_late_labels(no_stack: Path) -> None:
    # GIVEN the card contract with its label made required (a data record must carry it)
    text = (ROOT / "etl" / "contracts" / "card_transactions.toml").read_text()
    old = 'role = "label"\nrequired = false\nnullable = true'
    assert old in text
    strict = no_stack.parent / "strict.toml"
    strict.write_text(text.replace(old, 'role = "label"\nrequired = true\nnullable = false'))
    # WHEN the demo makes its late variant THEN the contract's own error names the label field
    with pytest.raises(ContractError, match="is_fraud"):
        late_contract_path(str(strict))
    # AND a contract that has a field of the added names is refused, naming it
    taken = no_stack.parent / "taken.toml"
    taken.write_text(text.replace('name = "hour"', 'name = "labelled_at"'))
    with pytest.raises(ContractError, match="labelled_at"):
        late_contract_path(str(taken))


def test_restored_means_a_window_of_the_new_model_at_or_above_the_line() -> None:
    # the alarm returning to OK is not enough: re-arming at the promotion re-evaluates it, and
    # periods without data count as not breaching; a window that began after the promotion must
    # score at or above the line
    q = QualityMonitor(clients=None, settings=None, alarm_name="s-quality-auc")  # type: ignore[arg-type]
    promoted = dt.datetime(2026, 11, 28, 1, 50, 22, tzinfo=dt.UTC)
    q.auc = [
        (promoted - dt.timedelta(seconds=20), 0.95),  # before the change: good, but old
        (promoted - dt.timedelta(seconds=2), 0.30),  # the old model on the new concept
    ]
    assert not q.restored_since(promoted.timestamp(), 0.83)
    q.auc.append((promoted + dt.timedelta(seconds=8), 0.60))  # mixed window: not yet
    assert not q.restored_since(promoted.timestamp(), 0.83)
    q.auc.append((promoted + dt.timedelta(seconds=18), 0.86))
    assert q.restored_since(promoted.timestamp(), 0.83)
