"""Column access for profiles and drift windows: a pyarrow Table/RecordBatch, a pandas DataFrame
or a mapping of arrays, read as Arrow (zero-copy where the input allows it), and the binned counts
of one column (numeric: ``searchsorted`` + ``bincount``; categorical: Arrow ``index_in``).

>>> counts, nulls = numeric_counts(np.array([0.5, 1.0, 2.5, np.nan]), [1.0, 2.0])
>>> counts.tolist(), nulls
([1, 1, 1], 1)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from etl.exceptions import BaselineError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def column_names(data: Any) -> list[str]:
    """The column names of a pyarrow Table, a pandas DataFrame or a mapping of arrays."""
    if isinstance(data, pa.Table | pa.RecordBatch):
        return list(data.schema.names)
    if isinstance(data, Mapping):
        return [str(k) for k in data]
    if hasattr(data, "columns"):  # pandas.DataFrame
        return [str(c) for c in data.columns]
    raise BaselineError(
        "expected a pyarrow Table, a pandas DataFrame or a mapping of arrays,"
        f" got {type(data).__name__}"
    )


def arrow_column(data: Any, name: str) -> pa.Array | pa.ChunkedArray:
    """One column as an Arrow array (zero-copy where the input allows it)."""
    if isinstance(data, pa.Table | pa.RecordBatch):
        return data.column(name)
    if not isinstance(data, Mapping) and hasattr(data, "columns"):  # pandas DataFrame
        return as_arrow(data[[name]]).column(0)
    col = data[name]
    if isinstance(col, pa.Array | pa.ChunkedArray):
        return col
    if hasattr(col, "to_numpy") and hasattr(col, "dtype"):  # pandas Series
        return pa.Array.from_pandas(col)
    arr = np.asarray(col)
    return pa.array(arr, from_pandas=arr.dtype.kind in "fO")


def as_arrow(data: Any) -> Any:
    """A pandas DataFrame as a pyarrow Table (converted once); anything else unchanged."""
    if isinstance(data, pa.Table | pa.RecordBatch | Mapping) or not hasattr(data, "columns"):
        return data
    with warnings.catch_warnings():
        # pyarrow reads tz-aware columns through Series.values, which pandas 3 deprecates
        warnings.filterwarnings("ignore", message=".*Series.values.*")
        return pa.Table.from_pandas(data, preserve_index=False)


def num_rows(data: Any) -> int:
    if isinstance(data, pa.Table | pa.RecordBatch):
        return int(data.num_rows)
    names = column_names(data)
    if hasattr(data, "shape") and not isinstance(data, Mapping):
        return int(data.shape[0])
    return len(data[names[0]]) if names else 0


def numeric_values(col: pa.Array | pa.ChunkedArray) -> FloatArray:
    """A numeric column as float64 with NaN for nulls (NaN and ±inf count as null)."""
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BaselineError(
                f"expected a numeric column, got Arrow type {col.type}; fix the data or the"
                " contract"
            ) from exc
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    out = col.to_numpy(zero_copy_only=False)
    return np.asarray(out, dtype=np.float64)


def categorical_values(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A categorical column as Arrow strings (bools become ``"true"``/``"false"``)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    if pa.types.is_dictionary(col.type):
        return pc.cast(col, pa.string())
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BaselineError(f"cannot read Arrow type {col.type} as a categorical column") from exc


def numeric_counts(values: FloatArray, edges: Sequence[float] | FloatArray) -> tuple[IntArray, int]:
    """(counts per bin, nulls) of ``values`` in the bins of ``edges``; NaN and ±inf are nulls."""
    nan = ~np.isfinite(values)
    nulls = int(nan.sum())
    valid = values[~nan] if nulls else values
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), valid, side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64), nulls


def categorical_counts(
    col: pa.Array | pa.ChunkedArray, categories: Sequence[str] | pa.Array
) -> tuple[IntArray, int]:
    """(counts per category then ``other``, nulls) of a string column, vectorised by Arrow."""
    k = len(categories)
    value_set = (
        categories if isinstance(categories, pa.Array) else pa.array(list(categories), pa.string())
    )
    idx = pc.index_in(col, value_set=value_set)
    nulls = int(col.null_count)
    filled = pc.fill_null(idx, k)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks != 1 else filled.chunk(0)
    counts = np.bincount(filled.to_numpy(zero_copy_only=False), minlength=k + 1).astype(np.int64)
    counts[k] -= nulls  # nulls were filled into the "other" slot
    return counts, nulls


def top_categories(col: pa.Array | pa.ChunkedArray, top_k: int) -> tuple[str, ...]:
    """The ``top_k`` most frequent non-null values; ties broken by value so the order is stable."""
    vc = pc.value_counts(col.drop_null() if isinstance(col, pa.Array) else pc.drop_null(col))
    values = vc.field("values").to_pylist()
    counts = vc.field("counts").to_pylist()
    ranked = sorted(zip(values, counts, strict=True), key=lambda vc: (-vc[1], str(vc[0])))
    return tuple(str(v) for v, _ in ranked[:top_k])
