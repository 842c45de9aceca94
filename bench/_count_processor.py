"""A count-only KCL record processor: the ceiling for ``bench/kcl_throughput.py``.

Launched by the same MultiLangDaemon the same way as ``consumers.app`` (``python -u -m
bench._count_processor`` through the launcher script). It is a real amazon_kclpy v3 processor: per
``process_records`` call it counts the records and checkpoints at the batch's last sequence number;
nothing is decoded or written anywhere else. The running count per shard goes to
``$DRIFTLINE_BENCH_COUNT_DIR/<shard>.count`` (atomic replace) so the bench can check that every
record was delivered. Like ``consumers.app`` it logs ``{"msg": "initialized", "shard": ...}`` to
stderr (stdout is the daemon protocol).

The leading underscore keeps ``python -m bench`` from running it as a benchmark.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


class CountProcessor:
    """amazon_kclpy v3 processor interface: count, checkpoint each batch's last record."""

    version = 3

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.shard_id = ""
        self.count = 0

    def _log(self, msg: str, **extra: Any) -> None:
        doc = {"msg": msg, "shard": self.shard_id, "pid": os.getpid(), **extra}
        sys.stderr.write(json.dumps(doc) + "\n")
        sys.stderr.flush()

    def _save(self) -> None:
        if self.out_dir is None:
            return
        path = self.out_dir / f"{self.shard_id}.count"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(self.count))
        os.replace(tmp, path)

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = str(initialize_input.shard_id)
        self._log("initialized", checkpoint=initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        records = process_records_input.records
        if not records:
            return
        self.count += len(records)
        self._save()
        process_records_input.checkpointer.checkpoint(records[-1].sequence_number)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._log("lease lost", count=self.count)

    def shard_ended(self, shard_ended_input: Any) -> None:
        shard_ended_input.checkpointer.checkpoint(None)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._log("shutdown requested", count=self.count)


def main() -> None:
    from amazon_kclpy import kcl

    out = os.environ.get("DRIFTLINE_BENCH_COUNT_DIR")
    kcl.KCLProcess(CountProcessor(Path(out) if out else None)).run()


if __name__ == "__main__":
    main()
