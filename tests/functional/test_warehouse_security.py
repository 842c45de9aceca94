"""The embedded PostgreSQL's roles and `warehouse query`, against the real server.

What the review did with a trust-auth superuser (any local user could connect; `warehouse query`
committed ``DROP TABLE``, ran ``COPY ... TO PROGRAM`` and read files with ``pg_read_file``) is
tried again here and must be refused, while reading still works.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest

from infra.cli import main
from infra.pg import PgProcess
from infra.pg_auth import LOADER, READER, SCHEMA

pytestmark = pytest.mark.functional


@pytest.fixture
def loaded(pg_server: PgProcess, pg_schema: str) -> str:
    """A table with three rows, created by the loader role (as `warehouse load` does)."""
    with psycopg.connect(pg_server.dsn) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.events (id int)")
        conn.execute(f"INSERT INTO {pg_schema}.events VALUES (1), (2), (3)")
    return f"{pg_schema}.events"


def test_every_role_needs_its_password_which_only_the_owner_can_read(pg_server: PgProcess) -> None:
    # GIVEN the embedded server  THEN its password file is private and no DSN carries a password
    passfile = pg_server.data_dir.parent / "pgpass"
    assert stat.S_IMODE(os.stat(passfile).st_mode) == 0o600
    for dsn in (pg_server.dsn, pg_server.reader_dsn):
        assert psycopg.conninfo.conninfo_to_dict(dsn).get("password") is None
        assert f"passfile={passfile}" in dsn
    # WHEN any role connects without the password file THEN the server refuses
    for role in ("postgres", LOADER, READER):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                f"postgresql://{role}@127.0.0.1:{pg_server.port}/postgres",
                passfile="/nonexistent",
                connect_timeout=5,
            )
    # AND the loader is no superuser and owns the driftline schema; the reader reads only
    with psycopg.connect(pg_server.dsn) as conn:
        assert conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
            (LOADER,),
        ).fetchone() == (False, False, False)
        owner = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
        ).fetchone()
        assert owner == (LOADER,)
    with psycopg.connect(pg_server.reader_dsn) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def _query(
    sql: str, pg: PgProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[int, str, str]:
    return _cli(["warehouse", "query", sql], pg, monkeypatch, tmp_path)


def _cli(
    argv: list[str], pg: PgProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[int, str, str]:
    import contextlib
    import io

    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path / "no-stack"))
    monkeypatch.setenv("DRIFTLINE_WAREHOUSE_DSN", pg.dsn)
    monkeypatch.setenv("DRIFTLINE_WAREHOUSE_QUERY_DSN", pg.reader_dsn)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("DROP TABLE {table}", "read-only transaction"),
        ("DELETE FROM {table}", "read-only transaction"),
        ("COMMIT; DROP TABLE {table}", "read-only transaction"),  # the role's default
        ("SET TRANSACTION READ WRITE; DROP TABLE {table}", "must be owner of table"),  # the role
        ("COPY (SELECT 1) TO PROGRAM 'touch {marker}'", "permission denied to COPY"),
        ("SELECT pg_read_file('/etc/passwd')", "permission denied for function pg_read_file"),
        ("CREATE TABLE {schema}.x (i int)", "read-only transaction"),
        ("ALTER ROLE driftline_reader SUPERUSER", "read-only transaction"),
    ],
)
def test_warehouse_query_refuses_writes_programs_and_files(
    pg_server: PgProcess,
    loaded: str,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sql: str,
    refusal: str,
) -> None:
    marker = tmp_path / "pwned"
    # WHEN `warehouse query` is asked to change, execute or read outside the warehouse
    rc, out, err = _query(
        sql.format(table=loaded, schema=pg_schema, marker=marker), pg_server, monkeypatch, tmp_path
    )
    # THEN it fails with the server's refusal on one line, and nothing happened
    assert rc == 2 and out == ""
    assert err.startswith("driftline: error: query failed: ") and refusal in err, err
    assert "Traceback" not in err
    assert not marker.exists()
    with psycopg.connect(pg_server.dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {loaded}").fetchone() == (3,)


def test_the_reader_cannot_escape_even_outside_the_read_only_transaction(
    pg_server: PgProcess, loaded: str
) -> None:
    # GIVEN a session as the reader with read-only switched off by hand
    with psycopg.connect(pg_server.reader_dsn, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        # THEN the role's own rights still refuse writes, programs and server files
        for sql, refusal in (
            (f"DROP TABLE {loaded}", "must be owner"),
            (f"INSERT INTO {loaded} VALUES (4)", "permission denied"),
            ("COPY (SELECT 1) TO PROGRAM 'true'", "permission denied"),
            ("SELECT pg_read_file('/etc/passwd')", "permission denied"),
        ):
            with pytest.raises(psycopg.Error, match=refusal):
                conn.execute(sql)
    # AND so does the loader's (no superuser): no programs, no server files
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        for sql in ("COPY (SELECT 1) TO PROGRAM 'true'", "SELECT pg_read_file('/etc/passwd')"):
            with pytest.raises(psycopg.Error, match="permission denied"):
                conn.execute(sql)


def test_warehouse_query_still_reads(
    pg_server: PgProcess, loaded: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rc, out, err = _query(
        f"SELECT count(*) AS n, sum(id) AS s FROM {loaded}", pg_server, monkeypatch, tmp_path
    )
    assert (rc, err) == (0, "")
    assert out.splitlines() == ["n  s", "-  -", "3  6", "(1 row)"]
