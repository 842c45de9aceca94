"""Run K MultiLangDaemons (one KCL worker each) and keep them running, without orphans.

Each daemon is its own process group (java, the relay it starts per leased shard, the record
processor behind each relay), so a worker can be stopped gracefully (SIGTERM: the KCL's shutdown
hook asks every processor to flush and checkpoint) or killed outright, by process group. The
whole tree dies with the supervisor whatever kills it (see :mod:`consumers.proctree`).

A daemon exits on its own when its relay dies (the KCL multilang contract, ``System.exit(1)``);
the fleet restarts it, and the new worker resumes from the last checkpoint. A record processor
that dies behind its relay is restarted in place by the relay (:mod:`consumers.relay`).

One fleet per work folder: ``fleet.lock`` is held (``flock``) while a supervisor runs and
``fleet.json`` lists its daemons' process groups, so a starting supervisor refuses to run next to
a live one and stops the daemons a killed one left behind. Logs are appended, and rotated (never
deleted) when a daemon starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from consumers import classdata
from consumers.daemon import (
    DaemonFiles,
    daemon_env,
    find_java,
    java_command,
    resolve_jar_dir,
    write_daemon_files,
)
from consumers.proctree import cmdline, die_with_parent, group_members, kill_group
from consumers.warm import SERVER_ENV, SERVER_PID_ENV
from etl.exceptions import KclSetupError
from etl.settings import Settings, to_env

log = logging.getLogger("driftline.fleet")

#: A log grows to this size before the next (re)start of its writer rotates it.
LOG_ROTATE_BYTES = 64 * 1024 * 1024
LOG_KEEP = 3
LOCK_FILE = "fleet.lock"
STATE_FILE = "fleet.json"


def rotate_log(path: Path, max_bytes: int = LOG_ROTATE_BYTES, keep: int = LOG_KEEP) -> None:
    """``path`` → ``path.1`` → … → ``path.<keep>`` when it is larger than ``max_bytes``.

    Called only when nothing writes to ``path`` (before its writer starts); the oldest copy beyond
    ``keep`` is the one file that goes.
    """
    if not path.is_file() or path.stat().st_size <= max_bytes:
        return
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


@dataclass
class Worker:
    worker_id: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    #: Builds ``command`` afresh at each start (a daemon's JVM options may change meanwhile).
    command_for: Callable[[], list[str]] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def name(self) -> str:
        """``worker-<i>``: the folder of its files and logs."""
        return self.log_path.parent.name

    def start(self) -> None:
        if self.command_for is not None:
            self.command = self.command_for()
        rotate_log(self.log_path)
        with self.log_path.open("ab") as logf:
            self.process = subprocess.Popen(
                self.command,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                # SIGKILL when the supervisor dies, however it dies (one prctl; see proctree).
                preexec_fn=die_with_parent(),  # noqa: PLW1509
            )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            kill_group(self.process.pid, sig)

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM the daemon (graceful KCL shutdown), SIGKILL its group after ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "worker did not stop in time; killing", extra={"worker": self.worker_id}
                )
        # Whatever is left of the group (children that outlived java) goes too.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return self.process.returncode


def _daemon_command(java: str, jar_dir: Path, files: DaemonFiles) -> list[str]:
    """The daemon's java command, with the KCL class archive once it exists."""
    return java_command(java, jar_dir, files, jvm_options=classdata.jvm_options(java, jar_dir))


def read_fleet_state(work_dir: Path) -> dict[str, object]:
    """What ``fleet.json`` records (``{}`` when absent or unreadable)."""
    try:
        doc = json.loads((work_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def stop_recorded_fleet(
    work_dir: Path, timeout: float = 40.0, *, supervisor: bool = True
) -> list[str]:
    """Stop the fleet ``fleet.json`` records: its supervisor (SIGTERM: it stops its daemons
    gracefully; SIGKILL after ``timeout``), then any daemon group still left (SIGKILL). Only
    processes whose command line says they are ours are touched (a recycled PID is left alone).
    Returns what was stopped."""
    doc = read_fleet_state(work_dir)
    stopped: list[str] = []
    sup = doc.get("supervisor")
    if (
        supervisor
        and isinstance(sup, int)
        and sup != os.getpid()
        and _is_ours(sup, "consume")
        and _terminate(sup, timeout)
    ):
        stopped.append(f"consumer supervisor (pid {sup})")
    groups = doc.get("groups", [])
    for pgid in groups if isinstance(groups, list) else []:
        if isinstance(pgid, int) and any(_names(p, str(work_dir)) for p in group_members(pgid)):
            kill_group(pgid, signal.SIGKILL)
            stopped.append(f"daemon group {pgid}")
    return stopped


def _is_ours(pid: int, needle: str) -> bool:
    return any(needle in part for part in cmdline(pid))


def _names(pid: int, folder: str) -> bool:
    """Whether ``pid`` belongs to the fleet of ``folder``: java names its properties file there,
    a relay or processor its log file (in its environment, once java is gone)."""
    if _is_ours(pid, folder):
        return True
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"DRIFTLINE_PROCESSOR_LOG_FILE={folder}/".encode() in env


def _terminate(pid: int, timeout: float) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and cmdline(pid):
        time.sleep(0.1)
    if cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


@dataclass
class ConsumerFleet:
    settings: Settings
    workers: int
    work_dir: Path
    restart: bool = True
    log_level: str = "WARN"
    #: The record processor's module (``python -m``); benchmarks launch other processors.
    module: str = "consumers.app"
    #: ``maxLeasesForWorker`` (0: no cap). Capping at ceil(shards / workers) spreads the leases at
    #: start instead of one worker taking all and the KCL rebalancing (a lease handover) later.
    max_leases: int = 0
    #: Run a server of warm record processors (:mod:`consumers.warm`) for the daemons' relays.
    warm: bool = True
    members: list[Worker] = field(default_factory=list)
    server: Worker | None = None
    _lock: IO[str] | None = None

    def start(self) -> list[Worker]:
        java = find_java()
        jar_dir = resolve_jar_dir(self.settings)
        env = daemon_env(to_env(self.settings))
        self.work_dir = self.work_dir.resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        classdata.ensure_in_background(java, jar_dir)  # for the next start of a daemon
        if self.warm and self.module == "consumers.app":
            self.server = self._start_server(env)
            env = {**env, SERVER_ENV: self.server_name, SERVER_PID_ENV: str(self.server.pid)}
        for i in range(self.workers):
            worker_id = self.worker_id(i)
            files = write_daemon_files(
                self.settings,
                self.work_dir / f"worker-{i}",
                worker_id=worker_id,
                log_level=self.log_level,
                module=self.module,
                max_leases=self.max_leases,
            )
            w = Worker(worker_id, [], env, self.work_dir / f"worker-{i}" / "daemon.log")
            w.command_for = functools.partial(_daemon_command, java, jar_dir, files)
            w.start()
            log.info("worker started", extra={"worker": worker_id, "pid": w.pid})
            self.members.append(w)
        self._record()
        return self.members

    @property
    def server_name(self) -> str:
        """The warm processors' socket: one per folder and supervisor."""
        folder = hashlib.sha256(str(self.work_dir).encode()).hexdigest()[:12]
        return f"driftline-warm-{folder}-{os.getpid()}"

    def _start_server(self, env: dict[str, str]) -> Worker:
        """The warm processors' server, started before the daemons: its imports overlap the
        JVM's start. Its command names the folder (see :func:`_names`)."""
        command = [
            *(sys.executable, "-u", "-m", self.module),
            *("--serve", self.server_name, str(self.work_dir)),
        ]
        server = Worker("warm-processors", command, env, self.work_dir / "warm" / "server.log")
        server.log_path.parent.mkdir(parents=True, exist_ok=True)
        server.start()
        log.info("warm processor server started", extra={"pid": server.pid})
        return server

    def worker_id(self, i: int) -> str:
        """Stable across restarts of the supervisor (one per host, folder and index; the lock
        keeps a folder to one supervisor): a restarted daemon renews its own leases at once
        instead of waiting for them to expire (``failoverTimeMillis``) and be re-assigned."""
        folder = hashlib.sha256(str(self.work_dir).encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-{folder}-worker-{i}"

    def _take_lock(self) -> None:
        """Hold ``fleet.lock``; stop daemons a dead supervisor left behind in this folder."""
        lock = (self.work_dir / LOCK_FILE).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            sup = read_fleet_state(self.work_dir).get("supervisor")
            raise KclSetupError(
                f"a consumer supervisor (pid {sup}) already runs a fleet in {self.work_dir};"
                " stop it first (`driftline local down`, or SIGTERM that pid) or give this one"
                " another --work-dir"
            ) from None
        self._lock = lock
        # Holding the lock means the recorded supervisor is gone: only its daemons may be left.
        left = stop_recorded_fleet(self.work_dir, supervisor=False)
        if left:
            log.warning("stopped a previous fleet's leftovers", extra={"stopped": left})

    def _record(self) -> None:
        doc = {
            "supervisor": os.getpid(),
            "groups": self.groups,
            "daemons": self.pids,
            "work_dir": str(self.work_dir),
        }
        tmp = self.work_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.work_dir / STATE_FILE)

    def supervise_once(self) -> list[Worker]:
        """Restart workers whose daemon exited; returns the restarted ones."""
        restarted: list[Worker] = []
        if not self.restart:
            return restarted
        for w in self.members:
            if not w.alive():
                rc = w.process.returncode if w.process is not None else None
                w.signal_group(signal.SIGKILL)
                log.warning(
                    f"{w.name} ({w.worker_id}, pid {w.pid}) exited with code {rc}; restarting",
                    extra={"worker": w.worker_id, "returncode": rc, "restarts": w.restarts + 1},
                )
                w.restarts += 1
                w.start()
                restarted.append(w)
        if self.server is not None and not self.server.alive():
            # Not its group: the processors it forked run there until their relays end.
            log.warning(
                f"warm processor server (pid {self.server.pid}) exited with code"
                f" {self.server.process.returncode if self.server.process else None}; restarting"
            )
            self.server.restarts += 1
            self.server.start()
            restarted.append(self.server)
        if restarted:
            self._record()
        return restarted

    def stop(self, timeout: float = 40.0) -> None:
        for w in self.members:
            if w.process is not None and w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(signal.SIGTERM)
        for w in self.members:
            w.stop(timeout)
        if self.server is not None:
            self.server.stop(5.0)
        (self.work_dir / STATE_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def pids(self) -> list[int]:
        """The daemons' PIDs (each its own process group)."""
        return [w.pid for w in self.members if w.pid is not None]

    @property
    def groups(self) -> list[int]:
        """Every process group of the fleet: the daemons', then the warm server's."""
        server = [self.server.pid] if self.server is not None and self.server.pid else []
        return [*self.pids, *server]
