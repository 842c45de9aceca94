"""The daemon's launcher script runs the record-processor module it is given."""

from __future__ import annotations

import sys
from pathlib import Path

from consumers.daemon import write_daemon_files
from etl.settings import load_settings


def _settings():  # type: ignore[no-untyped-def]
    return load_settings({"stream_name": "s", "application_name": "a"}, env={}, config_path=None)


def test_launcher_runs_consumers_app_by_default(tmp_path: Path) -> None:
    # GIVEN settings WHEN the daemon files are written without a module
    files = write_daemon_files(_settings(), tmp_path, worker_id="w", python="/py")
    # THEN the launcher execs the relay in front of our record processor, which logs to its
    # worker folder's processor.log; the relay keeps two flushes' worth plus 64 MiB
    buffer = 2 * 64 * 1024 * 1024 + 64 * 1024 * 1024
    assert files.launcher.read_text() == (
        "#!/bin/sh\n"
        f"export DRIFTLINE_PROCESSOR_LOG_FILE={tmp_path.resolve() / 'processor.log'}\n"
        f"exec /py -u -m consumers.relay --max-buffer-bytes {buffer} -- /py -u -m consumers.app\n"
    )


def test_launcher_runs_the_given_module(tmp_path: Path) -> None:
    # GIVEN a benchmark's processor module WHEN the daemon files are written for it
    files = write_daemon_files(
        _settings(), tmp_path, worker_id="w", python=sys.executable, module="bench._count_processor"
    )
    # THEN the launcher execs that module, and the properties point at the launcher
    assert files.launcher.read_text().endswith(" -u -m bench._count_processor\n")
    assert f"executableName = {files.launcher}\n" in files.properties.read_text()
