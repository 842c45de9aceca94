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
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pyarrow import csv as pacsv

from etl import jsonsafe
from etl.aws import AwsClients
from etl.compaction import TableLocation, resolve_visible
from etl.contract import PARTITION_DATE, Contract, contract_for_settings
from etl.exceptions import BaselineError, CompactionError
from etl.profile import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    NumericProfile,
    ProfileOptions,
    build_profile,
    save_baseline,
    split_s3_uri,
    write_baseline_file,
)
from etl.settings import Settings
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


def contract_for(settings: Settings) -> Contract:
    return contract_for_settings(settings, clients_for(settings))


def _s3_fs(clients: AwsClients) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(**clients.s3_filesystem_kwargs())


def _read_csv(path: str, filesystem: pafs.FileSystem | None) -> pa.Table:
    if filesystem is None:
        return pacsv.read_csv(path)
    with filesystem.open_input_stream(path) as fh:
        return pacsv.read_csv(fh)


def read_dataset(source: str, settings: Settings, contract: Contract) -> tuple[pa.Table, str]:
    """(rows, description) of a dataset named on the command line."""
    if source == "lake" or source.startswith("lake:"):
        bucket = settings.require("lake_bucket")
        parts = source.split(":")[1:]
        start = parts[0] if parts and parts[0] else None
        end = parts[1] if len(parts) > 1 and parts[1] else None
        location = f"{bucket}/{settings.lake_prefix}/{contract.name}"
        clients = clients_for(settings)
        loc = TableLocation(bucket, contract.name, settings.lake_prefix, settings.manifest_prefix)
        try:
            # Only the visible objects: a compacted hour is read once (etl/compaction.py).
            visible = resolve_visible(clients.client("s3"), loc)
            if not visible:
                raise FileNotFoundError("no objects")
            dataset = ds.dataset(
                [f"{bucket}/{k}" for k in visible],
                filesystem=_s3_fs(clients),
                format="parquet",
                partitioning="hive",
                partition_base_dir=location,
            )
        except (FileNotFoundError, OSError, CompactionError) as exc:
            raise BaselineError(
                f"lake table s3://{location}/ is unreadable or empty ({exc});"
                " produce and consume some records first"
            ) from None
        flt = None
        if start is not None:
            flt = pc.field(PARTITION_DATE) >= start
        if end is not None:
            upper = pc.field(PARTITION_DATE) <= end
            flt = upper if flt is None else flt & upper
        table = dataset.to_table(filter=flt)
        return table, f"s3://{location}/ event_date {start or '*'}..{end or '*'}"
    if source.startswith("s3://"):
        fs = _s3_fs(clients_for(settings))
        bucket, key = split_s3_uri(source if "/" in source[5:] else source + "/x")
        path = f"{bucket}/{key}".rstrip("/")
        if path.endswith(".csv"):
            return _read_csv(path, fs), source
        try:
            return ds.dataset(
                path, filesystem=fs, format="parquet", partitioning="hive"
            ).to_table(), source
        except (FileNotFoundError, OSError) as exc:
            raise BaselineError(f"{source}: cannot read Parquet ({exc})") from None
    local = Path(source)
    if not local.exists():
        raise BaselineError(
            f"{source!r} does not exist; pass a Parquet/CSV path, an s3:// URI"
            " or lake[:START[:END]]"
        )
    if local.is_file() and local.suffix.lower() == ".csv":
        return _read_csv(str(local), None), str(local)
    return ds.dataset(str(local), format="parquet", partitioning="hive").to_table(), str(local)


def remote(ref: str | None) -> bool:
    """Whether a --from/--out/--baseline reference needs AWS (the lake, S3, the current one)."""
    return ref is None or ref.startswith("s3://") or ref.split(":", 1)[0] in ("lake", "current")


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
    out: str | None = args.out
    current = False
    if out is not None and out.endswith(".json"):
        if out.startswith("s3://"):
            bucket, key = split_s3_uri(out)
            clients_for(settings).client("s3").put_object(
                Bucket=bucket, Key=key, Body=profile.to_json().encode()
            )
            uri = out
        else:
            uri = str(write_baseline_file(out, profile))
    else:
        if out is None:
            bucket, prefix = settings.require("lake_bucket"), settings.baseline_prefix
        else:
            if not out.startswith("s3://"):
                raise BaselineError(
                    f"--out {out!r}: expected a *.json file or s3://bucket[/prefix]"
                )
            bucket, _, prefix = out[5:].partition("/")
            prefix = prefix.strip("/") or settings.baseline_prefix
        current = not args.no_current
        uri = save_baseline(
            clients_for(settings).client("s3"), bucket, prefix, profile, make_current=current
        )
    summary = {
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
            "target_rate": profile.calibration.target_rate if profile.calibration else None,
            "window_rows": profile.calibration.window_rows if profile.calibration else None,
        },
    }
    print(jsonsafe.dumps(summary, indent=1))
    print(f"baseline {profile.version} ({table.num_rows} rows) -> {uri}", file=sys.stderr)
    return 0
