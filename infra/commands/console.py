"""``driftline console [--stack NAME] [--host 127.0.0.1] [--port 0]``: the web UI.

Serves the console for the stack (the local stack when it is up, else AWS with the operator's
credentials) and prints its URL. A host other than loopback is refused unless
``DRIFTLINE_CONSOLE_TOKEN`` is set; every request must then carry that token.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from infra.console.security import TOKEN_ENV


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "console", help="serve the web console (pipeline, drift, alarms, models, predictions)"
    )
    p.add_argument("--stack", default=None, help="stack name (default: the settings')")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.set_defaults(func=_console)


def _console(args: argparse.Namespace) -> int:
    from etl.exceptions import ConfigError
    from infra.console.server import serve

    if not 0 <= args.port <= 65535:
        raise ConfigError("--port", f"must be 0..65535, got {args.port}")

    def ready(url: str) -> None:
        print(f"driftline console: {url}", flush=True)
        print("stop it with Ctrl-C", flush=True)

    serve(
        stack=args.stack,
        host=args.host,
        port=args.port,
        token=os.environ.get(TOKEN_ENV) or None,
        on_ready=ready,
    )
    return 0
