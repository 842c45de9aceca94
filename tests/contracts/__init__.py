"""Hand-written contracts of other domains, and seeded records for them (test helpers)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PARCEL_SCANS = Path(__file__).with_name("parcel_scans.toml")
#: the card contract with late labels on the same stream (record_kind = "label")
CARD_LATE_LABELS = Path(__file__).with_name("card_late_labels.toml")


def parcel_scans(n: int, *, seed: int = 5, start: datetime | None = None) -> list[dict[str, Any]]:
    """``n`` seeded parcel-scan records, valid under ``parcel_scans.toml``, one second apart."""
    rng = random.Random(seed)
    t0 = start or datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    return [
        {
            "scan_id": f"scan-{seed}-{i:06d}",
            "parcel_id": f"p-{rng.randrange(500):04d}",
            "scanned_at": (t0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "weight_kg": round(rng.uniform(0.2, 30.0), 3),
            "depot": rng.choice(["ams", "ber", "lis", "waw"]),
            "hops": rng.randrange(0, 12),
            "damaged": rng.random() < 0.05,
        }
        for i in range(n)
    ]


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
