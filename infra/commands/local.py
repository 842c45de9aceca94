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
    up.add_argument("--no-console", action="store_true", help="do not start the web console")
    add_contract_option(up)
    up.set_defaults(func=_up)
    down = actions.add_parser("down", help="stop everything `up` started (by PID)")
    down.set_defaults(func=_down)
    st = actions.add_parser("status", help="processes and every resource with how it is provided")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    # The flag, the env or driftline.toml; the stack remembers it for every later command.
    contract_path = load_settings({"contract_path": args.contract}).contract_path
    res = local.up(
        stack_name=args.stack,
        with_warehouse=not args.no_warehouse,
        with_console=not args.no_console,
        contract_path=contract_path,
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
    stopped = local.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
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
