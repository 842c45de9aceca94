"""Processes we start and stop ourselves: a free loopback port, a detached child with its log,
waiting until it is ready, and stopping it by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from etl.exceptions import EmulatorError

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    cmd: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, stdout and stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            **popen,
        )


def spawn_module(
    module: str, args: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m module args`` with this interpreter, unbuffered, env added to ours."""
    full = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    return spawn([sys.executable, "-m", module, *args], log_path, env=full)


def wait_until(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    log_path: Path,
) -> T:
    """Poll ``ready()`` until it returns a value; the child exiting or the timeout (then the
    child is stopped) raise :class:`EmulatorError` naming the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(
                f"{what} exited with code {proc.returncode} at start; see {log_path}"
            )
        value = ready()
        if value is not None:
            return value
        time.sleep(0.05)
    stop_pid(proc.pid)
    raise EmulatorError(f"{what} did not answer within {timeout:.0f}s; see {log_path}")


def read_ready_file(path: Path, answers: Callable[[str], bool]) -> str | None:
    """The URL a child wrote to ``path`` once it listens, if it also ``answers``."""
    if not path.exists():
        return None
    url = path.read_text().strip()
    return url if answers(url) else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_child(pid: int, process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """:func:`stop_pid`, then reap the ``Popen`` we hold for it (no zombie left behind)."""
    stop_pid(pid, timeout)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` (a process we started), SIGKILL after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
