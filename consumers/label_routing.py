"""Label records routed by their kind BEFORE validation (late labels on the same stream).

A contract with ``[labels] arrival = "late"`` and ``kind_field`` shares its stream between data
records and label records. A label record carries the id, the partition key, the label and maybe
the label's time, none of the features a data record must carry: validated as data it would be
dead-lettered. So :class:`LabelRouter` takes them out first. Only a payload that mentions the kind
field's name is parsed (a byte search rules the rest out cheaply); one whose kind is the contract's
``label_kind`` is a label record, everything else stays data (and meets the decoder, which words
any defect). A label record missing its id or label, or with a label or time of the wrong type,
becomes a dead letter with a reason and a detail naming the field, like any bad record.

>>> from etl.contract import load_contract
>>> from etl.records import RawRecord
>>> r = LabelRouter(load_contract("tests/contracts/parcel_late_labels.toml"))
>>> out = r.split([RawRecord(b'{"parcel_id":"a","depot":"d","delivered_late":true,'
...     b'"record_kind":"label","labelled_at":"2026-01-01T00:00:10Z"}', "1", "d"),
...     RawRecord(b'{"parcel_id":"b"}', "2", "d")], "shardId-0")
>>> [d.sequence_number for d in out.data], out.labels.ids, out.labels.labels, out.labels.times
(['2'], ['a'], [1.0], [1767225610.0])
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from etl.contract import Contract, FieldType
from etl.records import DeadLetter, RawRecord, Reason

_DATA = operator.attrgetter("data")
_DECODE = msgspec.json.Decoder().decode


@dataclass(slots=True)
class LabelRows:
    """Label records of a batch, in stream order: id, label (as a float), time (epoch s), and
    each record's sequence number and arrival (ms; its identity in the lake's labels table)."""

    ids: list[str] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    arrivals_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class Routed:
    """One batch split: data records (for the decoder), label rows, bad label records."""

    data: list[RawRecord]
    labels: LabelRows
    dead_letters: list[DeadLetter]


class LabelError(ValueError):
    """A label record's defect: its dead-letter reason and detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class LabelRouter:
    """Splits batches of a late-label contract (``[labels] kind_field``) by record kind."""

    def __init__(self, contract: Contract) -> None:
        spec, label = contract.labels, contract.label
        if not spec.late or spec.kind_field is None or label is None:
            raise ValueError(
                f"contract {contract.name!r} has no late labels on its own stream"
                ' ([labels] arrival = "late", kind_field)'
            )
        self.kind_field, self.label_kind = spec.kind_field, spec.label_kind
        # the quoted name without its closing quote: a rare last byte lets the search skip ahead
        self.needle = json.dumps(spec.kind_field, ensure_ascii=False).encode()[:-1]
        self.id_field = contract.id_field.name
        self.label_field, self.label_type = label.name, label.type
        self.time_field = spec.time_field
        self.routed_labels = 0

    def split(
        self, records: Sequence[RawRecord], shard_id: str, *, now_s: float | None = None
    ) -> Routed:
        """Data records in order, and the label records' rows or dead letters."""
        hits = self._mentions(records)
        if not hits:  # no record mentions the kind field: nothing parsed
            return Routed(list(records), LabelRows(), [])
        out = Routed([], LabelRows(), [])
        for i, r in enumerate(records):
            doc = self._label_doc(r.data) if i in hits else None
            if doc is None:
                out.data.append(r)
                continue
            try:
                key, value, when = self._parse(doc, r, now_s)
            except LabelError as exc:
                out.dead_letters.append(DeadLetter.of(r, (exc.reason, str(exc)), shard_id))
                continue
            out.labels.ids.append(key)
            out.labels.labels.append(value)
            out.labels.times.append(when)
            out.labels.sequences.append(r.sequence_number)
            out.labels.arrivals_ms.append(r.approximate_arrival_ms)
        self.routed_labels += len(out.labels)
        return out

    def _mentions(self, records: Sequence[RawRecord]) -> set[int]:
        """Positions of the records whose payload contains the quoted kind field name: one
        search over the batch joined (a search per record costs twice as much), each hit mapped
        to its record by the payloads' end offsets (the needle holds no separator)."""
        datas = list(map(_DATA, records))
        joined = b"\n".join(datas)
        pos = joined.find(self.needle)
        if pos < 0:
            return set()
        ends = list(itertools.accumulate(len(d) + 1 for d in datas))
        hits: set[int] = set()
        while pos >= 0:
            i = bisect.bisect_right(ends, pos)
            hits.add(i)
            pos = joined.find(self.needle, ends[i])
        return hits

    def _label_doc(self, data: bytes) -> dict[str, Any] | None:
        try:
            doc = _DECODE(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None  # the decoder dead-letters it as data, with its own wording
        if not isinstance(doc, dict) or doc.get(self.kind_field) != self.label_kind:
            return None
        return doc

    def _parse(
        self, doc: dict[str, Any], r: RawRecord, now_s: float | None
    ) -> tuple[str, float, float]:
        key = doc.get(self.id_field)
        if key is None or key == "" or isinstance(key, bool | dict | list):
            raise LabelError(
                Reason.MISSING_REQUIRED,
                f"label record: id field {self.id_field!r} is missing or empty (got {key!r});"
                " a label record carries its prediction's id",
            )
        return str(key), self._label(doc), self._time(doc, r, now_s)

    def _label(self, doc: dict[str, Any]) -> float:
        name = self.label_field
        if name not in doc or doc[name] is None:
            raise LabelError(
                Reason.MISSING_REQUIRED,
                f"label record: label field {name!r} is missing or null; a label record"
                " carries the label",
            )
        v = doc[name]
        if self.label_type is FieldType.BOOL:
            ok = isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))
        elif self.label_type is FieldType.INT:
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
        if not ok or not math.isfinite(float(v)):
            raise LabelError(
                Reason.WRONG_TYPE,
                f"label record: label field {name!r} is {v!r}, expected a"
                f" {self.label_type.value} (the contract's label type)",
            )
        return float(v)

    def _time(self, doc: dict[str, Any], r: RawRecord, now_s: float | None) -> float:
        raw = doc.get(self.time_field) if self.time_field else None
        if raw is None:
            if r.approximate_arrival_ms is not None:
                return r.approximate_arrival_ms / 1000.0
            return datetime.now(UTC).timestamp() if now_s is None else now_s
        try:
            t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            t = None
        if t is None or not isinstance(raw, str):
            raise LabelError(
                Reason.WRONG_TYPE,
                f"label record: time field {self.time_field!r} is {raw!r}, expected an ISO-8601"
                " timestamp",
            )
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
