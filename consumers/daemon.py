"""Launching the real KCL MultiLangDaemon (Java): jar verification, properties file, java command.

The jars come from the ``kclpy-ext`` wheel (KCL multilang 3.1.3), pinned by hash in the lock and
verified here against ``consumers/jars.sha256`` before the daemon starts. The official
``amazon-kclpy`` sdist downloads ~80 jars from Maven Central while it builds, which fails offline;
``DRIFTLINE_KCL_JARS`` points at a folder of your own jars instead (verified only for shape).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from etl.exceptions import KclSetupError
from etl.settings import Settings

MAIN_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
MANIFEST = "jars.sha256"
#: The record processors' structured log, one per worker folder (the daemon's is daemon.log).
PROCESSOR_LOG = "processor.log"


def bundled_jar_dir() -> Path:
    import amazon_kclpy

    return Path(amazon_kclpy.__file__).parent / "jars"


def read_manifest(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        out[name.strip()] = digest.strip()
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_jars(jar_dir: Path, expected: Mapping[str, str]) -> None:
    """The folder holds exactly the expected jars with the expected hashes, or KclSetupError."""
    if not jar_dir.is_dir():
        raise KclSetupError(f"KCL jar folder {jar_dir} does not exist")
    found = {p.name: p for p in jar_dir.glob("*.jar")}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    bad = sorted(n for n in set(expected) & set(found) if sha256_file(found[n]) != expected[n])
    if missing or extra or bad:
        raise KclSetupError(
            f"KCL jars in {jar_dir} do not match consumers/{MANIFEST}: missing={missing[:5]}"
            f" unexpected={extra[:5]} wrong_hash={bad[:5]}. Reinstall with `make clean test`"
            " (the wheel is pinned by hash), or set DRIFTLINE_KCL_JARS to a folder of your own jars"
        )


def resolve_jar_dir(settings: Settings) -> Path:
    """The verified jar folder: the user's override, else the bundled set checked by hash."""
    if settings.kcl_jars:
        jar_dir = Path(settings.kcl_jars)
        if not any(jar_dir.glob("amazon-kinesis-client-multilang-*.jar")):
            raise KclSetupError(
                f"kcl_jars: {jar_dir} has no amazon-kinesis-client-multilang-*.jar; point"
                " DRIFTLINE_KCL_JARS at the folder holding the KCL multilang jar and its"
                " dependencies"
            )
        return jar_dir
    jar_dir = bundled_jar_dir()
    expected = read_manifest(resources.files("consumers").joinpath(MANIFEST).read_text())
    verify_jars(jar_dir, expected)
    return jar_dir


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KclSetupError(
            "'java' not found: the KCL MultiLangDaemon needs Java 17."
            " Install it: apt-get install -y openjdk-17-jre-headless"
        )
    return java


@dataclass(frozen=True, slots=True)
class DaemonFiles:
    properties: Path
    launcher: Path
    logback: Path


LOGBACK = """<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level [kcl] %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <logger name="software.amazon.kinesis" level="{level}"/>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
"""


def properties_for(
    settings: Settings, *, worker_id: str, executable: Path, max_leases: int = 0
) -> str:
    """The daemon's properties file; local mode adds endpoint overrides, short start-up times."""
    p: dict[str, str] = {
        "executableName": str(executable),
        "streamName": settings.require("stream_name"),
        "applicationName": settings.require("application_name"),
        "workerId": worker_id,
        "AWSCredentialsProvider": "DefaultCredentialsProvider",
        "regionName": settings.region,
        "initialPositionInStream": "TRIM_HORIZON",
        "processingLanguage": "python/3.11",
        "retrievalMode": "POLLING",
        "maxRecords": str(settings.kcl_max_records),
        "idleTimeBetweenReadsInMillis": str(settings.kcl_idle_time_ms),
        # Age-based flushes need a call even when a poll returned nothing.
        "callProcessRecordsEvenForEmptyRecordList": "true",
        # Long enough for a final flush on SIGTERM to reach shutdown_requested.
        "shutdownGraceMillis": "25000",
        "metricsLevel": "NONE",
    }
    if max_leases:
        p["maxLeasesForWorker"] = str(max_leases)
    if settings.endpoint_url:
        p.update(
            {
                "kinesisEndpoint": settings.endpoint_url,
                "dynamoDBEndpoint": settings.endpoint_url,
                "cloudWatchClient.endpointOverride": settings.endpoint_url,
                # Emulator only: without these the first record waits ~50 s for shard sync and
                # lease assignment.
                "shardSyncIntervalMillis": "5000",
                "leaseAssignmentIntervalMillis": "1000",
                "workerMetricsReporterFreqInMillis": "2000",
                "inMemoryWorkerMetricsCaptureFrequencyMillis": "1000",
                "failoverTimeMillis": "6000",
                "parentShardPollIntervalMillis": "2000",
                "listShardsBackoffTimeInMillis": "500",
                "schedulerInitializationBackoffTimeMillis": "500",
            }
        )
    return "".join(f"{k} = {v}\n" for k, v in p.items())


def write_daemon_files(
    settings: Settings,
    work_dir: Path,
    *,
    worker_id: str,
    python: str | None = None,
    log_level: str = "WARN",
    max_leases: int = 0,
    module: str = "consumers.app",
) -> DaemonFiles:
    """Properties, launcher and logback files for one daemon; the launcher runs the relay
    (:mod:`consumers.relay`) in front of ``python -u -m <module>`` (the record processor;
    another module only for benchmarks)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    launcher = work_dir / "record_processor.sh"
    py = shlex.quote(python or sys.executable)
    # The relay restarts a crashed processor in place (consumers.relay); it keeps up to two
    # flushes' worth of delivered records. The processor logs to its own file: stderr reaches
    # the daemon, which logs every line it reads there at ERROR.
    relay_buffer = 2 * settings.flush_max_bytes + 64 * 1024 * 1024
    log_file = shlex.quote(str((work_dir / PROCESSOR_LOG).resolve()))
    # The daemon splits executableName on spaces; a launcher script keeps any path safe.
    launcher.write_text(
        "#!/bin/sh\n"
        f"export DRIFTLINE_PROCESSOR_LOG_FILE={log_file}\n"
        f"exec {py} -u -m consumers.relay --max-buffer-bytes {relay_buffer}"
        f" -- {py} -u -m {shlex.quote(module)}\n"
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    props = work_dir / "kcl.properties"
    props.write_text(
        properties_for(settings, worker_id=worker_id, executable=launcher, max_leases=max_leases)
    )
    logback = work_dir / "logback.xml"
    logback.write_text(LOGBACK.replace("{level}", log_level))
    return DaemonFiles(properties=props, launcher=launcher, logback=logback)


def java_command(
    java: str,
    jar_dir: Path,
    files: DaemonFiles,
    *,
    heap_mb: int = 512,
    jvm_options: Sequence[str] = (),
) -> list[str]:
    """The daemon's command; ``jvm_options`` e.g. the class archive's (consumers.classdata)."""
    return [
        java,
        *jvm_options,
        f"-Xmx{heap_mb}m",
        "-Daws.cborEnabled=false",
        "-cp",
        f"{jar_dir}/*",
        MAIN_CLASS,
        "--properties-file",
        str(files.properties),
        "--log-configuration",
        str(files.logback),
    ]


def daemon_env(
    settings_env: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(settings_env)
    env["AWS_CBOR_DISABLE"] = "true"
    if settings_env.get("DRIFTLINE_REGION"):
        env.setdefault("AWS_REGION", settings_env["DRIFTLINE_REGION"])
    env.setdefault("PYTHONUNBUFFERED", "1")
    if settings_env.get("DRIFTLINE_ENDPOINT_URL"):
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return env
