"""Late label records in the lake: their own table, ``<contract>_labels``, by label time.

A contract with ``[labels] arrival = "late"`` puts label records on the stream; the record
processor routes them out before validation (``consumers/label_routing.py``). They are data too,
so they land in the lake beside the records, in the same flush and under the same manifest
discipline (``etl/lake.py``: the labels' objects are written between the records' pending and
committed manifests, so a replay of the range rewrites both with the same keys).

Each row is one label record: the contract's id field (the join key), the label (the contract's
label type), the label's time (``[labels] time_field``, else its arrival time: the event time of
this table, so partitions ``event_date``/``event_hour`` are the label's), and the lake's metadata
columns (shard, sequence number, arrival and ingest time: the record's identity on the stream).
A changed label is a second row for the same id: the table keeps the history, and a reader takes
the last one (:func:`latest_labels` in ``retrain/data.py``: by label time, then arrival, then
sequence number).

The table is described by a contract derived from the user's (:func:`labels_contract`), as the
captured predictions' table is (``etl/capture_lake.py``), so the lake writer, its manifests, the
Glue catalog and the lake reader are the ones the records use.

>>> from etl.contract import load_contract
>>> c = labels_contract(load_contract("tests/contracts/parcel_late_labels.toml"))
>>> c.name, [f.name for f in c.fields]
('parcel_late_labels_labels', ['parcel_id', 'delivered_late', 'labelled_at'])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from etl.contract import (
    ARRIVAL_TIME,
    INGEST_TIME,
    SEQUENCE_NUMBER,
    SHARD_ID,
    Contract,
    Field,
    FieldType,
    Role,
)
from etl.exceptions import ContractError

#: The label time's column when the contract names no ``[labels] time_field``.
LABEL_TIME = "label_time"
LABELS_SUFFIX = "_labels"


def labels_table(contract: Contract) -> str:
    """The labels table's name: ``<contract>_labels``."""
    return f"{contract.name}{LABELS_SUFFIX}"


def label_time_column(contract: Contract) -> str:
    return contract.labels.time_field or LABEL_TIME


def labels_contract(contract: Contract) -> Contract:
    """The contract of the labels table derived from a late-label contract's."""
    label = contract.label
    if not contract.labels.late or label is None:
        raise ContractError(
            f'contract {contract.name!r} has no late labels ([labels] arrival = "late" and a'
            " label field): no labels table"
        )
    idf = contract.id_field
    fields = (
        Field(idf.name, idf.type, Role.ID),
        Field(label.name, label.type, Role.LABEL),
        Field(label_time_column(contract), FieldType.TIMESTAMP, Role.EVENT_TIME),
    )
    return Contract(
        name=labels_table(contract),
        version=contract.version,
        partition_key=idf.name,
        fields=fields,
        task=contract.task,
        source=f"late labels of {contract.source or contract.name}",
    )


def label_rows(
    lcontract: Contract,
    *,
    ids: Sequence[str],
    labels: Sequence[float],
    times_s: Sequence[float],
    identity: tuple[str, Sequence[str], Sequence[int | None]],
    ingest_time: datetime,
) -> pa.Table:
    """Rows of the labels table (its Arrow schema with the lake's metadata columns).

    ``labels`` are the router's floats, cast back to the contract's label type; ``times_s`` are
    epoch seconds; ``identity`` is (shard, sequence numbers, arrival milliseconds or None)."""
    shard_id, sequences, arrivals_ms = identity
    idf, label, when = (f.name for f in lcontract.fields)
    ltype = lcontract.fields[1].type
    n = len(ids)
    values: list[object]
    if ltype is FieldType.BOOL:
        values = [v != 0.0 for v in labels]
    elif ltype is FieldType.INT:
        values = [int(v) for v in labels]
    else:
        values = list(labels)
    micros = pa.array([round(t * 1e6) for t in times_s], pa.int64())
    arrivals = pa.array([None if a is None else a * 1000 for a in arrivals_ms], pa.int64())
    ts = pa.timestamp("us", tz="UTC")
    cols = {
        idf: pa.array(list(ids), pa.string()).cast(lcontract.fields[0].arrow_type),
        label: pa.array(values, lcontract.fields[1].arrow_type),
        when: micros.cast(ts),
        SHARD_ID: pa.array([shard_id] * n, pa.string()),
        SEQUENCE_NUMBER: pa.array(list(sequences), pa.string()),
        ARRIVAL_TIME: arrivals.cast(ts),
        INGEST_TIME: pa.array([ingest_time] * n, ts),
    }
    return pa.table(cols, schema=lcontract.arrow_schema(with_metadata=True))
