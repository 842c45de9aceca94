"""Functional fixtures beyond the emulator: the embedded PostgreSQL warehouse (one per session)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.pg import PgProcess, start_postgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgProcess]:
    """One embedded PostgreSQL for the session (fsync off), stopped by PID at the end.

    Its state lives outside pytest's temp root on purpose: as root, PostgreSQL runs as ``nobody``,
    which must traverse the path, and any pytest run starting meanwhile resets that root to 0700.
    """
    state = Path(tempfile.mkdtemp(prefix="driftline-test-pg-"))
    try:
        pg = start_postgres(state, durable=False)
        try:
            yield pg
        finally:
            pg.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def pg_schema() -> str:
    """A fresh warehouse schema name per test (tests share the server, never tables)."""
    return f"t_{uuid.uuid4().hex[:12]}"
