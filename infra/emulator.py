"""The embedded AWS emulator: moto's own WSGI app served by hypercorn on 127.0.0.1.

hypercorn speaks HTTP/1.1 and HTTP/2 cleartext (h2c with prior knowledge), which the KCL's Kinesis
client needs; plain ``moto_server`` (werkzeug) fails it with "First received frame was not
SETTINGS". Run as a process::

    python -m infra.emulator --port 0 --ready-file /tmp/endpoint

It binds a free port on loopback, writes ``http://127.0.0.1:PORT`` to the ready file once it
accepts connections, and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.procs import free_port, read_ready_file, spawn_module, stop_child, wait_until

#: moto backends that hypercorn's worker threads race on: moto's Kinesis backend iterates the
#: shard's records while PutRecords appends to them ("OrderedDict mutated during iteration" in
#: GetRecords, an HTTP 500 the KCL retries), and the KCL's lease tables are read-modify-written.
#: Requests to these services run one at a time (each service its own lock); others in parallel.
SERIALIZED_SERVICES = frozenset({"kinesis", "dynamodb"})
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/[^/,]+/([a-z0-9-]+)/aws4_request")


def service_of(environ: dict[str, Any]) -> str | None:
    """The AWS service a request is signed for (SigV4 credential scope), if any."""
    m = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return m.group(1) if m else None


def _serialized(app: Any, services: frozenset[str] = SERIALIZED_SERVICES) -> Any:
    """Run requests to ``services`` under one lock per service (see SERIALIZED_SERVICES)."""
    locks = {name: threading.Lock() for name in services}

    def wrapped(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        lock = locks.get(service_of(environ) or "")
        if lock is None:
            return app(environ, start_response)  # type: ignore[no-any-return]
        with lock:
            return app(environ, start_response)  # type: ignore[no-any-return]

    return wrapped


def _always_send_body(app: Any) -> Any:
    """hypercorn's WSGI adapter never sends the response start when the app yields no chunk
    (moto's HEAD responses), which surfaces as a 500; always yield at least one (empty) chunk."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        result = app(environ, start_response)
        try:
            chunks = [bytes(c) for c in result]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return chunks or [b""]

    return wrapped


#: Kinesis' default record limit (a stream's MaxRecordSizeInKiB): data plus partition key.
KINESIS_MAX_RECORD_BYTES = 1024 * 1024
_PUT_RECORD_TARGET = "Kinesis_20131202.PutRecord"


def kinesis_record_error(target: str | None, body: bytes) -> bytes | None:
    """The error body Kinesis answers (HTTP 400) for a PutRecord whose data plus partition key
    exceed 1 MiB, or ``None`` when the request may go on. moto checks PutRecords entries itself
    (with this same message shape) but lets any PutRecord through.

    >>> kinesis_record_error(_PUT_RECORD_TARGET, b'{"Data": "YQ==", "PartitionKey": "k"}') is None
    True
    """
    if target != _PUT_RECORD_TARGET:
        return None
    try:
        request = json.loads(body)
        size = len(base64.b64decode(request.get("Data", ""))) + len(
            str(request.get("PartitionKey", "")).encode()
        )
    except (ValueError, TypeError, AttributeError):
        return None  # not JSON (CBOR) or malformed: moto answers as it does
    if size <= KINESIS_MAX_RECORD_BYTES:
        return None
    return json.dumps(
        {
            "__type": "ValidationException",
            "message": "1 validation error detected: Value at 'data' failed to satisfy"
            " constraint: Member must have length less than or equal to"
            f" {KINESIS_MAX_RECORD_BYTES}",
        }
    ).encode()


def _kinesis_limits(app: Any) -> Any:
    """Refuse what real Kinesis refuses before moto sees it (see :func:`kinesis_record_error`)."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target != _PUT_RECORD_TARGET:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        error = kinesis_record_error(target, body)
        if error is not None:
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Content-Length", str(len(error))),
                ],
            )
            return [error]
        environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    return wrapped


def _serve(port: int, ready_file: Path | None, *, serialize: bool = True) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from infra import emulator_cloudwatch

    emulator_cloudwatch.install()  # GetMetricData in time linear in the datapoints

    # moto decides some behaviour from env; keep it deterministic and offline.
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
    app = _always_send_body(_kinesis_limits(DomainDispatcherApplication(create_backend_app)))
    if serialize:
        app = _serialized(app)

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 75
    config.h2_max_concurrent_streams = 256
    config.wsgi_max_body_size = 64 * 1024 * 1024

    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def announce() -> None:
            endpoint = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            if ready_file is not None:
                tmp = ready_file.with_suffix(".tmp")
                tmp.write_text(endpoint)
                tmp.replace(ready_file)

        task = asyncio.create_task(announce())
        await serve(app, config, shutdown_trigger=stop.wait, mode="wsgi")
        task.cancel()

    asyncio.run(main())


@dataclass
class EmulatorProcess:
    """A running emulator subprocess."""

    pid: int
    endpoint: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.pid, self.process, timeout)


def start_emulator(
    state_dir: Path,
    *,
    port: int | None = None,
    timeout: float = 60.0,
    log_file: Path | None = None,
    serialize: bool = True,
) -> EmulatorProcess:
    """Start the emulator in its own process group and wait until it answers.

    ``serialize=False`` leaves moto's racing backends unserialized (benchmarks measure the cost).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / "emulator.endpoint"
    ready.unlink(missing_ok=True)
    port = port or free_port()
    log = log_file or state_dir / "emulator.log"
    args = ["--port", str(port), "--ready-file", str(ready)]
    proc = spawn_module("infra.emulator", [*args, *([] if serialize else ["--no-serialize"])], log)
    endpoint = wait_until(
        proc,
        lambda: read_ready_file(ready, _answers),
        timeout=timeout,
        what="the emulator",
        log_path=log,
    )
    return EmulatorProcess(pid=proc.pid, endpoint=endpoint, process=proc)


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def reset(endpoint: str) -> None:
    """Forget every resource (moto's reset API): fast isolation between tests."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument(
        "--no-serialize", action="store_true", help="do not serialize Kinesis/DynamoDB (benchmarks)"
    )
    args: Any = parser.parse_args(argv)
    _serve(args.port or free_port(), args.ready_file, serialize=not args.no_serialize)


if __name__ == "__main__":
    main()
