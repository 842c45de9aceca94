"""Seeded synthetic card transactions for the shipped contract, with a drift scenario and poison.

Two scenarios:

* ``stationary``: one fixed world. Fraud is a high amount, far from home, at night.
* ``drift``: records before ``drift_at`` (a fraction of ``n``) come from the stationary world; the
  rest come from a shifted one: higher amounts, more online/electronics spending and a new
  ``digital_goods`` category, a new ``wearable`` device, more foreign countries, longer distances,
  and a *different label relation*: fraud becomes small ``digital_goods`` purchases from a
  ``wearable``, while the old pattern stops predicting it. A model trained before the drift ranks
  post-drift fraud badly; one retrained on post-drift data recovers.

The same ``(n, seed, scenario, drift_at, start, events_per_second)`` always gives the same rows.
``hour`` is the cardholder's local hour of the purchase (a feature), independent of ``event_time``
(the stream's clock, advancing by ``1 / events_per_second``).

>>> recs = generate_records(3, seed=7)
>>> recs[0]["event_time"], recs[1]["event_time"]
('2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.020000Z')
>>> generate_records(3, seed=7) == recs
True
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.contract import Contract, load_contract


class Scenario(StrEnum):
    STATIONARY = "stationary"
    DRIFT = "drift"


DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
CARD_POOL = 5_000
DISTANCE_NULL_RATE = 0.02

MERCHANTS = (
    "grocery",
    "restaurant",
    "gas",
    "online_retail",
    "travel",
    "electronics",
    "entertainment",
    "pharmacy",
    "digital_goods",
)
_MERCHANT_P_BEFORE = (0.24, 0.18, 0.12, 0.14, 0.05, 0.06, 0.09, 0.12, 0.0)
_MERCHANT_P_AFTER = (0.10, 0.08, 0.06, 0.22, 0.05, 0.14, 0.07, 0.06, 0.22)

DEVICES = ("mobile", "desktop", "pos_terminal", "tablet", "wearable")
_DEVICE_P_BEFORE = (0.35, 0.15, 0.42, 0.08, 0.0)
_DEVICE_P_AFTER = (0.30, 0.10, 0.20, 0.05, 0.35)

COUNTRIES = ("US", "CA", "GB", "MX", "DE", "FR", "BR", "NG", "IN", "PH")
_COUNTRY_P_BEFORE = (0.90, 0.03, 0.02, 0.02, 0.015, 0.015, 0.0, 0.0, 0.0, 0.0)
_COUNTRY_P_AFTER = (0.60, 0.04, 0.04, 0.05, 0.03, 0.03, 0.06, 0.05, 0.06, 0.04)

# Hour of day: mostly daytime; ~15% at night (0-5h) before the drift.
_HOUR_W_BEFORE = np.array(
    [2, 2, 1.5, 1.5, 1.5, 2, 3, 4, 5, 6, 6, 7, 8, 7, 6, 6, 6, 7, 7, 6, 5, 4, 3, 2.5]
)
_HOUR_W_AFTER = np.array([3, 3, 3, 3, 3, 3, 3, 4, 4, 5, 5, 5, 6, 5, 5, 5, 5, 5, 6, 6, 6, 5, 4, 3.5])

POISON_KINDS = ("malformed_json", "wrong_type", "missing_required", "non_utf8", "oversize")


@dataclass(frozen=True, slots=True)
class _Columns:
    """The generated rows, column-wise (one source for records and frames)."""

    transaction_id: list[str]
    card_id: list[str]
    event_time_us: np.ndarray  # int64 microseconds since the epoch (UTC)
    amount: np.ndarray
    merchant_category: np.ndarray
    hour: np.ndarray
    distance_from_home_km: np.ndarray  # NaN = null
    device: np.ndarray
    country: np.ndarray
    is_fraud: np.ndarray


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _transaction_ids(seed: int, n: int) -> list[str]:
    """UUID-shaped ids from (seed, index): unique across runs with different seeds."""
    ids = []
    for i in range(n):
        h = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).hexdigest()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def _generate(
    n: int,
    *,
    seed: int,
    scenario: Scenario,
    drift_at: float,
    start: datetime | None,
    events_per_second: float,
) -> _Columns:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= drift_at <= 1.0:
        raise ValueError(f"drift_at is a fraction of n in [0, 1], got {drift_at}")
    if events_per_second <= 0:
        raise ValueError(f"events_per_second must be > 0, got {events_per_second}")
    scenario = Scenario(scenario)
    start = DEFAULT_START if start is None else start
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    rng = np.random.default_rng(seed)

    idx = np.arange(n)
    drifted = idx >= round(drift_at * n) if scenario is Scenario.DRIFT else np.zeros(n, dtype=bool)

    def pick(
        options: tuple[str, ...], p_before: tuple[float, ...], p_after: tuple[float, ...]
    ) -> np.ndarray:
        before = rng.choice(len(options), size=n, p=np.asarray(p_before) / sum(p_before))
        after = rng.choice(len(options), size=n, p=np.asarray(p_after) / sum(p_after))
        return np.asarray(options, dtype=object)[np.where(drifted, after, before)]

    cards = rng.integers(0, CARD_POOL, size=n)
    amount = np.where(
        drifted, rng.lognormal(4.1, 1.1, size=n), rng.lognormal(3.5, 1.0, size=n)
    ).round(2)
    amount = np.maximum(amount, 0.01)
    merchant = pick(MERCHANTS, _MERCHANT_P_BEFORE, _MERCHANT_P_AFTER)
    hour = np.where(
        drifted,
        rng.choice(24, size=n, p=_HOUR_W_AFTER / _HOUR_W_AFTER.sum()),
        rng.choice(24, size=n, p=_HOUR_W_BEFORE / _HOUR_W_BEFORE.sum()),
    ).astype(np.int64)
    distance = np.where(
        drifted, rng.exponential(60.0, size=n), rng.exponential(15.0, size=n)
    ).round(3)
    distance[rng.random(n) < DISTANCE_NULL_RATE] = np.nan
    device = pick(DEVICES, _DEVICE_P_BEFORE, _DEVICE_P_AFTER)
    country = pick(COUNTRIES, _COUNTRY_P_BEFORE, _COUNTRY_P_AFTER)

    # Label relations. Before: big, far, at night. After: small digital goods from a wearable.
    log_amount = np.log(amount)
    far = np.nan_to_num(distance, nan=0.0) > 40.0
    night = hour < 5
    z_before = -4.7 + 1.3 * (log_amount - 3.5) + 2.4 * far + 2.2 * night
    z_before = z_before + 1.8 * (log_amount > 5.0)
    combo = (device == "wearable") & (merchant == "digital_goods")
    small = amount < 40.0
    z_after = -4.8 + 3.6 * combo + 2.0 * small + 1.6 * (combo & small) - 0.9 * (log_amount - 4.1)
    z_after = z_after - 1.0 * far - 0.8 * night
    p = _sigmoid(np.where(drifted, z_after, z_before))
    is_fraud = rng.random(n) < p

    start_us = int(start.timestamp() * 1_000_000)
    step_us = 1_000_000 / events_per_second
    event_time_us = start_us + np.floor(idx * step_us).astype(np.int64)

    return _Columns(
        transaction_id=_transaction_ids(seed, n),
        card_id=[f"card-{c:05d}" for c in cards.tolist()],
        event_time_us=event_time_us,
        amount=amount,
        merchant_category=merchant,
        hour=hour,
        distance_from_home_km=distance,
        device=device,
        country=country,
        is_fraud=is_fraud,
    )


def generate_records(
    n: int,
    *,
    seed: int = 0,
    scenario: Scenario = Scenario.STATIONARY,
    drift_at: float = 0.5,
    start: datetime | None = None,
    events_per_second: float = 50.0,
) -> list[dict[str, Any]]:
    """``n`` JSON-ready transaction dicts (``event_time`` as ISO-8601 UTC with ``Z``)."""
    c = _generate(
        n,
        seed=seed,
        scenario=scenario,
        drift_at=drift_at,
        start=start,
        events_per_second=events_per_second,
    )
    times = np.datetime_as_string(c.event_time_us.astype("datetime64[us]"), unit="us")
    distance = [None if math.isnan(d) else d for d in c.distance_from_home_km.tolist()]
    return [
        {
            "transaction_id": tid,
            "card_id": card,
            "event_time": f"{t}Z",
            "amount": amt,
            "merchant_category": mc,
            "hour": hr,
            "distance_from_home_km": dist,
            "device": dev,
            "country": ctry,
            "is_fraud": fraud,
        }
        for tid, card, t, amt, mc, hr, dist, dev, ctry, fraud in zip(
            c.transaction_id,
            c.card_id,
            times.tolist(),
            c.amount.tolist(),
            c.merchant_category.tolist(),
            c.hour.tolist(),
            distance,
            c.device.tolist(),
            c.country.tolist(),
            c.is_fraud.tolist(),
            strict=True,
        )
    ]


def generate_frame(
    n: int,
    *,
    seed: int = 0,
    scenario: Scenario = Scenario.STATIONARY,
    drift_at: float = 0.5,
    start: datetime | None = None,
    events_per_second: float = 50.0,
    contract: Contract | None = None,
) -> pd.DataFrame:
    """The same rows as :func:`generate_records`, typed per the contract (``event_time`` UTC)."""
    contract = contract or _default_contract()
    c = _generate(
        n,
        seed=seed,
        scenario=scenario,
        drift_at=drift_at,
        start=start,
        events_per_second=events_per_second,
    )
    arrays: dict[str, pa.Array] = {
        "transaction_id": pa.array(c.transaction_id, pa.string()),
        "card_id": pa.array(c.card_id, pa.string()),
        "event_time": pa.array(c.event_time_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "amount": pa.array(c.amount, pa.float64()),
        "merchant_category": pa.array(c.merchant_category.tolist(), pa.string()),
        "hour": pa.array(c.hour, pa.int64()),
        "distance_from_home_km": pa.array(c.distance_from_home_km, pa.float64(), from_pandas=True),
        "device": pa.array(c.device.tolist(), pa.string()),
        "country": pa.array(c.country.tolist(), pa.string()),
        "is_fraud": pa.array(c.is_fraud, pa.bool_()),
    }
    schema = contract.arrow_schema(with_metadata=False)
    table = pa.table([arrays[f.name] for f in schema], schema=schema)
    frame: pd.DataFrame = table.to_pandas()
    return frame


# -- encoding and poison ------------------------------------------------------------------------


@functools.cache
def _default_contract() -> Contract:
    return load_contract()


def encode_record(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as the producer puts it on the stream."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_WRONG_TYPES: dict[str, tuple[Any, ...]] = {
    "string": (42, True, 3.5, ["x"], {"v": "x"}),
    "int": ("7", 7.5, True, [7]),
    "float": ("12.50", True, [1.0], {"v": 1.0}),
    "bool": ("yes", 1, 0.0, "true"),
    "timestamp": (1767225600, True, 3.5),
}


def make_poison(
    kind: str, rng: np.random.Generator, record: dict[str, Any], *, contract: Contract | None = None
) -> bytes:
    """A payload built from ``record`` that has exactly the defect ``kind`` (see ``POISON_KINDS``).

    ``oversize`` is valid JSON of a valid record padded past ``contract.max_record_bytes`` but under
    Kinesis' 1 MiB record limit.
    """
    contract = contract or _default_contract()
    if kind == "malformed_json":
        text = encode_record(record)
        cut = int(rng.integers(1, max(2, len(text) // 2)))
        return text[:-cut]  # a truncated object never parses
    if kind == "wrong_type":
        fld = contract.fields[int(rng.integers(0, len(contract.fields)))]
        options = _WRONG_TYPES[fld.type.value]
        return encode_record({**record, fld.name: options[int(rng.integers(0, len(options)))]})
    if kind == "missing_required":
        required = [f.name for f in contract.fields if f.required]
        name = required[int(rng.integers(0, len(required)))]
        return encode_record({k: v for k, v in record.items() if k != name})
    if kind == "non_utf8":
        text = encode_record(record)
        bad = bytes([0xFF, 0xFE, int(rng.integers(0x80, 0xC0))])  # never valid UTF-8
        anchor = text.index(b'":"') + 3  # inside the first string value
        return text[:anchor] + bad + text[anchor:]
    if kind == "oversize":
        limit = contract.max_record_bytes
        base = len(encode_record({**record, "padding": ""}))
        extra = int(rng.integers(1, 1024))
        pad_len = max(0, limit - base) + extra
        out = encode_record({**record, "padding": "x" * pad_len})
        if (
            len(out) >= 1024 * 1024
        ):  # pragma: no cover - only with a contract near the Kinesis limit
            raise ValueError(
                f"max_record_bytes={limit} leaves no room for an oversize record under 1 MiB"
            )
        return out
    raise ValueError(f"unknown poison kind {kind!r}; expected one of {POISON_KINDS}")


__all__ = [
    "POISON_KINDS",
    "Scenario",
    "encode_record",
    "generate_frame",
    "generate_records",
    "make_poison",
]
