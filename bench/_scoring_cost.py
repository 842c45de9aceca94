"""The consumer's optional scoring path, per record: ``bench/consumer_core.py --score``.

The same decoded batches as the core (``RecordDecoder.decode`` per KCL-sized batch) are scored by
``consumers.scoring.BatchScorer`` with a model trained here on synthetic records (the shipped
trainer, 2,000 rows, packed and extracted like a deploy: files + ``code/inference.py``). Timed on
one core, best of ``repeats``: decoding alone, and scoring alone (Arrow → pandas → encode →
``predict_proba``); the cost per record of each and their ratio.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.scoring import BatchScorer
from etl.contract import load_contract
from etl.records import RawRecord, RecordDecoder
from etl.synthetic import generate_frame
from retrain.artifacts import pack, unpack
from retrain.backends.local import write_pointer
from retrain.train import train


def _model(root: Path) -> Path:
    (root / "data").mkdir()
    generate_frame(2000, seed=5).to_parquet(root / "data" / "train.parquet")
    train(root / "data", root / "out", hyperparameters={"model_id": "bench"})
    return unpack(pack(root / "out", root / "m.tar.gz"), root / "cache" / "bench")


def measure(records: list[RawRecord], batch: int, repeats: int = 3) -> dict[str, Any]:
    decoder = RecordDecoder(load_contract())
    now = datetime.now(UTC)

    def decode() -> list[Any]:
        return [
            decoder.decode(records[lo : lo + batch], shard_id="s", ingest_time=now).table
            for lo in range(0, len(records), batch)
        ]

    with tempfile.TemporaryDirectory(prefix="driftline-score-") as tmp:
        model_dir = _model(Path(tmp))
        write_pointer(model_dir.parent, model_dir)
        scorer = BatchScorer(model_dir.parent / "CURRENT")
        tables = decode()
        scorer.score(tables[0])  # load once, outside the timing (as a running consumer has)
        best_decode = best_score = float("inf")
        scored = 0
        for _ in range(repeats):
            t = time.perf_counter()
            decode()
            best_decode = min(best_decode, time.perf_counter() - t)
            t = time.perf_counter()
            scored = sum(len(s.scores) for tb in tables if (s := scorer.score(tb)) is not None)
            best_score = min(best_score, time.perf_counter() - t)
    n = len(records)
    return {
        "records": n,
        "rows_scored": scored,
        "decode_us_per_record": best_decode / n * 1e6,
        "score_us_per_record": best_score / n * 1e6,
        "score_over_decode": best_score / best_decode,
    }
