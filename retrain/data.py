"""The training window: the last H hours of the lake, split in time order.

The lake is hive-partitioned by ``event_date=YYYY-MM-DD/event_hour=HH`` (UTC): only the visible
objects (:func:`etl.compaction.resolve_visible`) of the window's hours are read, then rows are
filtered on the exact event time. The most recent ``holdout_fraction`` of the window is held out,
so the model is scored on data newer than anything it saw (as it will be used).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from etl.aws import AwsClients
from etl.compaction import TableLocation, lake_dataset
from etl.contract import Contract
from etl.exceptions import RetrainError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def last_hours(cls, now: datetime, hours: float) -> Window:
        if now.tzinfo is None:
            raise RetrainError(f"now={now!r} has no time zone; pass an aware UTC datetime")
        end = now.astimezone(UTC)
        return cls(end - timedelta(hours=hours), end)

    def hours(self) -> set[tuple[str, str]]:
        """Every (event_date, event_hour) partition value the window touches."""
        out: set[tuple[str, str]] = set()
        t = self.start.replace(minute=0, second=0, microsecond=0)
        while t <= self.end:
            out.add((t.strftime("%Y-%m-%d"), t.strftime("%H")))
            t += timedelta(hours=1)
        return out


@dataclass(frozen=True, slots=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    window: Window
    #: First event time of the holdout: nothing at or after it was trained on.
    boundary: datetime


def table_path(bucket: str, lake_prefix: str, table: str) -> str:
    return f"s3://{bucket}/{lake_prefix}/{table}/"


def read_window(
    session: Any,
    endpoint_url: str | None,
    *,
    bucket: str,
    lake_prefix: str,
    contract: Contract,
    window: Window,
    manifest_prefix: str = "manifests",
) -> pd.DataFrame:
    """The table's rows with ``window.start <= event_time < window.end``, time-ordered."""
    path = table_path(bucket, lake_prefix, contract.name)
    columns = [f.name for f in contract.fields]
    # The lake reader: the objects the compaction visibility rule shows, of the window's hours.
    clients = AwsClients(session.region_name or "us-east-1", endpoint_url, _session=session)
    loc = TableLocation(bucket, contract.name, lake_prefix, manifest_prefix)
    try:
        dataset = lake_dataset(
            clients.client("s3"),
            pafs.S3FileSystem(**clients.s3_filesystem_kwargs()),
            loc,
            hours=window.hours(),
        )
    except FileNotFoundError:
        raise RetrainError(
            f"no lake data under {path} for {window.start:%Y-%m-%dT%H:%M}Z..{window.end:%H:%M}Z;"
            " widen retrain_window_hours or check the consumers are writing"
        ) from None
    frame: pd.DataFrame = dataset.to_table(columns=columns).to_pandas()
    et = contract.event_time_field.name
    times = pd.to_datetime(frame[et], utc=True)
    mask = (times >= pd.Timestamp(window.start)) & (times < pd.Timestamp(window.end))
    out = frame.loc[mask, columns].copy()
    out[et] = times[mask]
    out = out.sort_values(et, kind="stable").reset_index(drop=True)
    log.info("lake window %s..%s: %d rows from %s", window.start, window.end, len(out), path)
    return out


def time_split(
    data: pd.DataFrame,
    contract: Contract,
    *,
    holdout_fraction: float,
    window: Window,
    min_rows: int = 1,
) -> Split:
    """Oldest ``1 - holdout_fraction`` of the rows to train, newest to hold out."""
    label = contract.label
    if label is None:
        raise RetrainError(f"contract {contract.name!r} has no label field to train on")
    rows = data[data[label.name].notna()]
    if len(rows) < min_rows:
        raise RetrainError(
            f"only {len(rows)} labelled rows in the window (need {min_rows}); widen"
            " retrain_window_hours or lower retrain_min_rows"
        )
    et = contract.event_time_field.name
    rows = rows.sort_values(et, kind="stable").reset_index(drop=True)
    cut = max(1, min(len(rows) - 1, round(len(rows) * (1 - holdout_fraction))))
    train, holdout = rows.iloc[:cut].reset_index(drop=True), rows.iloc[cut:].reset_index(drop=True)
    boundary = pd.Timestamp(holdout[et].iloc[0]).to_pydatetime()
    return Split(train=train, holdout=holdout, window=window, boundary=boundary)
