"""``driftline demo``: run the whole loop locally and print a summary (what `make demo` runs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from etl.settings import load_settings
from infra.argtypes import at_least, fraction_below_one, positive
from infra.context import add_contract_option
from infra.demo import DemoOptions, run_demo


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the whole loop locally, checked by a second reader"
    )
    p.add_argument("--records", type=at_least(1), default=5000)
    p.add_argument(
        "--shards",
        type=at_least(1),
        default=None,
        help="reshard the stream first (default: the template's)",
    )
    p.add_argument("--workers", type=at_least(1), default=2)
    p.add_argument("--scenario", choices=["stationary", "drift"], default="stationary")
    p.add_argument("--poison-rate", type=fraction_below_one, default=0.01)
    p.add_argument("--rate", type=positive, default=500.0, help="records/s produced (default 500)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=positive, default=240.0)
    p.add_argument(
        "--keep",
        "--keep-up",
        dest="keep_up",
        action="store_true",
        help="leave the local stack and its console up afterwards (stop: driftline local down)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_contract_option(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    # every flag was checked by its argparse type: nothing has started yet if one is wrong
    options = DemoOptions(
        records=args.records,
        shards=args.shards,
        workers=args.workers,
        scenario=args.scenario,
        poison_rate=args.poison_rate,
        rate=args.rate,
        seed=args.seed,
        timeout=args.timeout,
        keep_up=args.keep_up,
        contract_path=load_settings({"contract_path": args.contract}).contract_path,
    )
    result = run_demo(options, lambda m: print(f"… {m}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    if args.keep_up:
        from infra import local
        from infra.context import LocalState

        state = LocalState.load()
        url = local.console_url(state) if state is not None else None
        print(
            f"the local stack is still up{f'; console: {url}' if url else ''}."
            " Stop it with `driftline local down`.",
            file=sys.stderr,
        )
    ok = (
        result["missing"] == 0
        and result["duplicates"] == 0
        and result["dead_letters"] == result["poison"]
    )
    return 0 if ok else 1
