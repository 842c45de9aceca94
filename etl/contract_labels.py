"""How a contract's label arrives: inline on every record (the default), or late, as own records.

A production stream rarely carries the truth with the record: a card transaction is known to be
fraud days later. The contract's optional ``[labels]`` table says so::

    [labels]
    arrival = "late"              # "inline" (default): the label field rides on each record
    kind_field = "record_kind"    # late on the same stream: the field naming a record's kind ...
    label_kind = "label"          # ... and its value on label records (others are predictions)
    time_field = "labelled_at"    # optional: the label's own time (else its arrival time)
    horizon_s = 604800            # how long a prediction waits for its label (then: unlabelled)
    # stream = "card-labels"      # or: labels on a second stream (instead of kind_field)

A label record carries the contract's id field (the join key), its partition key (so it lands on
the shard its prediction's record did), the label field and, when declared, the kind and time
fields. A contract without ``[labels]`` is unchanged: same dict, same hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from etl.exceptions import ContractError

DEFAULT_HORIZON_S = 7 * 24 * 3600.0


class LabelArrival(StrEnum):
    INLINE = "inline"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """The ``[labels]`` table, validated."""

    arrival: LabelArrival = LabelArrival.INLINE
    kind_field: str | None = None
    label_kind: str = "label"
    time_field: str | None = None
    stream: str | None = None
    horizon_s: float = DEFAULT_HORIZON_S

    @property
    def late(self) -> bool:
        return self.arrival is LabelArrival.LATE

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"arrival": self.arrival.value, "horizon_s": self.horizon_s}
        for key in ("kind_field", "time_field", "stream"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.kind_field is not None:
            out["label_kind"] = self.label_kind
        return out


_KNOWN = {"arrival", "kind_field", "label_kind", "time_field", "stream", "horizon_s"}


def parse_labels(raw: Any, source: str) -> LabelSpec:
    """Parse the ``[labels]`` table (``None``: inline); fields are checked by ``check_labels``."""
    if raw is None:
        return LabelSpec()
    where = f"{source}: [labels]"
    if not isinstance(raw, Mapping):
        raise ContractError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown}; allowed are {sorted(_KNOWN)}")
    try:
        arrival = LabelArrival(raw.get("arrival", "inline"))
    except ValueError:
        raise ContractError(
            f"{where}.arrival: got {raw.get('arrival')!r}, expected one of"
            f" {[a.value for a in LabelArrival]}"
        ) from None
    for key in ("kind_field", "label_kind", "time_field", "stream"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise ContractError(f"{where}.{key}: expected a non-empty string, got {raw[key]!r}")
    horizon = raw.get("horizon_s", DEFAULT_HORIZON_S)
    if isinstance(horizon, bool) or not isinstance(horizon, int | float) or horizon <= 0:
        raise ContractError(f"{where}.horizon_s: expected seconds > 0, got {horizon!r}")
    spec = LabelSpec(
        arrival=arrival,
        kind_field=raw.get("kind_field"),
        label_kind=raw.get("label_kind", "label"),
        time_field=raw.get("time_field"),
        stream=raw.get("stream"),
        horizon_s=float(horizon),
    )
    _check_shape(spec, where)
    return spec


def _check_shape(spec: LabelSpec, where: str) -> None:
    if not spec.late:
        extra = [k for k in ("kind_field", "time_field", "stream") if getattr(spec, k) is not None]
        if extra:
            raise ContractError(f'{where}: {extra} only apply to arrival = "late"; remove them')
        return
    if (spec.kind_field is None) == (spec.stream is None):
        raise ContractError(
            f"{where}: late labels arrive either on the same stream (set kind_field) or on a"
            " second stream (set stream), exactly one of the two"
        )


def check_labels(spec: LabelSpec, contract: Any) -> None:
    """Cross-check ``[labels]`` against the contract's fields (called by ``Contract``)."""
    if not spec.late:
        return
    where = f"contract {contract.name!r}: [labels]"
    label = contract.label
    if label is None:
        raise ContractError(f'{where}: arrival = "late" needs a field with role "label"')
    if label.required and not label.nullable:
        raise ContractError(
            f"{where}: prediction records do not carry the late label {label.name!r}; declare it"
            " required = false, nullable = true"
        )
    _check_field(contract, where, spec.kind_field, "string", "kind_field")
    _check_field(contract, where, spec.time_field, "timestamp", "time_field")


def _check_field(contract: Any, where: str, name: str | None, type_: str, key: str) -> None:
    if name is None:
        return
    names = {f.name: f for f in contract.fields}
    f = names.get(name)
    if f is None:
        raise ContractError(
            f"{where}.{key}: {name!r} is not a field; choose one of {sorted(names)}"
        )
    if f.type.value != type_ or f.role.value != "attribute":
        raise ContractError(
            f'{where}.{key}: {name!r} must be a {type_} field with role "attribute" (not a'
            f" model input), it is a {f.type.value} {f.role.value}"
        )
