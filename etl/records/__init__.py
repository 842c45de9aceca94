"""Decode and validate a batch of Kinesis records into an Arrow table plus dead letters.

This is the consumer's hot path, and it has two ways through:

* the **fast path** (``_fast.py``): msgspec decodes each payload straight into the contract's
  fields in C, refusing what the contract refuses, and the rows become Arrow columns in one call;
* the **reference path** (``_reference.py``): ``json.loads`` per record, then every value checked
  on its own; it judges whatever the fast path cannot vouch for, and words every problem.

The fast path may reject, never accept, what the reference path rejects, and the rows, dead letters
and details are the same whichever path a record takes (the tests decode every edge case both
ways). The type rules and the one wording of each problem live in ``_checks.py``; the record,
dead-letter and batch types in ``_types.py``; :class:`RecordDecoder` (``_decoder.py``) runs both
paths and adds the lake's metadata columns.

Every bad record becomes exactly one :class:`DeadLetter` carrying the first problem found: payload
problems first (``oversize``, ``non_utf8``, ``malformed_json``, ``not_an_object``), then field
problems in contract order. Fields the contract does not know are ignored (counted in debug logs).

>>> from datetime import UTC, datetime
>>> from etl.contract import load_contract
>>> dec = RecordDecoder(load_contract())
>>> batch = dec.decode([RawRecord(b"{", "1", "k")], shard_id="shardId-0",
...                    ingest_time=datetime(2026, 1, 1, tzinfo=UTC))
>>> batch.table.num_rows, batch.dead_letters[0].reason
(0, 'malformed_json')
"""

from etl.records._decoder import RecordDecoder
from etl.records._types import DeadLetter, DecodedBatch, RawRecord, Reason, letter_head

__all__ = [
    "DeadLetter",
    "DecodedBatch",
    "RawRecord",
    "Reason",
    "RecordDecoder",
    "letter_head",
]
