"""``driftline local up | down | status``: the whole stack on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from etl.settings import load_settings
from infra import local
from infra.context import add_contract_option


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "local", help="run the stack locally on the embedded emulator"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up", help="start the emulator, deploy the template, start the local stand-ins"
    )
    up.add_argument("--stack", default="driftline", help="stack name (default: driftline)")
    up.add_argument("--no-warehouse", action="store_true", help="skip the embedded PostgreSQL")
    up.add_argument(
        "--shards", type=int, default=None, help="shards of the stream (the template's ShardCount)"
    )
    up.add_argument("--no-console", action="store_true", help="do not start the web console")
    up.add_argument(
        "--no-model-server",
        action="store_true",
        help="do not start the local model server (it captures every prediction to the lake)",
    )
    add_contract_option(up)
    up.set_defaults(func=_up)
    down = actions.add_parser(
        "down",
        help="stop everything `up` started and the consumer fleet (by PID), then wipe the state",
        description="Stop the local stack and any consumer fleet in its state folder. The state"
        " (warehouse data, model cache, alarm history) lives for one up..down, like the"
        " emulator's in-memory streams and lake: it is wiped, logs kept.",
    )
    wipe = down.add_mutually_exclusive_group()
    wipe.add_argument(
        "--wipe", dest="keep", action="store_false", help="delete the state, keep logs (default)"
    )
    wipe.add_argument(
        "--keep",
        dest="keep",
        action="store_true",
        help="leave the state's files to look at; the next `up` wipes them",
    )
    down.set_defaults(func=_down, keep=False)
    st = actions.add_parser("status", help="processes and every resource with how it is provided")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    if args.shards is not None and args.shards < 1:
        print(f"driftline: error: --shards must be >= 1, got {args.shards}", file=sys.stderr)
        return 2
    # The flag, the env or driftline.toml; the stack remembers it for every later command.
    contract_path = load_settings({"contract_path": args.contract}).contract_path
    res = local.up(
        stack_name=args.stack,
        parts=local.Parts(
            warehouse=not args.no_warehouse,
            console=not args.no_console,
            model_server=not args.no_model_server,
        ),
        contract_path=contract_path,
        parameters={"ShardCount": str(args.shards)} if args.shards is not None else None,
        progress=lambda m: print(f"… {m}", file=sys.stderr),
    )
    print(f"local stack {res.state.stack_name} up at {res.state.endpoint} in {res.seconds:.1f}s")
    print(f"  contract {res.state.extra.get('contract_path') or 'card_transactions (the example)'}")
    for name, pid in res.state.pids.items():
        print(f"  process {name:<16} pid {pid}")
    url = local.console_url(res.state)
    if url:
        print(f"console: {url}")
    for logical_id, rtype, how in res.resources:
        print(f"  {logical_id:<34} {rtype:<40} {how}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = local.down(keep=args.keep)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    print("state kept until the next `local up`" if args.keep else "state wiped (logs kept)")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = local.status()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0 if st.get("up") else 1
    if not st.get("up"):
        print("local stack: down")
        return 1
    print(f"local stack {st['stack']} up at {st['endpoint']}")
    print(f"  contract {st.get('contract') or 'card_transactions (the example)'}")
    procs: dict[str, dict[str, Any]] = st["processes"]  # type: ignore[assignment]
    for name, proc in procs.items():
        print(f"  process {name:<16} pid {proc['pid']:<8} {'alive' if proc['alive'] else 'DEAD'}")
    if st.get("console"):
        print(f"  console: {st['console']}")
    resources: list[dict[str, Any]] = st.get("resources", [])  # type: ignore[assignment]
    for r in resources:
        print(f"  {r['logical_id']:<34} {r['type']:<40} {r['provided_by']}")
    return 0
