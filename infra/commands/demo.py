"""``driftline demo``: run the whole loop locally and print a summary (what `make demo` runs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from etl.settings import load_settings
from infra.argtypes import at_least, fraction_below_one, non_negative, positive
from infra.context import add_contract_option
from infra.demo import DemoOptions, run_demo

#: The concept demo counts quality as restored when the promoted model's AUC after the change is
#: at most this far below the champion's before it.
AUC_RESTORED_WITHIN = 0.05


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
    p.add_argument(
        "--scenario",
        choices=["stationary", "drift", "concept"],
        default="stationary",
        help="drift: the inputs drift (drift alarm → retrain); concept: only the label's relation"
        " changes (drift alarm stays OK, quality alarm → retrain)",
    )
    p.add_argument(
        "--label-delay",
        type=non_negative,
        default=0.0,
        metavar="S",
        help="concept: seconds between a record and its label (0: labels inline; S > 0: label"
        " records S s late on the stream, joined by the consumers, landed in the lake's labels"
        " table and joined by the retrain: docs/quality.md L5)",
    )
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
    if args.label_delay and args.scenario != "concept":
        print("driftline demo: --label-delay applies to --scenario concept only", file=sys.stderr)
        return 2
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
        label_delay=args.label_delay,
    )
    result = run_demo(options, lambda m: print(f"… {m}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
        if args.scenario == "concept":
            print(concept_words(result))
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
    if args.scenario == "concept":
        ok = ok and concept_restored(result)
    return 0 if ok else 1


def concept_restored(r: dict[str, Any]) -> bool:
    """The concept demo's verdict: the drift alarm stayed OK, the quality alarm fired, a
    quality-triggered retrain was promoted and the served AUC came back near the champion's."""
    return bool(
        r.get("drift_alarms") == 0
        and r.get("quality_alarm_s") is not None
        and r.get("retrain_trigger") == "quality"
        and r.get("deployed_s") is not None
        and r.get("auc_after") is not None
        and r["auc_after"] >= r["auc_before"] - AUC_RESTORED_WITHIN
    )


def concept_words(r: dict[str, Any]) -> str:
    """The concept demo's outcome in words (what the JSON's fields say)."""
    drift = (
        f"the drift alarm stayed {r.get('drift_alarm_state')} (max drift score"
        f" {r.get('max_drift_score')}, {r.get('drift_alarms')} ALARM transitions)"
    )
    if r.get("quality_alarm_s") is None:
        quality = "the quality alarm did not fire"
    else:
        quality = (
            f"the quality alarm fired {r['quality_alarm_s']} s ({r['quality_alarm_windows']}"
            f" windows of {r['window_s']:g} s) after the first changed labels arrived"
            f" (threshold {r['quality_threshold']}, worst window AUC {r['stream_auc_worst']})"
        )
    retrain = (
        f"a retrain triggered by {r.get('retrain_trigger')} promoted a model at {r['deployed_s']} s"
        if r.get("deployed_s") is not None
        else "no retrain was promoted"
    )
    return (
        f"concept drift: {drift}; {quality}; {retrain}. Served ROC AUC: {r.get('auc_before')}"
        f" before the change, {r.get('auc_at_change')} after it, {r.get('auc_after')} after the"
        f" retrain; label coverage {r.get('label_coverage')}. Quality restored:"
        f" {'yes' if concept_restored(r) else 'NO'}."
    )
