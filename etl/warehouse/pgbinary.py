"""PostgreSQL's binary COPY format, encoded from Arrow with numpy (no Python object per value).

Feeding ``COPY ... FROM STDIN (FORMAT BINARY)`` row by row through psycopg's ``write_row`` first
turns every Arrow value into a Python object (a ``datetime`` per timestamp), which costs more than
the COPY itself. Here each column is laid out in place: a row is a 16-bit field count, then per
field a 32-bit byte length (-1 for NULL) and the value in network byte order; positions come from
cumulative sums, and every column (strings included) is scattered into the output buffer by numpy.

Supported Arrow types → PostgreSQL: string → text/varchar, int64 → int8, float64 → float8,
bool → bool, timestamp (any unit, any tz) → timestamptz (microseconds since 2000-01-01 UTC).

>>> import pyarrow as pa
>>> body = encode_rows(pa.table({"n": pa.array([1, None], pa.int64())}))
>>> body.hex()
'00010000000800000000000000010001ffffffff'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.exceptions import WarehouseError

#: Signature, flags (no OIDs), header-extension length.
HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
#: Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_US = 946_684_800 * 1_000_000


def _fixed(arr: pa.Array) -> np.ndarray:
    """Big-endian bytes (n, width) of a fixed-width column; NULL slots hold zeros."""
    t = arr.type
    if pa.types.is_timestamp(t):
        us = arr.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64())
        vals = np.asarray(us.fill_null(0).to_numpy(zero_copy_only=False)) - PG_EPOCH_US
        dtype = ">i8"
    elif pa.types.is_integer(t):
        vals = np.asarray(arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False))
        dtype = ">i8"
    elif pa.types.is_floating(t):
        vals = np.asarray(arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False))
        dtype = ">f8"
    elif pa.types.is_boolean(t):
        vals = np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False))
        dtype = "u1"
    else:
        raise WarehouseError(f"binary COPY: no encoding for Arrow type {t}; cast the column first")
    out: np.ndarray = vals.astype(dtype).view(np.uint8).reshape(len(arr), -1)
    return out


@dataclass(frozen=True, slots=True)
class _Column:
    #: Data bytes of each non-NULL field (NULL fields have length 0 and wire length -1).
    lengths: np.ndarray
    nulls: np.ndarray | None
    fixed: np.ndarray | None = None
    data: np.ndarray | None = None
    starts: np.ndarray | None = None


def _column(arr: pa.Array) -> _Column:
    nulls = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False)) if arr.null_count else None
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
        offsets_buf, data_buf = arr.buffers()[1], arr.buffers()[2]
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        lengths = np.diff(offsets)
        if nulls is not None:
            lengths = np.where(nulls, 0, lengths)
        return _Column(lengths=lengths, nulls=nulls, data=data, starts=offsets[:-1])
    fixed = _fixed(arr)
    lengths = np.full(len(arr), fixed.shape[1], dtype=np.int64)
    if nulls is not None:
        lengths[nulls] = 0
    return _Column(lengths=lengths, nulls=nulls, fixed=fixed)


def encode_rows(table: pa.Table) -> bytes:
    """The rows of ``table`` in binary COPY format (without :data:`HEADER` / :data:`TRAILER`)."""
    n, ncols = table.num_rows, table.num_columns
    if n == 0:
        return b""
    cols = [_column(c.combine_chunks()) for c in table.columns]
    # bytes of every field including its 4-byte length, per row
    row_bytes = 2 + sum((4 + c.lengths for c in cols), np.zeros(n, dtype=np.int64))
    row_start = np.zeros(n, dtype=np.int64)
    np.cumsum(row_bytes[:-1], out=row_start[1:])
    out = np.zeros(int(row_bytes.sum()), dtype=np.uint8)
    out[row_start] = (ncols >> 8) & 0xFF
    out[row_start + 1] = ncols & 0xFF
    pos = row_start + 2  # where the current column's field starts, per row
    four = np.arange(4)
    for col in cols:
        wire_len = col.lengths if col.nulls is None else np.where(col.nulls, -1, col.lengths)
        out[pos[:, None] + four] = wire_len.astype(">i4").view(np.uint8).reshape(n, 4)
        body = pos + 4
        if col.fixed is not None:
            keep = col.lengths > 0
            out[body[keep][:, None] + np.arange(col.fixed.shape[1])] = col.fixed[keep]
        elif col.data is not None and col.starts is not None:
            total = int(col.lengths.sum())
            if total:
                first = np.cumsum(col.lengths) - col.lengths
                within = np.arange(total, dtype=np.int64) - np.repeat(first, col.lengths)
                src = np.repeat(col.starts, col.lengths) + within
                out[np.repeat(body, col.lengths) + within] = col.data[src]
        pos = body + col.lengths
    return out.tobytes()


def encode(table: pa.Table, chunk_rows: int = 65_536) -> list[bytes]:
    """A whole COPY stream for ``table`` as chunks: header, row chunks, trailer."""
    parts = [HEADER]
    for start in range(0, table.num_rows, chunk_rows):
        parts.append(encode_rows(table.slice(start, chunk_rows)))
    parts.append(TRAILER)
    return parts
