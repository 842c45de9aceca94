"""``--contract`` on every data command, one precedence, and the ``contract`` command's CLI."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest

from etl.settings import to_env
from infra.cli import build_parser, main
from infra.context import STATE_CONTRACT, LocalState, resolve_settings
from tests.contracts import PARCEL_SCANS, encode, parcel_scans

DATA_COMMANDS = [
    "local up",
    "consume",
    "produce --records 1",
    "demo",
    "warehouse load",
    "warehouse query 'SELECT 1'",
    "lake query 'SELECT 1'",
    "baseline build --from lake",
    "drift check --from lake",
    "retrain --now",
    "models",
    "predict --json {}",
    "deploy",
]


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_every_data_command_takes_contract(command: str) -> None:
    args = build_parser().parse_args([*shlex.split(command), "--contract", "c.toml"])
    assert args.contract == "c.toml"


def _copy(src: Path, dest: Path) -> str:
    dest.write_text(src.read_text())
    return str(dest)


@pytest.fixture
def layers(tmp_path: Path) -> dict[str, str]:
    """Four contract files, one per source, and a local stack state naming one of them."""
    paths = {
        k: _copy(PARCEL_SCANS, tmp_path / f"{k}.toml") for k in ("flag", "env", "toml", "stack")
    }
    (tmp_path / "driftline.toml").write_text(f'contract_path = "{paths["toml"]}"\n')
    state = LocalState(endpoint="http://127.0.0.1:1", stack_name="s")
    state.extra[STATE_CONTRACT] = paths["stack"]
    state.save(tmp_path / "state")
    return paths


@pytest.mark.parametrize(
    ("given", "wins"),
    [
        (("flag", "env", "toml", "stack"), "flag"),
        (("env", "toml", "stack"), "env"),
        (("toml", "stack"), "toml"),
        (("stack",), "stack"),
        ((), None),
    ],
)
def test_contract_precedence_flag_env_toml_stack_default(
    tmp_path: Path, layers: dict[str, str], given: tuple[str, ...], wins: str | None
) -> None:
    # GIVEN the contract set in some of the places a user can set it
    env = {"DRIFTLINE_STATE_DIR": str(tmp_path / ("state" if "stack" in given else "none"))}
    if "env" in given:
        env["DRIFTLINE_CONTRACT_PATH"] = layers["env"]
    env["DRIFTLINE_CONFIG"] = str(tmp_path / "driftline.toml")
    if "toml" not in given:
        (tmp_path / "empty.toml").write_text("")
        env["DRIFTLINE_CONFIG"] = str(tmp_path / "empty.toml")
    args = argparse.Namespace(contract=layers["flag"] if "flag" in given else None)
    # WHEN a command resolves its settings
    settings, _ = resolve_settings(env=env, args=args, needs_aws=False)
    # THEN the highest one wins (none: the shipped example), and children inherit it
    assert settings.contract_path == (layers[wins] if wins else None)
    assert to_env(settings).get("DRIFTLINE_CONTRACT_PATH") == settings.contract_path


def test_a_relative_contract_path_becomes_absolute_for_child_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy(PARCEL_SCANS, tmp_path / "mine.toml")
    monkeypatch.chdir(tmp_path)
    env = {"DRIFTLINE_STATE_DIR": str(tmp_path / "none")}
    settings, _ = resolve_settings(
        env=env, args=argparse.Namespace(contract="mine.toml"), needs_aws=False
    )
    assert settings.contract_path == str(tmp_path / "mine.toml")


def test_a_missing_contract_file_fails_at_start_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rc = main(["lake", "query", "SELECT 1", "--contract", "nope.toml"])
    assert rc == 2
    assert capsys.readouterr().err == (
        "driftline: error: --contract: 'nope.toml' is not a file; pass a contract TOML"
        " (`driftline contract check PATH`)\n"
    )


def test_infer_then_check_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a JSON-lines sample of parcel scans
    sample = tmp_path / "scans.jsonl"
    sample.write_bytes(b"\n".join(encode(r) for r in parcel_scans(120)) + b"\n")
    out = tmp_path / "proposed.toml"

    # WHEN a contract is inferred to a file and checked
    assert main(["contract", "infer", "--from", str(sample), "--out", str(out)]) == 0
    assert main(["contract", "check", str(out), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)

    # THEN the check reports the proposal: its name from the file, the guessed roles
    assert plan["contract"] == "scans"
    assert (plan["record_id"], plan["event_time"]) == ("scan_id", "scanned_at")
    assert plan["stream"]["partition_key"] == "parcel_id"
    assert [d["name"] for d in plan["drift_features"]] == ["weight_kg", "depot", "hops", "damaged"]
    # AND a second infer does not overwrite it without --force
    assert main(["contract", "infer", "--from", str(sample), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


def test_check_of_an_invalid_contract_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(PARCEL_SCANS.read_text().replace('name = "weight_kg"', 'name = "Weight"'))
    assert main(["contract", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "fields[3].name: 'Weight' is not a lower-case identifier" in err


def test_infer_names_the_bad_sample_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "s.jsonl"
    sample.write_text('{"a": 1}\n{"a": \n')
    assert main(["contract", "infer", "--from", str(sample)]) == 2
    assert f"{sample}:2: not a JSON record" in capsys.readouterr().err
