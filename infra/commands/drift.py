"""``driftline drift check --from SOURCE [--baseline URI] [--json]``: a dataset against a baseline.

Runs the very code the consumer runs on-stream (:class:`etl.drift.DriftWindow`) over the whole
dataset, for backfills, CI gates (``--fail-above 1`` exits 1 when the drift score, the largest
calibrated feature score, is higher) and debugging. A dataset with fewer rows than the window
minimum (``drift_min_rows``, 500; ``--min-rows``) gets its statistics but no score, and the gate
does not fail on it: it says so. ``--baseline`` is a local file, an ``s3://`` URI, or
``current`` (default: the baseline the lake bucket's ``CURRENT.json`` names). SOURCE is as for
``driftline baseline build``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from etl import jsonsafe
from etl.drift import DriftResult, check
from etl.exceptions import BaselineError
from etl.profile import Profile, check_contract, load_baseline, load_current_baseline
from etl.settings import Settings
from infra.commands._common import contract_for, read_dataset, remote
from infra.context import add_contract_option, clients_for, resolve_settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("drift", help="drift statistics of a dataset")
    dsub = p.add_subparsers(dest="drift_command", required=True, metavar="ACTION")
    c = dsub.add_parser("check", help="every feature's drift statistics against a baseline")
    c.add_argument(
        "--from",
        dest="source",
        required=True,
        help="local Parquet/CSV path, s3:// URI, or lake[:START[:END]]",
    )
    c.add_argument(
        "--baseline", default="current", help="baseline file, s3:// URI, or 'current' (default)"
    )
    c.add_argument("--json", action="store_true", help="print one JSON object")
    add_contract_option(c)
    c.add_argument(
        "--fail-above",
        type=float,
        default=None,
        help="exit 1 when the drift score is above this (CI gate; 1 = the calibrated line)",
    )
    c.add_argument(
        "--min-rows",
        type=int,
        default=None,
        help="rows below which no score is given (default: the settings' drift_min_rows)",
    )
    c.set_defaults(func=_check)


def _load(settings: Settings, ref: str, contract_name: str) -> Profile:
    if ref == "current":
        bucket = settings.require("lake_bucket")
        s3 = clients_for(settings).client("s3")
        profile = load_current_baseline(s3, bucket, settings.baseline_prefix, contract_name)
        if profile is None:
            raise BaselineError(
                f"no current baseline under s3://{bucket}/{settings.baseline_prefix}/"
                f"{contract_name}/; build one with `driftline baseline build --from ...`"
            )
        return profile
    s3 = clients_for(settings).client("s3") if ref.startswith("s3://") else None
    return load_baseline(ref, s3_client=s3)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def render_table(result: DriftResult) -> str:
    head = (
        "feature", "kind", "status", "evidence z", "threshold", "p-value", "CUSUM", "score",
        "PSI", "KS", "null Δ", "out-of-range", "non-finite",
    )  # fmt: skip
    rows = [head]
    for f in result.features:
        rows.append(
            (
                f.name,
                f.kind,
                f.status,
                _fmt(f.evidence),
                _fmt(f.threshold),
                "-" if f.p_value is None else f"{f.p_value:.2g}",
                "-" if f.cusum is None else f"{f.cusum:.2f}/{f.cusum_threshold:.2f}",
                _fmt(f.score),
                _fmt(f.psi),
                _fmt(f.ks_statistic),
                _fmt(f.null_rate_delta),
                _fmt(f.out_of_range_share),
                str(f.nonfinite),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(
        f"drift score (largest score; > 1 = drift): {_fmt(result.drift_score)}"
        f"  max PSI: {_fmt(result.max_psi)}  rows: {result.rows}"
        f"  baseline: {result.baseline_version}"
    )
    if result.too_small:
        lines.append(too_small_note(result))
    if result.missing:
        lines.append(f"missing features: {', '.join(result.missing)}")
    return "\n".join(lines)


def too_small_note(result: DriftResult) -> str:
    return (
        f"only {result.rows} rows, fewer than the window minimum {result.min_rows}"
        " (drift_min_rows / --min-rows): statistics shown, no drift score, no gate"
    )


def _check(args: argparse.Namespace) -> int:
    settings, _ = resolve_settings(
        args=args, needs_aws=remote(args.baseline) or remote(args.source)
    )
    contract = contract_for(settings)
    profile = _load(settings, args.baseline, contract.name)
    check_contract(profile, contract)
    table, described = read_dataset(args.source, settings, contract)
    min_rows = settings.drift_min_rows if args.min_rows is None else args.min_rows
    result = check(table, profile, features=[f.name for f in contract.features], min_rows=min_rows)
    if args.json:
        print(jsonsafe.dumps({**result.to_dict(), "source": described}, indent=1))
    else:
        print(render_table(result))
    if result.too_small:
        print(too_small_note(result), file=sys.stderr)
    if args.fail_above is not None and (result.drift_score or 0.0) > args.fail_above:
        print(f"drift score {_fmt(result.drift_score)} is above {args.fail_above}", file=sys.stderr)
        return 1
    return 0
