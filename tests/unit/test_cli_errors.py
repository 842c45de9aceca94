"""The CLI's failure modes: flags checked before anything starts, one-line errors with
no traceback, no silent fallback to real AWS, and no credential in any message or log line."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from etl.redact import RedactingFilter, redact
from infra.cli import main


@pytest.fixture(autouse=True)
def no_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DRIFTLINE_* from the caller's environment, an empty state folder, no config file."""
    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state))
    return state


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--shards", "-1"], "argument --shards: must be an integer >= 1, got '-1'"),
        (["demo", "--records", "0"], "argument --records: must be an integer >= 1, got '0'"),
        (["demo", "--rate", "nan"], "argument --rate: must be a number > 0, got 'nan'"),
        (["demo", "--poison-rate", "1"], "argument --poison-rate: must be a fraction in [0, 1)"),
        (["consume", "--workers", "0"], "argument --workers: must be an integer >= 1, got '0'"),
        (["warehouse", "load", "--batch", "-5"], "argument --batch: must be an integer >= 1"),
        (["retrain", "--event", "missing.json"], "argument --event: 'missing.json' is not a file"),
    ],
)
def test_bad_flags_are_refused_before_anything_starts(
    argv: list[str], message: str, no_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a command gets a bad flag value
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    # THEN argparse refuses it naming the flag, with exit code 2 and no traceback
    assert exit_.value.code == 2
    assert message in err and "Traceback" not in err
    # AND nothing was started: no state folder (the emulator, workers, PostgreSQL write there)
    assert not no_stack.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["lake", "query", "SELECT 1"],
        ["produce", "--records", "1"],
        ["retrain", "--now"],
        ["alarms"],
        ["warehouse", "load"],
        ["predict", "--json", "{}"],
    ],
)
def test_with_no_local_stack_commands_say_so_instead_of_trying_aws(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no local stack and nothing naming a stack or an endpoint
    # WHEN a command that needs AWS runs
    rc = main(argv)
    # THEN one line says what to do, and nothing reached for credentials
    err = capsys.readouterr().err
    assert rc == 2
    assert err == (
        "driftline: error: stack: no local stack is up; run `driftline local up` or pass"
        " --stack NAME to use the stack on AWS\n"
    )


def test_naming_a_stack_passes_the_guard(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN --stack names the AWS stack THEN the command proceeds (and stops at the next setting)
    rc = main(["--stack", "prod", "lake", "query", "SELECT 1", "--engine", "duckdb"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("driftline: error: lake_bucket: is not set")
    assert "DRIFTLINE_STACK_NAME" not in os.environ  # only for that command


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from etl.query import LakeQuery

    def broken(*args: object, **kwargs: object) -> LakeQuery:
        raise RuntimeError("boom at postgresql://admin:hunter2@db:5432/x\nsecond line")

    monkeypatch.setattr(LakeQuery, "from_settings", broken)
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", "lake")
    # WHEN the command hits a bug
    rc = main(["lake", "query", "SELECT 1"])
    err = capsys.readouterr().err
    # THEN exit 1 with one redacted line naming the type, and no traceback
    assert rc == 1
    assert err == (
        "driftline: error: RuntimeError: boom at postgresql://admin:***@db:5432/x"
        " (unexpected; DRIFTLINE_DEBUG=1 shows the traceback)\n"
    )
    # WHEN DRIFTLINE_DEBUG=1 THEN the traceback comes first (redacted too)
    monkeypatch.setenv("DRIFTLINE_DEBUG", "1")
    assert main(["lake", "query", "SELECT 1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "hunter2" not in err and "admin:***@db" in err


def test_a_warehouse_dsn_password_never_reaches_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a DSN with a password, to a port nothing listens on
    port = _closed_port()
    monkeypatch.setenv(
        "DRIFTLINE_WAREHOUSE_DSN", f"postgresql://loader:hunter2@127.0.0.1:{port}/db"
    )
    # WHEN `warehouse query` fails to connect
    rc = main(["warehouse", "query", "SELECT 1"])
    err = capsys.readouterr().err
    # THEN the message names the warehouse without its password
    assert rc == 2
    assert f"postgresql://loader:***@127.0.0.1:{port}/db" in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:s3cret@h/0", "redis://:***@h/0"),
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
        ("PGPASSWORD='s3cret' psql", "PGPASSWORD='***' psql"),
        ('{"password": "s3cret", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("https://h/?token=abc&x=1", "https://h/?token=***&x=1"),
        ("aws_secret_access_key = wJalr/K7MDENG", "aws_secret_access_key = ***"),
        ("postgresql://u@h/db?passfile=/s/pgpass", "postgresql://u@h/db?passfile=/s/pgpass"),
        ("no secrets here: s3://bucket/key", "no secrets here: s3://bucket/key"),
    ],
)
def test_redact(text: str, clean: str) -> None:
    assert redact(text) == clean


def test_log_lines_are_redacted_arguments_and_tracebacks_included() -> None:
    # GIVEN a handler with the redacting filter
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        # WHEN a DSN arrives as an argument and inside an exception
        log.warning("connecting to %s", "postgresql://u:s3cret@h/db")
        try:
            raise ValueError("password=s3cret")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    # THEN no line carries the password
    assert records[0] == "connecting to postgresql://u:***@h/db"
    assert "s3cret" not in "\n".join(records) and "password=***" in records[1]
