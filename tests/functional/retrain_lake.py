"""Test helper for the retrain tests: write synthetic rows into the emulator's lake by hour."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from etl.aws import wrangler_endpoint
from etl.contract import PARTITION_DATE, PARTITION_HOUR, Contract
from retrain.data import table_path

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def write_lake(
    frame: pd.DataFrame,
    *,
    session: Any,
    endpoint: str,
    bucket: str,
    contract: Contract,
    lake_prefix: str = "lake",
) -> list[str]:
    """Write ``frame`` as hive partitions event_date/event_hour with awswrangler; the paths."""
    import awswrangler as wr

    data = frame.copy()
    et = pd.to_datetime(data[contract.event_time_field.name], utc=True)
    data[PARTITION_DATE] = et.dt.strftime("%Y-%m-%d")
    data[PARTITION_HOUR] = et.dt.strftime("%H")
    with wrangler_endpoint(endpoint):
        out = wr.s3.to_parquet(
            data,
            table_path(bucket, lake_prefix, contract.name),
            dataset=True,
            partition_cols=[PARTITION_DATE, PARTITION_HOUR],
            mode="append",
            boto3_session=session,
        )
    return list(out["paths"])
