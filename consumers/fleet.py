"""Run K MultiLangDaemons (one KCL worker each) and keep them running.

Each daemon is its own process group (the java process and the record-processor children it
starts), so a worker can be stopped gracefully (SIGTERM: the KCL's shutdown hook asks every
processor to flush and checkpoint) or killed outright, by PID. A daemon exits on its own when a
record processor dies (the KCL multilang contract); the fleet restarts it, and the new worker
resumes from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from consumers.daemon import (
    daemon_env,
    find_java,
    java_command,
    resolve_jar_dir,
    write_daemon_files,
)
from etl.settings import Settings, to_env

log = logging.getLogger("driftline.fleet")


@dataclass
class Worker:
    worker_id: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        with self.log_path.open("ab") as logf:
            self.process = subprocess.Popen(
                self.command,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

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
    members: list[Worker] = field(default_factory=list)

    def start(self) -> list[Worker]:
        java = find_java()
        jar_dir = resolve_jar_dir(self.settings)
        env = daemon_env(to_env(self.settings))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.workers):
            worker_id = f"worker-{i}-{os.getpid()}"
            files = write_daemon_files(
                self.settings,
                self.work_dir / f"worker-{i}",
                worker_id=worker_id,
                log_level=self.log_level,
                module=self.module,
                max_leases=self.max_leases,
            )
            w = Worker(
                worker_id,
                java_command(java, jar_dir, files),
                env,
                self.work_dir / f"worker-{i}" / "daemon.log",
            )
            w.log_path.unlink(missing_ok=True)  # a new fleet starts a new log; restarts append
            w.start()
            log.info("worker started", extra={"worker": worker_id, "pid": w.pid})
            self.members.append(w)
        return self.members

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
                    "worker exited; restarting", extra={"worker": w.worker_id, "returncode": rc}
                )
                w.restarts += 1
                w.start()
                restarted.append(w)
        return restarted

    def stop(self, timeout: float = 40.0) -> None:
        for w in self.members:
            if w.process is not None and w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(signal.SIGTERM)
        for w in self.members:
            w.stop(timeout)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.members if w.pid is not None]
