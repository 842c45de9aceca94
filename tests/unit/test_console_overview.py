"""The overview's pure helpers: warehouse timestamps as either backend returns them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from infra.console.overview import _as_utc


@pytest.mark.parametrize(
    ("given", "want"),
    [
        # PostgreSQL (psycopg): an aware datetime, any zone
        (
            datetime(2026, 11, 27, 22, 0, tzinfo=timezone(timedelta(hours=1))),
            datetime(2026, 11, 27, 21, 0, tzinfo=UTC),
        ),
        # the Redshift Data API: text, without a zone (Redshift's GETDATE() is UTC)
        ("2026-11-27 21:00:00.123456", datetime(2026, 11, 27, 21, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-27T21:00:00+00:00", datetime(2026, 11, 27, 21, 0, tzinfo=UTC)),
        # nothing loaded yet, or text that is no timestamp: unknown, never an error
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_warehouse_timestamps_become_aware_utc(given: object, want: datetime | None) -> None:
    assert _as_utc(given) == want
