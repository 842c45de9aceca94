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
from etl.contract import ARRIVAL_TIME, SEQUENCE_NUMBER, Contract
from etl.exceptions import RetrainError
from etl.keys import SEQ_WIDTH
from etl.label_lake import label_time_column, labels_contract

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
    #: Rows of the window left out for a null label (late labels: no label came yet).
    unlabelled: int = 0


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
    """The table's rows with ``window.start <= event_time < window.end``, time-ordered.

    For a late-label contract (``[labels] arrival = "late"``) the records' label column is null
    in the lake: each record gets its latest label from the labels table
    (``<contract>_labels``, :func:`join_labels`), read over the window's hours (labels known up
    to ``window.end``); a record with no label yet keeps a null label (:func:`time_split` leaves
    it out and counts it). The local and the SageMaker training read the channels made from
    this frame, so both train on the same joined rows."""
    clients = AwsClients(session.region_name or "us-east-1", endpoint_url, _session=session)
    where = _Where(clients, bucket, lake_prefix, manifest_prefix, window)
    out = _table_window(where, contract, required=True)
    if contract.labels.late:
        lcontract = labels_contract(contract)
        labels = _table_window(where, lcontract, required=False)
        out = join_labels(out, labels, contract)
        log.info("late labels: %d label rows read from %s", len(labels), lcontract.name)
    return out


@dataclass(frozen=True, slots=True)
class _Where:
    clients: AwsClients
    bucket: str
    lake_prefix: str
    manifest_prefix: str
    window: Window


def _table_window(where: _Where, contract: Contract, *, required: bool) -> pd.DataFrame:
    """One lake table's rows in the window (the contract's fields and, for the labels table,
    its stream identity), time-ordered; an empty frame for a missing table unless required."""
    window = where.window
    path = table_path(where.bucket, where.lake_prefix, contract.name)
    columns = [f.name for f in contract.fields]
    if not required:
        columns += [ARRIVAL_TIME, SEQUENCE_NUMBER]
    # The lake reader: the objects the compaction visibility rule shows, of the window's hours.
    loc = TableLocation(where.bucket, contract.name, where.lake_prefix, where.manifest_prefix)
    try:
        dataset = lake_dataset(
            where.clients.client("s3"),
            pafs.S3FileSystem(**where.clients.s3_filesystem_kwargs()),
            loc,
            hours=window.hours(),
        )
    except FileNotFoundError:
        if not required:
            return pd.DataFrame({c: [] for c in columns})
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


def latest_labels(labels: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Each id's last label in stream order (arrival time, then sequence number: the on-stream
    join's "last one wins"); the labels table keeps every version. Columns: id, label."""
    label = contract.label
    assert label is not None
    idf = contract.id_field.name
    if labels.empty:
        return pd.DataFrame({idf: [], label.name: []})
    when = pd.to_datetime(labels[ARRIVAL_TIME], utc=True).fillna(
        pd.to_datetime(labels[label_time_column(contract)], utc=True)
    )
    seq = labels[SEQUENCE_NUMBER].astype(str).str.zfill(SEQ_WIDTH)
    order = labels.assign(_when=when, _seq=seq).sort_values(["_when", "_seq"], kind="stable")
    return order.drop_duplicates(idf, keep="last")[[idf, label.name]].reset_index(drop=True)


def join_labels(records: pd.DataFrame, labels: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The records with their latest label by id (null where none came yet), records' order."""
    label = contract.label
    assert label is not None
    idf = contract.id_field.name
    latest = latest_labels(labels, contract)
    joined = records.drop(columns=[label.name]).merge(
        latest, on=idf, how="left", validate="many_to_one", sort=False
    )
    out: pd.DataFrame = joined[list(records.columns)]
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
    unlabelled = len(data) - len(rows)
    if len(rows) < min_rows:
        late = (
            f"; {unlabelled} records of the window have no label yet (late labels: the"
            f" {contract.name}_labels table)"
            if contract.labels.late
            else ""
        )
        raise RetrainError(
            f"only {len(rows)} labelled rows in the window (need {min_rows}); widen"
            f" retrain_window_hours or lower retrain_min_rows{late}"
        )
    et = contract.event_time_field.name
    rows = rows.sort_values(et, kind="stable").reset_index(drop=True)
    cut = max(1, min(len(rows) - 1, round(len(rows) * (1 - holdout_fraction))))
    train, holdout = rows.iloc[:cut].reset_index(drop=True), rows.iloc[cut:].reset_index(drop=True)
    boundary = pd.Timestamp(holdout[et].iloc[0]).to_pydatetime()
    return Split(
        train=train, holdout=holdout, window=window, boundary=boundary, unlabelled=unlabelled
    )
