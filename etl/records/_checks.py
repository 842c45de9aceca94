"""The contract's value rules and the one wording of each problem, whichever path finds it.

Type rules: strings take JSON strings; bools take ``true``/``false`` only; ints take JSON integers
(an integral float such as ``3.0`` is accepted, ``3.5`` and ``true`` are not); floats take integers
and floats (not bools; ``NaN``/``Infinity`` tokens are not JSON and fail as ``malformed_json``);
timestamps take ISO-8601 strings with ``Z`` or an offset (naive means UTC), parsed by Arrow on both
paths so that both accept exactly the same text.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from etl.contract import Field, FieldType
from etl.records._types import Problem, Reason

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TS_UTC = pa.timestamp("us", tz="UTC")
_TS_NAIVE = pa.timestamp("us")

#: The Python types ``json.loads`` gives for a JSON value each field type takes.
ALLOWED_TYPES: dict[FieldType, frozenset[type]] = {
    FieldType.STRING: frozenset({str}),
    FieldType.INT: frozenset({int}),
    FieldType.FLOAT: frozenset({int, float}),
    FieldType.BOOL: frozenset({bool}),
    FieldType.TIMESTAMP: frozenset({str}),
}
_EXPECTED: dict[FieldType, str] = {
    FieldType.STRING: "a JSON string",
    FieldType.INT: "a JSON integer",
    FieldType.FLOAT: "a JSON number",
    FieldType.BOOL: "true or false",
    FieldType.TIMESTAMP: "an ISO-8601 timestamp string",
}
_JSON_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


# -- one non-null value, as json.loads gives it -------------------------------------------------


def check_value(f: Field, value: Any) -> tuple[Any, Problem | None]:
    """``value`` as the column holds it (an int for an integral float, a double for a float
    field's integer) and the first problem with it, or None."""
    if type(value) not in ALLOWED_TYPES[f.type]:
        if f.type is FieldType.INT and type(value) is float and value.is_integer():
            value = int(value)
        else:
            return None, wrong_type(f, value)
    if f.type is FieldType.FLOAT:
        return _check_float(f, value)
    if f.type is FieldType.INT:
        return value, _check_int(f, value)
    if f.type is FieldType.BOOL:
        return value, None
    problem = _check_text(f, value)
    if problem is None and f.allowed is not None and value not in f.allowed:
        problem = not_allowed(f, value)
    return value, problem


def _check_int(f: Field, value: int) -> Problem | None:
    if not INT64_MIN <= value <= INT64_MAX:
        return over_int64(f, value)
    return _check_bounds(f, value)


def _check_float(f: Field, value: int | float) -> tuple[Any, Problem | None]:
    try:
        x = float(value)  # an integer past 2**53 takes the nearest double, as JSON readers do
    except OverflowError:
        return None, over_double(f, value)
    if not math.isfinite(x):
        return x, not_finite(f, value)
    return x, _check_bounds(f, x)


def _check_text(f: Field, value: str) -> Problem | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # "\ud800": a lone surrogate escape
        return bad_unicode(f, value)
    return None


def _check_bounds(f: Field, value: int | float) -> Problem | None:
    if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
        return outside(f, value)
    return None


def check_null(f: Field, obj: dict[str, Any]) -> Problem | None:
    """The problem with ``f`` being missing from or null in ``obj``, or None when that is fine."""
    if f.name not in obj:
        return missing_required(f) if f.required else None
    return None if f.nullable else null_not_allowed(f)


# -- timestamps (both paths) --------------------------------------------------------------------


def parse_timestamps(arr: pa.Array) -> tuple[pa.Array, list[int]]:
    """Parse a string array; on failure, bisect to find the unparseable positions (nulled)."""
    try:
        return _cast_timestamps(arr), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(arr) == 1:
            return pa.nulls(1, TS_UTC), [0]
    mid = len(arr) // 2
    left, bad_left = parse_timestamps(arr.slice(0, mid))
    right, bad_right = parse_timestamps(arr.slice(mid))
    merged = pa.concat_arrays([left, right])
    return merged, bad_left + [mid + b for b in bad_right]


def _cast_timestamps(arr: pa.Array) -> pa.Array:
    """ISO-8601 strings to UTC microseconds: zone-aware first, else naive (taken as UTC)."""
    try:
        return pc.cast(arr, TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(pc.cast(arr, _TS_NAIVE), TS_UTC)


# -- one wording per problem --------------------------------------------------------------------


def oversize(size: int, limit: int) -> Problem:
    return Reason.OVERSIZE, f"{size} bytes > max_record_bytes={limit}"


def non_utf8(exc: UnicodeDecodeError) -> Problem:
    return Reason.NON_UTF8, f"invalid UTF-8 at byte {exc.start}: {exc.reason}"


def not_an_object(value: Any) -> Problem:
    return Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_kind(value)} {_show(value)}"


def wrong_type(f: Field, value: Any) -> Problem:
    got = f"{_kind(value)} {_show(value)}"
    return Reason.WRONG_TYPE, f"{f.name}: expected {_EXPECTED[f.type]}, got {got}"


def missing_required(f: Field) -> Problem:
    return Reason.MISSING_REQUIRED, f"{f.name}: required field is missing"


def null_not_allowed(f: Field) -> Problem:
    return Reason.NULL_NOT_ALLOWED, f"{f.name}: null is not allowed"


def not_allowed(f: Field, value: Any) -> Problem:
    return (
        Reason.NOT_ALLOWED_VALUE,
        f"{f.name}: {_show(value)} is not one of {list(f.allowed or ())}",
    )


def not_finite(f: Field, value: Any) -> Problem:
    return Reason.OUT_OF_RANGE, f"{f.name}: {_show(value)} is not a finite number"


def outside(f: Field, value: Any) -> Problem:
    return Reason.OUT_OF_RANGE, f"{f.name}: {value!r} is outside {_bounds(f)}"


def over_int64(f: Field, value: int) -> Problem:
    return Reason.OUT_OF_RANGE, f"{f.name}: {value} does not fit a 64-bit integer"


def over_double(f: Field, value: int | float) -> Problem:
    return Reason.OUT_OF_RANGE, f"{f.name}: {_show(value)} does not fit a double"


def bad_unicode(f: Field, value: str) -> Problem:
    return Reason.NON_UTF8, f"{f.name}: {_show(value)} is not valid Unicode"


def _kind(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounds(f: Field) -> str:
    low = "-inf" if f.min is None else f"{f.min:g}"
    high = "+inf" if f.max is None else f"{f.max:g}"
    return f"[{low}, {high}]"
