"""Pure parts of supervision and the local state: log rotation, what `local down` wipes, the
fault hook's settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consumers.fleet import rotate_log, stop_recorded_fleet
from etl.exceptions import ConfigError
from etl.settings import load_settings
from infra.local import wipe


def test_a_log_is_rotated_only_past_its_size_and_the_oldest_copy_goes(tmp_path: Path) -> None:
    # GIVEN a log past the limit with two older copies (keep 2)
    log = tmp_path / "daemon.log"
    log.write_text("new" * 10)
    (tmp_path / "daemon.log.1").write_text("older")
    (tmp_path / "daemon.log.2").write_text("oldest")
    # WHEN it is rotated
    rotate_log(log, max_bytes=10, keep=2)
    # THEN each copy moved one step and the oldest was the one dropped
    assert not log.exists()
    assert (tmp_path / "daemon.log.1").read_text() == "new" * 10
    assert (tmp_path / "daemon.log.2").read_text() == "older"
    # AND a log under the limit stays where it is
    log.write_text("small")
    rotate_log(log, max_bytes=10, keep=2)
    assert log.read_text() == "small"


def test_wipe_deletes_the_state_and_keeps_logs_and_everything_else(tmp_path: Path) -> None:
    # GIVEN a state folder with warehouse data, a fleet's files and logs, and a file of the user's
    (tmp_path / "postgres" / "data" / "base").mkdir(parents=True)
    (tmp_path / "postgres" / "data" / "base" / "1").write_text("rows")
    (tmp_path / "postgres" / "postgres.log").write_text("pg log")
    (tmp_path / "consumers" / "worker-0").mkdir(parents=True)
    (tmp_path / "consumers" / "worker-0" / "kcl.properties").write_text("p")
    (tmp_path / "consumers" / "worker-0" / "processor.log.1").write_text("old log")
    (tmp_path / "alarm-history.jsonl").write_text("{}")
    (tmp_path / "state.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    # WHEN it is wiped
    gone = wipe(tmp_path)
    # THEN the state is gone, logs and files that are not state are kept
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "consumers/worker-0/processor.log.1",
        "notes.txt",
        "postgres/postgres.log",
    ]
    assert len(gone) == 4 and not (tmp_path / "postgres" / "data").exists()


def test_stop_recorded_fleet_leaves_processes_that_are_not_ours_alone(tmp_path: Path) -> None:
    # GIVEN a fleet.json naming this test's own process as supervisor and group
    (tmp_path / "fleet.json").write_text(
        f'{{"supervisor": {os.getpid()}, "groups": [{os.getpgid(0)}]}}'
    )
    # WHEN the recorded fleet is stopped THEN nothing happens to us (not a fleet of that folder)
    assert stop_recorded_fleet(tmp_path, timeout=0) == []


@pytest.mark.parametrize(
    "env",
    [
        {"DRIFTLINE_FAULT": "after_lunch", "DRIFTLINE_FAULT_TOKEN": "/tmp/x"},
        {"DRIFTLINE_FAULT": "after_parquet_put"},
    ],
)
def test_a_bad_fault_setting_fails_at_start_naming_the_key(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^fault: "):
        load_settings(env=env, config_path=None)
