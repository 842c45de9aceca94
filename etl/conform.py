"""One table to one schema: what the warehouse loader and the compactor do to every lake object.

An object written before a field was added lacks its column (a nullable one becomes nulls); a
type that changed is cast. Anything else is a :class:`~etl.exceptions.WarehouseError` naming the
object, the column and the fix.
"""

from __future__ import annotations

import pyarrow as pa

from etl.exceptions import WarehouseError


def conform(table: pa.Table, schema: pa.Schema, where: str = "<table>") -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing nullable ones are nulls, types cast."""
    arrays: list[pa.ChunkedArray | pa.Array] = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise WarehouseError(
                        f"{where}: column {field.name!r} has type {col.type}, which does not cast"
                        f" to the contract's {field.type} ({exc}); fix the contract or the object"
                    ) from None
            arrays.append(col)
        elif field.nullable:
            arrays.append(pa.nulls(table.num_rows, field.type))
        else:
            raise WarehouseError(
                f"{where}: required column {field.name!r} is missing; the object was written"
                " under another contract — make the field nullable or reload from a fixed lake"
            )
    return pa.Table.from_arrays(arrays, schema=schema)
