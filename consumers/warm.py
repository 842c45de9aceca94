"""Warm record processors: a fork server that has done the processor's imports once.

A record processor's start is mostly imports (pyarrow, boto3, numpy, the contract and lake code:
seconds of CPU, more on a loaded host), paid again by every processor a new or restarted daemon
starts and by every restart behind a relay. The supervisor runs one server per fleet
(``python -m consumers.app --serve NAME``, a child of the supervisor in its own process group)
that imports all of it and then waits; a relay asks it for a processor instead of starting
``python -m consumers.app``:

* the relay connects to the server's abstract Unix socket ``NAME`` and sends, with
  ``SCM_RIGHTS``, the three descriptors the processor gets as stdin, stdout and stderr, and its
  environment (the settings, the worker's processor log file, test hooks);
* the server forks; the child takes those descriptors and that environment and runs
  :func:`consumers.app.main`, imports already done; the server answers with the child's PID and,
  when the child ends, with its exit code (the relay's ``wait``);
* the child watches the relay's connection: when the relay dies, however it dies, the connection
  ends and so does the child (what ``PR_SET_PDEATHSIG`` from the relay does for a processor the
  relay started itself).

Without a server (not running, killed, refused) the relay starts the processor itself, as before:
the server only ever saves time. The server forks from its only thread.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import random
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

#: The environment variable naming the server's socket, for the relays.
SERVER_ENV = "DRIFTLINE_PROCESSOR_SERVER"
#: The server's PID: while it runs but does not listen yet (imports), a relay waits for it.
SERVER_PID_ENV = "DRIFTLINE_PROCESSOR_SERVER_PID"
#: The relay's PID, in the processor's environment (its parent is the server, not the relay).
RELAY_ENV = "DRIFTLINE_RELAY_PID"
_MAX_REQUEST = 1 << 20


def warm_up() -> None:
    """Everything a processor imports, including what it imports lazily (pandas, through
    pyarrow's schema metadata) and the kernels its first batch and flush load: a few records of
    the shipped example decoded, split by hour and encoded as Parquet. Never fails the server."""
    import amazon_kclpy.kcl  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import consumers.app

    with contextlib.suppress(ImportError):
        import consumers.drift_observer  # noqa: F401
    with contextlib.suppress(Exception):
        _first_batch()


def _first_batch() -> None:
    from datetime import UTC, datetime

    from etl.contract import load_contract
    from etl.lake import encode_parquet, split_partitions
    from etl.records import RawRecord, RecordDecoder
    from etl.synthetic import encode_record, generate_records

    contract = load_contract()
    records = [
        RawRecord(encode_record(r), str(i), "k", None)
        for i, r in enumerate(generate_records(8, seed=1), start=1)
    ]
    batch = RecordDecoder(contract).decode(records, shard_id="warm", ingest_time=datetime.now(UTC))
    for _, _, part in split_partitions(batch.table, contract.event_time_field.name):
        encode_parquet(part, "zstd")


def _address(name: str) -> str:
    return "\0" + name  # abstract namespace: no file to clean up, no path length limit


# -- the server ---------------------------------------------------------------------------------
def serve(name: str, child_main: Callable[[], None]) -> None:
    """Accept requests on ``name`` until killed; fork ``child_main`` for each one."""
    warm_up()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(_address(name))
    listener.listen(64)
    children: dict[int, socket.socket] = {}
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    while True:
        for _key, _ in sel.select(timeout=0.2):
            conn, _addr = listener.accept()
            pid = _fork_one(conn, [listener, *children.values()], child_main)
            if pid is None:
                conn.close()
            else:
                children[pid] = conn
        _reap(children)


def _fork_one(
    conn: socket.socket, others: list[socket.socket], child_main: Callable[[], None]
) -> int | None:
    """Fork a processor for the request on ``conn``; ``others``: the server's sockets, which the
    processor closes (a relay must see the server's end when the server dies)."""
    try:
        conn.settimeout(10.0)
        env, fds = _receive(conn)
        conn.settimeout(None)
    except (OSError, ValueError):
        return None
    pid = os.fork()
    if pid == 0:  # the processor
        for sock in others:
            sock.close()
        _become_processor(conn, env, fds, child_main)
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    return pid


def _receive(conn: socket.socket) -> tuple[dict[str, str], list[int]]:
    fds = array.array("i")
    msg, ancdata, _flags, _addr = conn.recvmsg(_MAX_REQUEST, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request carries three descriptors")
    env = json.loads(msg)
    if not isinstance(env, dict):
        raise ValueError("a request's environment is an object")
    return {str(k): str(v) for k, v in env.items()}, list(fds)


def _become_processor(
    conn: socket.socket, env: Mapping[str, str], fds: list[int], child_main: Callable[[], None]
) -> None:
    code = 0
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own stdin)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(env)
        random.seed()  # not the server's sequence in every processor
        threading.Thread(target=_die_with_relay, args=(conn,), daemon=True).start()
        child_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _die_with_relay(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while conn.recv(4096):
            pass
    os._exit(137)


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        conn.close()


# -- the relay's side ---------------------------------------------------------------------------
def _read_line(conn: socket.socket, buf: bytearray, timeout: float | None) -> bytes | None:
    """The next line from ``conn`` (``b""`` at its end); None when ``timeout`` passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while b"\n" not in buf:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([conn], [], [], left)[0]:
            return None
        try:
            chunk = conn.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            return b""
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


class WarmChild:
    """A processor forked by the server, with the parts of ``Popen`` the relay uses."""

    def __init__(
        self, conn: socket.socket, pid: int, pipes: tuple[IO[bytes], IO[bytes]], buf: bytearray
    ) -> None:
        self.conn, self.pid, self._buf = conn, pid, buf
        self.stdin, self.stdout = pipes
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        line = _read_line(self.conn, self._buf, timeout)
        if line is None:
            raise subprocess.TimeoutExpired(f"warm processor {self.pid}", timeout or 0)
        code = -signal.SIGKILL  # the server died: whatever it ran is gone or going
        with contextlib.suppress(ValueError, KeyError, TypeError):
            code = int(json.loads(line)["exit"])
        self.returncode = code
        self.conn.close()
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def request(
    name: str, env: Mapping[str, str], timeout: float = 5.0, server_pid: int | None = None
) -> WarmChild | None:
    """A processor from the server ``name``; None when there is no server to ask.

    With ``server_pid``, a server that runs but does not listen yet (still importing: it starts
    with the daemons) is waited for, up to a minute: its imports are the ones a processor
    started here would do anyway."""
    deadline = time.monotonic() + 60.0
    while True:
        child = _request_once(name, env, timeout)
        if child is not None or server_pid is None or time.monotonic() > deadline:
            return child
        if not _running(server_pid):
            return None
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return "consumers.app" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _request_once(name: str, env: Mapping[str, str], timeout: float) -> WarmChild | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    child_in, to_child = os.pipe()
    from_child, child_out = os.pipe()
    try:
        conn.settimeout(timeout)
        conn.connect(_address(name))
        fds = array.array("i", [child_in, child_out, 2])
        payload = json.dumps({**env, RELAY_ENV: str(os.getpid())}).encode()
        conn.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        buf = bytearray()
        pid = int(json.loads(_read_line(conn, buf, timeout) or b"")["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        conn.close()
        for fd in (to_child, from_child):
            os.close(fd)
        return None
    finally:
        os.close(child_in)
        os.close(child_out)
    conn.settimeout(None)
    return WarmChild(conn, pid, (os.fdopen(to_child, "wb"), os.fdopen(from_child, "rb")), buf)
