"""Late labels for the synthetic workload: the label records of a ``[labels] arrival = "late"``
contract, put on the stream some seconds after their data records.

For each data record (the generator's rows) the data record goes out WITHOUT its label (the lake
keeps what arrived: a null label column), and, for a seeded subset (``coverage``), a label record
follows ``delay_s`` later: the contract's id field (the join key), the partition key field with
the data record's partition key (so Kinesis puts it on the same shard), the label, the kind field
set to ``label_kind`` and the time field (when declared) set to the data record's event time plus
the delay. A seeded share (``change_rate``) of the labels is sent again, changed (a bool or 0/1
label flipped, a number + 1), ``delay_s`` after the first one (``max(delay_s, 1)`` of label time
later): last one wins. With ``[labels] stream`` the label records go to that stream instead.

:func:`plan_labels` is pure (tested without a stream); ``etl.producer.produce`` runs it when
``ProduceRun.labels`` is given and schedules the puts.

>>> from etl.contract import parse_contract
>>> plan = plan_labels(_doc_contract(), [{"id": "a", "pk": "k1", "t": "2026-01-01T00:00:00Z",
...     "x": 1.0, "y": True}], LateLabels(delay_s=30))
>>> plan.data_rows
[{'id': 'a', 'pk': 'k1', 't': '2026-01-01T00:00:00Z', 'x': 1.0}]
>>> [(p.due_s, p.record_id, p.label) for p in plan.puts]
[(30.0, 'a', True)]
>>> plan.puts[0].data
b'{"id":"a","pk":"k1","y":true,"kind":"label","labelled_at":"2026-01-01T00:00:30.000000Z"}'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from etl.contract import Contract, FieldType

#: A seed salt so the label subset does not correlate with the generator's or the poison's draws.
_SALT = 0x1AB


@dataclass(frozen=True, slots=True)
class LateLabels:
    """How late labels are produced.

    ``delay_s``: seconds between a data record's put and its label's put (and between their
    times); ``coverage``: the seeded share of data records that get a label, in [0, 1];
    ``change_rate``: the seeded share of labels sent a second time, changed, in [0, 1].
    """

    delay_s: float = 0.0
    coverage: float = 1.0
    change_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ValueError(f"label delay must be >= 0 seconds, got {self.delay_s}")
        for name in ("coverage", "change_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"label {name} is a fraction in [0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class LabelPut:
    """One label record to put ``due_s`` seconds after its data record was put."""

    due_s: float
    data: bytes
    partition_key: str
    record_id: str
    label: Any
    changed: bool


@dataclass(frozen=True, slots=True)
class LabelPlan:
    """The data records without their label, and the label records to follow them.

    ``puts_of[i]`` lists the positions in ``puts`` that belong to data record ``i``;
    ``final`` maps each labelled id to its last label (what the join ends with).
    """

    data_rows: list[dict[str, Any]]
    puts: list[LabelPut]
    puts_of: list[list[int]]
    final: dict[str, Any]


def late_contract(contract: Contract) -> bool:
    return contract.labels.late


def plan_labels(
    contract: Contract,
    rows: Sequence[dict[str, Any]],
    labels: LateLabels,
    *,
    partition_keys: Sequence[str] | None = None,
    skip: frozenset[int] = frozenset(),
) -> LabelPlan:
    """Split generated rows into data records (label removed) and scheduled label records.

    ``partition_keys`` are the data records' Kinesis partition keys (default: the partition key
    field, else the id), so each label lands on its prediction's shard; rows at ``skip``
    (poison) get no label.
    """
    spec, label = contract.labels, contract.label
    if not spec.late or label is None:
        raise ValueError(f'contract {contract.name!r} has no late labels ([labels] arrival="late")')
    rng = np.random.default_rng([labels.seed, _SALT])
    n = len(rows)
    chosen = rng.random(n) < labels.coverage
    changes = rng.random(n) < labels.change_rate
    id_name, pk_name = contract.id_field.name, contract.partition_key
    extra = {f for f in (spec.kind_field, spec.time_field) if f is not None}
    data_rows: list[dict[str, Any]] = []
    puts: list[LabelPut] = []
    puts_of: list[list[int]] = []
    final: dict[str, Any] = {}
    for i, row in enumerate(rows):
        data_rows.append(_data_row(contract, row, extra))
        mine: list[int] = []
        value = row.get(label.name)
        if chosen[i] and value is not None and i not in skip:
            key = partition_keys[i] if partition_keys is not None else _pkey(row, pk_name, id_name)
            rid = str(row[id_name])
            steps = [(float(labels.delay_s), value, False)]
            if changes[i]:
                steps.append((2.0 * labels.delay_s, _changed(value, label.type), True))
            for due, v, changed in steps:
                shift = due if not changed else labels.delay_s + max(labels.delay_s, 1.0)
                doc = _label_doc(contract, row, v, shift)
                mine.append(len(puts))
                puts.append(LabelPut(due, _encode(doc), key, rid, v, changed))
                final[rid] = v
        puts_of.append(mine)
    return LabelPlan(data_rows, puts, puts_of, final)


def _data_row(contract: Contract, row: dict[str, Any], extra: set[str]) -> dict[str, Any]:
    """The data record as it goes out: no label; the kind/time fields only when required."""
    label = contract.label
    out = {k: v for k, v in row.items() if k not in extra and (label is None or k != label.name)}
    kind = contract.labels.kind_field
    if kind is not None and contract.field(kind).required:
        out[kind] = "prediction"
    return out


def _pkey(row: dict[str, Any], pk_name: str, id_name: str) -> str:
    key = row.get(pk_name)
    return str(row[id_name] if key is None or key == "" else key)


def _label_doc(
    contract: Contract, row: dict[str, Any], value: Any, shift_s: float
) -> dict[str, Any]:
    spec, label = contract.labels, contract.label
    assert label is not None
    id_name, pk_name = contract.id_field.name, contract.partition_key
    doc: dict[str, Any] = {id_name: row[id_name]}
    if pk_name in row and pk_name != id_name:
        doc[pk_name] = row[pk_name]
    doc[label.name] = value
    if spec.kind_field is not None:
        doc[spec.kind_field] = spec.label_kind
    if spec.time_field is not None:
        when = _parse_time(row[contract.event_time_field.name]) + timedelta(seconds=shift_s)
        doc[spec.time_field] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return doc


def _parse_time(text: Any) -> datetime:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _changed(value: Any, type_: FieldType) -> Any:
    if isinstance(value, bool):
        return not value
    if type_ is FieldType.INT and value in (0, 1):
        return 1 - int(value)
    if isinstance(value, int | float):
        return value + 1
    return value  # a string label: re-sent unchanged (still counted as a resend)


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _doc_contract() -> Contract:  # for the module's doctest only
    from etl.contract import parse_contract

    return parse_contract(
        {
            "name": "doc",
            "version": 1,
            "partition_key": "pk",
            "fields": [
                {"name": "id", "type": "string", "role": "id"},
                {"name": "pk", "type": "string", "role": "attribute"},
                {"name": "t", "type": "timestamp", "role": "event_time"},
                {"name": "x", "type": "float", "role": "feature"},
                {"name": "y", "type": "bool", "role": "label", "required": False, "nullable": True},
                {
                    "name": "kind",
                    "type": "string",
                    "role": "attribute",
                    "required": False,
                    "nullable": True,
                },
                {
                    "name": "labelled_at",
                    "type": "timestamp",
                    "role": "attribute",
                    "required": False,
                    "nullable": True,
                },
            ],
            "labels": {"arrival": "late", "kind_field": "kind", "time_field": "labelled_at"},
        }
    )


__all__ = ["LabelPlan", "LabelPut", "LateLabels", "late_contract", "plan_labels"]
