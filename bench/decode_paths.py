"""The decoder's two paths on the same batches: the msgspec fast path against the reference path.

    python -m bench.decode_paths [--records N] [--batch B] [--repeats R] [--strict] [--json]

Both decode the records of ``bench.consumer_core`` (~1 KB, 0.5% poison) in KCL-sized batches, one
CPU, best of R runs: ``RecordDecoder(contract)`` (the fast path; the reference path judges only
what it cannot vouch for) and ``RecordDecoder(contract, fast_path=False)`` (every record by the
reference path: ``json.loads`` and value-by-value checks). Both must give the same rows and dead
letters. The figure says what a batch costs when the fast path cannot take it, and why the fast
path exists; no target.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import UTC, datetime

from bench.consumer_core import BATCH, SHARD, _pin_one_core, make_records
from etl.contract import load_contract
from etl.records import DecodedBatch, RawRecord, RecordDecoder


def best_time(
    decoder: RecordDecoder, records: list[RawRecord], batch: int, repeats: int, now: datetime
) -> tuple[float, list[DecodedBatch]]:
    """Best wall seconds of ``repeats`` runs over all batches, and the last run's output."""
    best, out = float("inf"), []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        out = [
            decoder.decode(records[lo : lo + batch], shard_id=SHARD, ingest_time=now)
            for lo in range(0, len(records), batch)
        ]
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_paths", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=BATCH, help="records per decode call")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs per path")
    parser.add_argument(
        "--strict", action="store_true", help="no target: exits 1 when the paths disagree anyway"
    )
    parser.add_argument("--json", action="store_true", help="also print one JSON line of results")
    args = parser.parse_args(argv)
    _pin_one_core()
    contract = load_contract()
    records = make_records(args.records)
    now = datetime.now(UTC)  # one ingest time, so that both paths' tables can be compared
    fast = RecordDecoder(contract)
    fast_s, fast_out = best_time(fast, records, args.batch, args.repeats, now)
    ref = RecordDecoder(contract, fast_path=False)
    ref_s, ref_out = best_time(ref, records, args.batch, args.repeats, now)
    same = all(
        f.table.equals(r.table) and f.dead_letters == r.dead_letters
        for f, r in zip(fast_out, ref_out, strict=True)
    )
    n = len(records)
    fast_us, ref_us = fast_s / n * 1e6, ref_s / n * 1e6
    print(f"decode paths: {n} records in batches of {args.batch}, one CPU, best of {args.repeats}")
    print(f"  fast path (msgspec):       {fast_us:6.2f} us/record")
    print(f"  reference path (alone):    {ref_us:6.2f} us/record ({ref_us / fast_us:.1f}x)")
    print(f"  same rows and dead letters: {same}")
    if args.json:
        result = {
            "bench": "decode_paths",
            "records": n,
            "batch": args.batch,
            "repeats": args.repeats,
            "fast_us_per_record": round(fast_us, 3),
            "reference_us_per_record": round(ref_us, 3),
            "ratio": round(ref_us / fast_us, 2),
            "same_output": same,
        }
        print(json.dumps(result))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
