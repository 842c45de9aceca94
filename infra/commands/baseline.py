"""``driftline baseline build --from SOURCE [--out URI]``: profile a dataset into a drift baseline.

SOURCE is a local Parquet file or folder, a local CSV file, an ``s3://`` URI (Parquet object or
prefix, or CSV object) or ``lake[:START[:END]]`` — the contract's lake table, optionally only the
``event_date`` partitions from START to END (``YYYY-MM-DD``, inclusive).

Without ``--out`` the baseline goes to the lake bucket (``baselines/<table>/<version>.json``) and
becomes current (``CURRENT.json``), so running consumers pick it up at their next window close.
``--out`` ending in ``.json`` writes just that file (local path or s3 URI); any other s3 URI is a
bucket/prefix that receives the baseline and the pointer.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from etl import jsonsafe
from etl.aws import split_s3_uri
from etl.exceptions import BaselineError
from etl.profile import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    NumericProfile,
    Profile,
    ProfileOptions,
    build_profile,
    save_baseline,
    write_baseline_file,
)
from etl.settings import Settings
from infra.commands._common import contract_for, read_dataset, remote
from infra.context import add_contract_option, clients_for, resolve_settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "baseline", help="drift baselines (profiles of training data)"
    )
    bsub = p.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    b = bsub.add_parser("build", help="profile a dataset into a versioned baseline")
    b.add_argument(
        "--from",
        dest="source",
        required=True,
        help="local Parquet/CSV path, s3:// URI, or lake[:START[:END]]",
    )
    b.add_argument(
        "--out",
        default=None,
        help="file (*.json, local or s3://) or s3://bucket[/prefix]; default: the lake"
        " bucket, made current",
    )
    b.add_argument("--bins", type=int, default=DEFAULT_BINS)
    b.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    b.add_argument(
        "--target-rate",
        type=float,
        default=None,
        help="false windows per feature the drift thresholds allow (default: the settings'"
        " drift_target_rate, 1e-4)",
    )
    b.add_argument(
        "--window-rows",
        type=int,
        default=None,
        help="window size the thresholds are calibrated for (default: drift_min_rows, 500)",
    )
    add_contract_option(b)
    b.add_argument(
        "--no-current",
        action="store_true",
        help="do not move the CURRENT pointer to the new baseline",
    )
    b.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    out_needs_aws = args.out is None or not args.out.endswith(".json") or remote(args.out)
    settings, _ = resolve_settings(args=args, needs_aws=remote(args.source) or out_needs_aws)
    contract = contract_for(settings)
    table, described = read_dataset(args.source, settings, contract)
    if table.num_rows == 0:
        raise BaselineError(f"{args.source}: no rows to profile")
    profile = build_profile(
        table,
        contract,
        options=ProfileOptions(
            bins=args.bins,
            top_k=args.top_k,
            target_rate=args.target_rate or settings.drift_target_rate,
            window_rows=args.window_rows or settings.drift_min_rows,
        ),
        source=described,
    )
    uri, current = _store(profile, args.out, not args.no_current, settings)
    print(jsonsafe.dumps(_summary(profile, uri, current), indent=1))
    print(f"baseline {profile.version} ({table.num_rows} rows) -> {uri}", file=sys.stderr)
    return 0


def _store(
    profile: Profile, out: str | None, make_current: bool, settings: Settings
) -> tuple[str, bool]:
    """Write the baseline where ``--out`` says; (its URI, whether it became the current one).

    A ``*.json`` out is that one file (local or S3), never current; otherwise a versioned baseline
    under the lake bucket's (or the given ``s3://bucket/prefix``) baseline prefix."""
    if out is not None and out.endswith(".json"):
        if not out.startswith("s3://"):
            return str(write_baseline_file(out, profile)), False
        bucket, key = split_s3_uri(out, BaselineError)
        clients_for(settings).client("s3").put_object(
            Bucket=bucket, Key=key, Body=profile.to_json().encode()
        )
        return out, False
    if out is None:
        bucket, prefix = settings.require("lake_bucket"), settings.baseline_prefix
    else:
        if not out.startswith("s3://"):
            raise BaselineError(f"--out {out!r}: expected a *.json file or s3://bucket[/prefix]")
        bucket, _, prefix = out[5:].partition("/")
        prefix = prefix.strip("/") or settings.baseline_prefix
    s3 = clients_for(settings).client("s3")
    return save_baseline(s3, bucket, prefix, profile, make_current=make_current), make_current


def _summary(profile: Profile, uri: str, current: bool) -> dict[str, Any]:
    calibration = profile.calibration
    return {
        "uri": uri,
        "version": profile.version,
        "current": current,
        "rows": profile.window.rows,
        "contract_hash": profile.contract_hash,
        "features": sorted(profile.features),
        "window": [profile.window.start, profile.window.end],
        "nonfinite": {
            n: f.nonfinite
            for n, f in sorted(profile.features.items())
            if isinstance(f, NumericProfile) and f.nonfinite
        },
        "calibration": {
            "target_rate": calibration.target_rate if calibration else None,
            "window_rows": calibration.window_rows if calibration else None,
        },
    }
