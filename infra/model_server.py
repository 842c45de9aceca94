"""Local model server on the SageMaker container contract, with zero-downtime model switches.

``GET /ping`` answers 200 once a model is loaded; ``POST /invocations`` scores ``application/json``
or ``text/csv`` bodies through ``retrain/inference.py`` (``model_fn``/``input_fn``/``predict_fn``/
``output_fn``), exactly what a SageMaker scikit-learn endpoint runs. Bad input gets a 4xx with a
message; bodies over the limit get 413 without being read.

A switch loads the new model completely first, then replaces the one reference that requests read
(an atomic assignment): a request in flight finishes on the model it started with, the next one
uses the new model, and no request ever sees a half-loaded model. Triggers: ``POST /admin/reload``
with ``{"model_dir": ...}``, or a change of the watched pointer file (``--pointer``), which holds
the path of the model directory to serve.

Loading a model unpickles it, which runs code: a reload needs the token kept in the state folder
(``model_server.token``, mode 0600; header ``Authorization: Bearer <token>``), a JSON body (so a
web page cannot post one without a CORS preflight), and a directory under the model cache
(``--model-root``); the pointer's target must be under it too. Slow clients cannot pin the server:
connections time out (``SOCKET_TIMEOUT_S``), at most ``MAX_WORKERS`` connections are served at
once (more get 503), and draining a refused body stops after ``DRAIN_SECONDS``.

With ``--capture-s3 s3://bucket/prefix`` every answered prediction is captured in SageMaker's
data-capture format (``etl/capture.py``, ``infra/capture_sink.py``): the request thread only
offers a line to a bounded buffer (full: dropped and counted), a writer thread puts it to S3.
``GET /model`` reports the capture counts.

Run as a process (binds 127.0.0.1 only; ``infra/model_server_proc.py`` starts and stops it)::

    python -m infra.model_server --model-dir DIR [--pointer FILE] --port 0 --ready-file F
"""

from __future__ import annotations

import argparse
import csv
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from infra.capture_sink import CaptureSink
from infra.model_server_proc import (
    DEFAULT_MAX_BYTES,
    DRAIN_LIMIT,
    DRAIN_SECONDS,
    MAX_WORKERS,
    SOCKET_TIMEOUT_S,
    STATE_KEY,
    CaptureOptions,
    Limits,
    ServerProcess,
    capture_options,
    remember,
    start_model_server,
)
from infra.procs import free_port
from retrain.backends.reload_auth import TOKEN_FILE, ReloadRefusedError, within, write_token
from retrain.inference import InputError, LoadedModel, input_fn, model_fn, output_fn, predict_fn

log = logging.getLogger("infra.model_server")

__all__ = [
    "DEFAULT_MAX_BYTES",
    "STATE_KEY",
    "CaptureOptions",
    "Limits",
    "ServerProcess",
    "capture_options",
    "remember",
    "start_model_server",
]

_DIGITS = re.compile(r"^[0-9]{1,12}$")
#: Client input that the parser may reject with these instead of InputError: still a 400.
_CLIENT_ERRORS = (ValueError, OverflowError, RecursionError, csv.Error, UnicodeError)


class ModelHolder:
    """The served model: one reference, replaced atomically after a full load."""

    def __init__(self) -> None:
        self._model: LoadedModel | None = None
        self._model_dir: str | None = None
        self._loaded_at = 0.0
        self._reload_lock = threading.Lock()
        self.swaps = 0

    @property
    def current(self) -> LoadedModel | None:
        return self._model

    def describe(self) -> dict[str, Any]:
        model = self._model
        return {
            "model_id": model.model_id if model else None,
            "model_dir": self._model_dir,
            "loaded_at": self._loaded_at,
            "swaps": self.swaps,
        }

    def load(self, model_dir: str) -> dict[str, Any]:
        """Load ``model_dir`` fully (and score a warm-up row), then swap; on error keep the old."""
        with self._reload_lock:
            previous = self._model.model_id if self._model else None
            started = time.monotonic()
            model = model_fn(model_dir)
            _warm_up(model)
            self._model, self._model_dir, self._loaded_at = model, model_dir, time.time()
            self.swaps += 1
            log.info("serving model %s from %s (was %s)", model.model_id, model_dir, previous)
            return {
                "model_id": model.model_id,
                "previous": previous,
                "load_seconds": round(time.monotonic() - started, 4),
            }


def _warm_up(model: LoadedModel) -> None:
    """Score one synthetic row, so a model that cannot predict is refused before the swap."""
    zero: dict[str, Any] = {
        "int": 0,
        "float": 0.0,
        "bool": False,
        "timestamp": "1970-01-01T00:00:00Z",
    }
    predict_fn([{f.name: zero.get(f.type, "") for f in model.features}], model)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self,
        port: int,
        holder: ModelHolder,
        max_bytes: int,
        *,
        token: str,
        model_root: Path,
        limits: Limits,
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.holder = holder
        self.max_bytes = max_bytes
        self.token = token
        self.model_root = model_root
        self.limits = limits
        self.capture: CaptureSink | None = None
        self._slots = threading.BoundedSemaphore(limits.max_workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per request, but at most ``max_workers``: beyond that, 503 and close."""
        if not self._slots.acquire(blocking=False):
            try:
                body = b'{"error": "the server is busy; retry shortly", "status": 503}'
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.socket_timeout_s)
        # headers and body are two writes: without NODELAY, Nagle + the client's delayed ACK
        # add ~40 ms to every keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message, "status": status}).encode())

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            self._error(411, "a Content-Length header is required (chunked bodies are refused)")
            return None
        if not _DIGITS.match(length_text.strip()):
            # a negative length would read to the end of the stream, past the limit
            self.close_connection = True
            self._error(400, f"Content-Length {length_text[:40]!r} is not a non-negative integer")
            return None
        length = int(length_text)
        if length > self.server.max_bytes:
            if length <= DRAIN_LIMIT:
                self._discard(length)  # so the client reads the 413 rather than a reset
            else:
                self.close_connection = True  # the unread body must not be parsed as a request
            self._error(413, f"the body has {length} bytes; the limit is {self.server.max_bytes}")
            return None
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        left, deadline = length, time.monotonic() + self.server.limits.drain_s
        while left > 0:
            if time.monotonic() > deadline:
                self.close_connection = True  # a slow sender: stop reading, close after the 413
                return
            try:
                chunk = self.rfile.read1(min(left, 64 * 1024))
            except OSError:
                chunk = b""
            if not chunk:
                self.close_connection = True
                return
            left -= len(chunk)

    def do_GET(self) -> None:
        holder = self.server.holder
        if self.path == "/ping":
            if holder.current is None:
                self._error(503, "no model loaded yet")
            else:
                self._send(200, b"{}")
        elif self.path == "/model":
            capture = self.server.capture
            doc = {**holder.describe(), "capture": capture.stats() if capture else None}
            self._send(200, json.dumps(doc).encode())
        else:
            self._error(404, f"no route GET {self.path}; use /ping, /model or POST /invocations")

    def do_POST(self) -> None:
        if self.path == "/invocations":
            self._invoke()
        elif self.path == "/admin/reload":
            self._reload()
        else:
            self._error(404, f"no route POST {self.path}; use /invocations or /admin/reload")

    def _invoke(self) -> None:
        body = self._read_body()
        if body is None:
            return
        model = self.server.holder.current  # read once: the whole request uses this model
        if model is None:
            self._error(503, "no model loaded yet")
            return
        try:
            data = input_fn(body, self.headers.get("Content-Type", "application/json"))
            prediction = predict_fn(data, model)
            out, content_type = output_fn(
                prediction, self.headers.get("Accept", "application/json"), model.threshold
            )
        except InputError as exc:
            self._error(exc.status, str(exc))
            return
        except _CLIENT_ERRORS as exc:  # input the parser rejects without an InputError
            log.warning("unparseable request: %s: %s", type(exc).__name__, exc)
            self._error(400, "the body could not be parsed as records of the model's features")
            return
        except Exception:  # a model failure answers 500 (no internals) and keeps serving
            log.exception("prediction failed")
            self._error(500, "prediction failed; the server log has the details")
            return
        self._send(200, out, content_type, {"X-Model-Id": model.model_id})
        if self.server.capture is not None:  # after the answer: capture never delays it
            self.server.capture.capture(
                body,
                self.headers.get("Content-Type", "application/json"),
                out,
                content_type,
                model.model_id,
            )

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.server.token.encode()
        ):
            self.close_connection = True
            self._error(401, f"reload needs 'Authorization: Bearer <token>' ({TOKEN_FILE})")
            return False
        if _base_type(self.headers.get("Content-Type", "")) != "application/json":
            self.close_connection = True
            self._error(415, "reload takes an application/json body")
            return False
        return True

    def _reload(self) -> None:
        if not self._authorized():
            return
        body = self._read_body()
        if body is None:
            return
        try:
            doc = json.loads(body or b"{}")
            if not isinstance(doc, dict) or not isinstance(doc.get("model_dir"), str):
                raise ReloadRefusedError('expected {"model_dir": "/path/under/the/model/cache"}')
            model_dir = str(within(self.server.model_root, doc["model_dir"]))
        except (ValueError, RecursionError) as exc:
            self._error(400, f'expected {{"model_dir": "/path"}}: {type(exc).__name__}')
            return
        except ReloadRefusedError as exc:
            self._error(400, str(exc))
            return
        try:
            result = self.server.holder.load(model_dir)
        except Exception:
            log.exception("reload of %s failed; still serving the previous model", model_dir)
            self._error(
                422,
                f"loading {model_dir} failed (the server log has the details);"
                " still serving the previous model",
            )
            return
        self._send(200, json.dumps(result).encode())


def _base_type(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def _watch_pointer(
    pointer: Path,
    holder: ModelHolder,
    stop: threading.Event,
    model_root: Path,
    interval_s: float = 0.25,
) -> None:
    """Reload when the pointer file's content changes to a directory not being served."""
    seen: str | None = None
    while not stop.wait(interval_s):
        try:
            target = pointer.read_text().strip()
        except OSError:
            continue
        if not target or target == seen:
            continue
        seen = target
        if target == holder.describe()["model_dir"]:
            continue
        try:
            holder.load(str(within(model_root, target)))
        except ReloadRefusedError as exc:
            log.error("pointer %s: %s; not loaded", pointer, exc)
        except Exception:
            log.exception("pointer %s names %s, which failed to load", pointer, target)


@dataclass(frozen=True, slots=True)
class ServePaths:
    """The files a server uses: the model cache (reloads stay under it), the reload token it
    writes, the pointer it may watch and the ready file it writes its URL to."""

    model_root: Path
    token_file: Path
    pointer: Path | None = None
    ready_file: Path | None = None


def serve(
    model_dir: str | None,
    port: int,
    paths: ServePaths,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: Limits | None = None,
    capture: CaptureSink | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; a fresh reload token goes to ``paths.token_file`` (mode
    0600). With ``capture``, answered predictions are captured (its writer stops with us)."""
    model_root, pointer, ready_file = paths.model_root, paths.pointer, paths.ready_file
    limits = limits or Limits()
    holder = ModelHolder()
    initial = model_dir
    if initial is None and pointer is not None and pointer.exists():
        target = pointer.read_text().strip()
        initial = str(within(model_root, target)) if target else None
    if initial is not None:
        holder.load(initial)
    token = write_token(paths.token_file)
    server = _Server(port, holder, max_bytes, token=token, model_root=model_root, limits=limits)
    server.capture = capture.start() if capture is not None else None
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if pointer is not None:
        threading.Thread(
            target=_watch_pointer, args=(pointer, holder, stop, model_root), daemon=True
        ).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(url)
        tmp.replace(ready_file)
    log.info("model server on %s", url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if capture is not None:
            capture.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="driftline local model server")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--pointer", type=Path, default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--max-workers", type=int, default=MAX_WORKERS)
    parser.add_argument("--socket-timeout", type=float, default=SOCKET_TIMEOUT_S)
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS)
    parser.add_argument("--model-root", type=Path, required=True, help="the model cache")
    parser.add_argument("--token-file", type=Path, required=True, help="written, mode 0600")
    parser.add_argument("--capture-s3", default=None, help="s3://bucket/prefix: capture on")
    parser.add_argument("--capture-endpoint-name", default="driftline-local")
    parser.add_argument("--capture-variant", default="AllTraffic")
    parser.add_argument("--capture-endpoint-url", default=None, help="S3 endpoint (emulator)")
    parser.add_argument("--capture-max-lines", type=int, default=10_000)
    parser.add_argument("--capture-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    serve(
        args.model_dir,
        args.port or free_port(),
        ServePaths(args.model_root, args.token_file, args.pointer, args.ready_file),
        max_bytes=args.max_bytes,
        limits=Limits(args.socket_timeout, args.max_workers, args.drain_seconds),
        capture=_capture_sink(args),
    )


def _capture_sink(args: argparse.Namespace) -> CaptureSink | None:
    if not args.capture_s3:
        return None
    from etl.aws import AwsClients
    from etl.capture import CaptureBuffer

    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    s3 = AwsClients(region=region, endpoint_url=args.capture_endpoint_url).client("s3")
    return CaptureSink(
        s3,
        args.capture_s3,
        args.capture_endpoint_name,
        variant=args.capture_variant,
        buffer=CaptureBuffer(args.capture_max_lines),
        interval_s=args.capture_interval,
    )


if __name__ == "__main__":
    main()
