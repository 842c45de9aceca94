"""The ``driftline`` command line. Subcommands live in ``infra/commands/*`` (one module each).

No command ends in a Python traceback: a :class:`DriftlineError` (a user's or the environment's
mistake, saying what to fix) prints one line and exits 2; anything unexpected prints one line with
its type and exits 1 (``DRIFTLINE_DEBUG=1`` shows the traceback). Every message, and every log
line, goes through :func:`etl.redact.redact` first: no password or secret reaches the terminal.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from etl.exceptions import DriftlineError
from etl.redact import RedactingFilter, redact
from infra import commands

DEBUG_ENV = "DRIFTLINE_DEBUG"
#: Commands whose module alone is imported when the command line names them: a restarted
#: `driftline consume` (systemd, a killed supervisor) should not import every other command first.
ALONE = frozenset({"consume"})


def _named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names when it is one of :data:`ALONE` (None: build the full parser)."""
    args = iter(argv)
    for arg in args:
        if arg == "--stack":
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in ALONE else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Streaming ML-data pipeline: Kinesis -> KCL -> Parquet lake + warehouse, "
        "on-stream drift -> alarms -> retraining.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.add_argument(
        "--stack",
        dest="target_stack",
        default=None,
        metavar="NAME",
        help="use this stack on AWS (default: the local stack; same as DRIFTLINE_STACK_NAME)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers (_common), not a command
            continue
        if only is not None and info.name != only:
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


@contextmanager
def _stack_env(name: str | None) -> Iterator[None]:
    """``--stack NAME`` for the duration of one command (settings read ``DRIFTLINE_*``)."""
    if name is None:
        yield
        return
    previous = os.environ.get("DRIFTLINE_STACK_NAME")
    os.environ["DRIFTLINE_STACK_NAME"] = name
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DRIFTLINE_STACK_NAME", None)
        else:
            os.environ["DRIFTLINE_STACK_NAME"] = previous


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_named_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    _logging(args.verbose)
    try:
        with _stack_env(args.target_stack):
            rc = args.func(args)
    except DriftlineError as exc:
        print(f"driftline: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"driftline: error: {type(exc).__name__}: {redact(first)}"
            f" (unexpected; {DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
