"""Helpers more than one command uses: reading a dataset named on the command line, printing a
query's rows, the serving settings. Commands import these from here, never from each other.
(A module whose name starts with ``_`` is not a command: ``infra.cli`` skips it.)
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pyarrow import csv as pacsv

from etl.aws import AwsClients, split_s3_uri
from etl.compaction import TableLocation, lake_dataset
from etl.contract import PARTITION_DATE, Contract, contract_for_settings
from etl.exceptions import BaselineError, CompactionError
from etl.settings import Settings
from etl.warehouse.base import QueryResult
from infra.context import LocalState, clients_for

# -- datasets named on the command line ---------------------------------------------------------


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
            # The lake reader: only the visible objects (a compacted hour is read once).
            dataset = lake_dataset(clients.client("s3"), _s3_fs(clients), loc)
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
        bucket, key = split_s3_uri(source if "/" in source[5:] else source + "/x", BaselineError)
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


# -- query results -----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def print_result(result: QueryResult, as_json: bool) -> None:
    """Rows as JSON lines, or as an aligned text table with a row count."""
    if as_json:
        for row in result.rows:
            doc = {c: _jsonable(v) for c, v in zip(result.columns, row, strict=True)}
            print(json.dumps(doc, sort_keys=False, default=str))
        return
    if not result.columns:
        print("(no result set)")
        return
    cells = [["" if v is None else str(_jsonable(v)) for v in row] for row in result.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(result.columns)]
    print("  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")


# -- serving -----------------------------------------------------------------------------------


def serving_settings(settings: Settings, local: LocalState | None) -> Settings:
    """Fill the local model server's URL from the local stack's state when not set."""
    if settings.model_server_url is None and local is not None:
        from infra.model_server import STATE_KEY

        found = local.extra.get(STATE_KEY) or {}
        if found.get("url"):
            return settings.replace(
                model_server_url=found["url"], model_server_token_file=found.get("token_file")
            )
    return settings
