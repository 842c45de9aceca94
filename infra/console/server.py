"""Serve the console (uvicorn on a socket we bind ourselves: port 0 gives a free port), and start
or stop it as a process of the local stack.

``python -m infra.console --port 0 --ready-file F`` writes its URL to F once it listens.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.console.context import Console
from infra.console.security import TOKEN_ENV, check_bind, is_loopback
from infra.procs import read_ready_file, spawn_module, wait_until

STATE_KEY = "console"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    *,
    stack: str | None,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    on_ready: Callable[[str], None] = lambda _url: None,
) -> None:
    """Serve until SIGTERM/SIGINT. A non-loopback ``host`` needs ``token``."""
    import uvicorn

    from infra.console.app import build_app

    check_bind(host, token)
    console = Console.from_environment(stack)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    hosts = ("127.0.0.1", "localhost", "::1") if is_loopback(host) else None
    app = build_app(console, token=token, hosts=hosts)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    on_ready(url_for(host, bound, token))
    server.run(sockets=[sock])


def start_console(state_dir: Path, *, stack: str, timeout: float = 30.0) -> tuple[int, str]:
    """Start the console as a process of the local stack; returns (pid, url)."""
    ready = state_dir / "console.endpoint"
    ready.unlink(missing_ok=True)
    log_path = state_dir / "console.log"
    proc = spawn_module(
        "infra.console",
        ["--stack", stack, "--port", "0", "--ready-file", str(ready)],
        log_path,
        env={"DRIFTLINE_STATE_DIR": str(state_dir)},
    )
    url = wait_until(
        proc,
        lambda: read_ready_file(ready, _answers),
        timeout=timeout,
        what="the console",
        log_path=log_path,
    )
    return proc.pid, url


def remember(state: Any, pid: int, url: str) -> None:
    state.pids[STATE_KEY] = pid
    state.extra[STATE_KEY] = {"url": url}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"{url.split('?', maxsplit=1)[0].rstrip('/')}/healthz", timeout=2
        ) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="driftline console (a process of the local stack)")
    parser.add_argument("--stack", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    def ready(url: str) -> None:
        if args.ready_file is not None:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(url)
            tmp.replace(args.ready_file)

    serve(
        stack=args.stack,
        host=args.host,
        port=args.port,
        token=os.environ.get(TOKEN_ENV) or None,
        on_ready=ready,
    )
