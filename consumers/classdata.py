"""A class-data-sharing archive of the KCL's classes, so a (re)started daemon's JVM starts faster.

Most of a MultiLangDaemon's start before it talks to DynamoDB is the JVM loading and verifying
the classes of the KCL and the AWS SDK (several thousand, from ~80 jars). Java 13+ can archive
the classes an application loaded (``-XX:ArchiveClassesAtExit``) and map them at the next start
(``-XX:SharedArchiveFile``): measured here, the time from ``java`` to the scheduler's first lease
table call went from ~9 s to ~3.7 s at load 11 (see docs/BENCHMARKS.md, "Recovery after kill -9").

The archive is built once per machine, jar set and java: :func:`build` runs the daemon against a
closed local port (no AWS call can succeed; fake credentials) until its scheduler starts
initializing, then stops it, and the JVM writes what it loaded. The fleet starts that build in the
background when the archive is missing (:func:`ensure_in_background`); daemons use the archive
when it exists. A stale or foreign archive is harmless: the JVM checks it and, when it does not
match, starts without it (``-Xshare:auto``, the default).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from consumers.daemon import LOGBACK, MAIN_CLASS
from consumers.proctree import die_with_parent

#: The daemon's log line once the classes of its start are loaded.
_TRAINED = "Initializing LeaseCoordinator attempt 2"
_TRAINING_PROPERTIES = """\
executableName = /bin/true
streamName = driftline-class-archive
applicationName = driftline-class-archive
workerId = class-archive
AWSCredentialsProvider = DefaultCredentialsProvider
regionName = us-east-1
initialPositionInStream = TRIM_HORIZON
processingLanguage = python/3.11
retrievalMode = POLLING
metricsLevel = NONE
kinesisEndpoint = http://127.0.0.1:9
dynamoDBEndpoint = http://127.0.0.1:9
cloudWatchClient.endpointOverride = http://127.0.0.1:9
schedulerInitializationBackoffTimeMillis = 200
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftline"


def archive_path(java: str, jar_dir: Path) -> Path:
    """Where the archive of this java and jar set lives (the key: their paths, names, sizes)."""
    h = hashlib.sha256(f"{Path(java).resolve()}:{jar_dir.resolve()}".encode())
    for jar in sorted(jar_dir.glob("*.jar")):
        h.update(f"{jar.name}:{jar.stat().st_size}".encode())
    return cache_dir() / f"kcl-{h.hexdigest()[:16]}.jsa"


def jvm_options(java: str, jar_dir: Path) -> list[str]:
    """``-XX:SharedArchiveFile=…`` when the archive exists, else nothing."""
    path = archive_path(java, jar_dir)
    return [f"-XX:SharedArchiveFile={path}"] if path.is_file() else []


def build(java: str, jar_dir: Path, timeout: float = 120.0) -> Path | None:
    """Build the archive (one builder at a time); returns it, or None when the build failed."""
    target = archive_path(java, jar_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(prefix="driftline-cds-") as tmp:
            work = Path(tmp)
            (work / "kcl.properties").write_text(_TRAINING_PROPERTIES)
            (work / "logback.xml").write_text(LOGBACK.replace("{level}", "INFO"))
            partial = work / "kcl.jsa"
            ok = _train(java, jar_dir, work, partial, timeout)
            if not ok or not partial.is_file():
                return None
            partial.replace(target)
    return target


def _train(java: str, jar_dir: Path, work: Path, archive: Path, timeout: float) -> bool:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "class-archive",
        "AWS_SECRET_ACCESS_KEY": "class-archive",
        "AWS_REGION": "us-east-1",
    }
    cmd = [
        java,
        f"-XX:ArchiveClassesAtExit={archive}",
        "-Xmx512m",
        "-Daws.cborEnabled=false",
        "-cp",
        f"{jar_dir}/*",
        MAIN_CLASS,
        *("--properties-file", str(work / "kcl.properties")),
        *("--log-configuration", str(work / "logback.xml")),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        # Killed when the thread that started it ends: no training JVM outlives its supervisor.
        preexec_fn=die_with_parent(),  # noqa: PLW1509
    )
    deadline = time.monotonic() + timeout
    trained = False
    assert proc.stdout is not None
    for raw in proc.stdout:
        if _TRAINED.encode() in raw:
            trained = True
            break
        if time.monotonic() > deadline:
            break
    proc.terminate()  # SIGTERM: the JVM exits normally and writes the archive
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return trained


def ensure_in_background(java: str, jar_dir: Path) -> threading.Thread | None:
    """Start building the archive in a thread when it is missing (None: it exists)."""
    if archive_path(java, jar_dir).is_file():
        return None

    def run() -> None:
        with contextlib.suppress(OSError):
            build(java, jar_dir)

    thread = threading.Thread(target=run, name="kcl-class-archive", daemon=True)
    thread.start()
    return thread
