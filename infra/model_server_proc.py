"""Running the local model server as a process: its limits, its capture options, start and stop.

Split from ``infra/model_server.py`` (the server itself) so each stays small; that module
re-exports what callers import from it (``start_model_server``, ``ServerProcess``, ``Limits``...).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.capture import capture_uri
from etl.exceptions import EmulatorError
from etl.settings import Settings
from infra.procs import free_port, read_ready_file, spawn, stop_child, wait_until
from retrain.backends.reload_auth import TOKEN_FILE

DEFAULT_MAX_BYTES = 1024 * 1024
#: Key of ``LocalState.extra`` where the running server's pid and URL are recorded.
STATE_KEY = "model_server"
#: Oversized bodies up to this size are read and dropped before the 413; larger ones close.
DRAIN_LIMIT = 16 * 1024 * 1024
#: ... and for at most this long (a slow sender is cut off instead of holding a thread).
DRAIN_SECONDS = 5.0
#: A connection that sends nothing for this long is closed (idle keep-alive included).
SOCKET_TIMEOUT_S = 30.0
#: Connections served at once (a thread each); the next one gets a 503 instead of a thread.
MAX_WORKERS = 32


@dataclass(frozen=True, slots=True)
class Limits:
    """What one slow or hostile client may cost the server."""

    socket_timeout_s: float = SOCKET_TIMEOUT_S
    max_workers: int = MAX_WORKERS
    drain_s: float = DRAIN_SECONDS
    #: The largest request body accepted (a larger one gets 413).
    max_bytes: int = DEFAULT_MAX_BYTES

    def args(self) -> list[str]:
        return [
            "--max-bytes", str(self.max_bytes),
            "--socket-timeout", str(self.socket_timeout_s),
            "--max-workers", str(self.max_workers),
            "--drain-seconds", str(self.drain_s),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """Where the server captures its predictions (SageMaker's data-capture layout and format)."""

    s3_uri: str  # s3://bucket/prefix
    endpoint_name: str
    variant: str = "AllTraffic"
    #: The S3 endpoint (the emulator's URL); None on AWS.
    endpoint_url: str | None = None
    #: Lines held for the writer at most; more are dropped and counted (a prediction never waits).
    max_lines: int = 10_000
    #: How often the writer puts what it holds as one object.
    interval_s: float = 1.0

    def args(self) -> list[str]:
        out = [
            "--capture-s3", self.s3_uri,
            "--capture-endpoint-name", self.endpoint_name,
            "--capture-variant", self.variant,
            "--capture-max-lines", str(self.max_lines),
            "--capture-interval", str(self.interval_s),
        ]  # fmt: skip
        if self.endpoint_url:
            out += ["--capture-endpoint-url", self.endpoint_url]
        return out


def capture_options(settings: Settings) -> CaptureOptions | None:
    """Capture to the stack's lake bucket at the prefix the SageMaker endpoint uses
    (``s3://<lake>/capture/<endpoint>/AllTraffic/...``): what ``driftline lake capture`` and the
    template's CaptureIngestFunction read. None when the lake bucket is not known."""
    if not settings.lake_bucket:
        return None
    from retrain.runs import model_name

    endpoint = settings.endpoint_name or f"{settings.stack_name}-{model_name(settings)}"
    return CaptureOptions(
        s3_uri=capture_uri(settings.lake_bucket),
        endpoint_name=endpoint,
        endpoint_url=settings.endpoint_url,
    )


@dataclass
class ServerProcess:
    pid: int
    url: str
    process: subprocess.Popen[bytes] | None = None
    #: The reload token's file (mode 0600); reload_server(url, dir, token_file=...) reads it.
    token_file: Path | None = None

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.pid, self.process, timeout)


def start_model_server(
    state_dir: Path,
    model_uri_or_dir: str | Path | None,
    *,
    pointer: Path | None = None,
    s3_client: Any = None,
    timeout: float = 60.0,
    model_root: Path | None = None,
    limits: Limits = Limits(),
    capture: CaptureOptions | None = None,
) -> ServerProcess:
    """Start the server as a process on 127.0.0.1 (a free port) and wait until it answers
    ``/ping``.

    ``model_uri_or_dir`` is a model directory or an ``s3://.../model.tar.gz`` (then ``s3_client``
    is needed; the archive is extracted under ``state_dir/models``), or None to serve whatever
    ``pointer`` names. Reloads (request or pointer) may only name directories under
    ``model_root``: by default the pointer's folder (the model cache), else ``state_dir/models``.
    The reload token is written to ``state_dir/model_server.token`` (mode 0600). With
    ``capture``, every prediction is captured to S3 (``infra/capture_sink.py``).
    """
    if model_root is None:
        model_root = pointer.parent if pointer is not None else state_dir / "models"
    state_dir.mkdir(parents=True, exist_ok=True)
    model_dir = _local_model_dir(state_dir, model_uri_or_dir, s3_client)
    ready = state_dir / "model_server.endpoint"
    ready.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "infra.model_server",
        "--port", str(free_port()),
        "--ready-file", str(ready),
        "--model-root", str(model_root.resolve()),
        "--token-file", str(state_dir / TOKEN_FILE),
        *limits.args(),
        *(capture.args() if capture is not None else []),
        *(["--model-dir", model_dir] if model_dir is not None else []),
        *(["--pointer", str(pointer)] if pointer is not None else []),
    ]  # fmt: skip
    log_path = state_dir / "model_server.log"
    proc = spawn(cmd, log_path, env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"})
    need_model = model_dir is not None
    url = wait_until(
        proc,
        lambda: read_ready_file(ready, lambda u: _answers(u, need_model=need_model)),
        timeout=timeout,
        what="the model server",
        log_path=log_path,
    )
    return ServerProcess(pid=proc.pid, url=url, process=proc, token_file=state_dir / TOKEN_FILE)


def _local_model_dir(state_dir: Path, model: str | Path | None, s3_client: Any) -> str | None:
    """The directory to serve: ``model`` itself, or an ``s3://`` archive fetched under
    ``state_dir/models``; None when no model is named."""
    if model is None:
        return None
    text = str(model)
    if not text.startswith("s3://"):
        return str(Path(text).resolve())
    if s3_client is None:
        raise EmulatorError(f"{text}: pass s3_client to fetch an s3:// model")
    from retrain.artifacts import fetch_model

    name = text.rstrip("/").rsplit("/", 2)[-2]
    return str(fetch_model(s3_client, text, state_dir / "models" / name))


def _answers(url: str, *, need_model: bool) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:  # loopback only
            return bool(resp.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 503 and not need_model
    except OSError:
        return False


def remember(state: Any, server: ServerProcess) -> None:
    """Record the server in ``LocalState.extra`` (``driftline predict`` / ``models`` find it)."""
    state.extra[STATE_KEY] = {
        "pid": server.pid,
        "url": server.url,
        "token_file": str(server.token_file) if server.token_file else None,
    }
