"""Run every benchmark script in ``bench/`` in turn: ``python -m bench [--strict] [--json]``.

Each ``bench/<name>.py`` runs as ``python -m bench.<name>`` in its own process (so pinning and
thread settings of one do not leak into the next) with the given arguments; the exit code is
non-zero if any of them failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def scripts() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    failed = []
    for name in scripts():
        print(f"== bench.{name}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}", *args])
        print(f"== bench.{name}: exit {rc} in {time.perf_counter() - t:.1f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
