"""Functional fixtures beyond the emulator: the embedded PostgreSQL warehouse (one per session)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.pg import PgProcess, start_postgres


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgProcess]:
    """One embedded PostgreSQL for the session (fsync off), stopped by PID at the end."""
    pg = start_postgres(Path(tmp_path_factory.mktemp("pg")), durable=False)
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pg_schema() -> str:
    """A fresh warehouse schema name per test (tests share the server, never tables)."""
    return f"t_{uuid.uuid4().hex[:12]}"
