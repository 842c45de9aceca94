"""When a shard's buffer is flushed to the lake: a pure policy over counts, bytes and age.

>>> policy = FlushPolicy(max_records=1000, max_bytes=1 << 20, max_age_s=30.0)
>>> policy.decide(records=10, nbytes=2048, age_s=31.0)
<FlushReason.AGE: 'age'>
>>> policy.decide(records=0, nbytes=0, age_s=99.0) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FlushReason(StrEnum):
    RECORDS = "records"
    BYTES = "bytes"
    AGE = "age"
    REPLAY = "replay"
    SHARD_END = "shard_end"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """Flush when any limit is reached; never flush an empty buffer."""

    max_records: int
    max_bytes: int
    max_age_s: float

    def __post_init__(self) -> None:
        if self.max_records <= 0 or self.max_bytes <= 0 or self.max_age_s <= 0:
            raise ValueError(f"flush limits must be positive, got {self}")

    def decide(self, *, records: int, nbytes: int, age_s: float) -> FlushReason | None:
        """``records`` counts good rows and dead letters alike: both must become durable."""
        if records <= 0:
            return None
        if records >= self.max_records:
            return FlushReason.RECORDS
        if nbytes >= self.max_bytes:
            return FlushReason.BYTES
        if age_s >= self.max_age_s:
            return FlushReason.AGE
        return None
