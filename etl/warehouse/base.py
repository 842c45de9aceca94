"""What every warehouse backend is: the :class:`Warehouse` protocol and its :class:`QueryResult`.

The loader (:mod:`etl.warehouse.loader`) and the backends (:mod:`etl.warehouse.postgres`,
:mod:`etl.warehouse.redshift`) both import this module and not each other, so a new backend
only has to satisfy the protocol below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from etl.warehouse.source import FlushManifest


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of a query as the CLI prints them: column names and tuples of values."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


class Warehouse(Protocol):
    """What the loader needs from a warehouse backend."""

    def ensure_tables(self) -> list[str]:
        """Create schema, table and ledger if missing; evolve the table; return the ALTERs run."""
        ...

    def loaded(self) -> dict[str, str]:
        """The ledger: manifest key → ETag of the version loaded."""
        ...

    def load(self, manifests: Sequence[FlushManifest]) -> int:
        """Load a batch in one transaction; return the rows newly inserted by the MERGE."""
        ...

    def query(self, sql: str) -> QueryResult: ...

    def close(self) -> None: ...
