"""Scoring the stream itself: each decoded batch scored with the model currently served.

For users whose predictions are made in batch from the stream rather than by callers of the
endpoint. The model is the one the model cache's pointer (``CURRENT``, which the local serving
backend and ``driftline deploy`` keep) names; it is loaded once and swapped when the pointer names
another version (checked at most every ``check_every_s``), in place, never half-loaded: the new
model loads completely before it replaces the old.

The model's own code scores it: a model directory carries ``code/inference.py`` (SageMaker's
``SAGEMAKER_PROGRAM``, see ``retrain/artifacts.py``), loaded from there like the endpoint's
container does, so the consumer imports nothing of the training side. Scoring is vectorised
(``encode_frame`` + one ``predict_proba`` per batch). Its cost per record is in
``bench/consumer_core.py --score``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

log = logging.getLogger("driftline.scoring")

CODE_FILE = Path("code") / "inference.py"


@dataclass(frozen=True, slots=True)
class Scored:
    """A batch's scores (one per row, in order) and the model version that made them."""

    scores: np.ndarray[Any, np.dtype[np.float64]]
    model_version: str


@dataclass(frozen=True, slots=True)
class _Loaded:
    model_dir: str
    module: ModuleType
    model: Any


def load_model(model_dir: str) -> _Loaded:
    """Load ``model_dir`` with its own ``code/inference.py`` (a fresh module per directory)."""
    code = Path(model_dir) / CODE_FILE
    if not code.is_file():
        raise FileNotFoundError(f"{code} is missing: a model directory carries its inference code")
    name = f"driftline_model_{abs(hash(model_dir)):x}"
    spec = importlib.util.spec_from_file_location(name, code)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {code}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return _Loaded(model_dir, module, module.model_fn(model_dir))


class BatchScorer:
    """Scores Arrow batches with the model the pointer file names; swaps when it changes."""

    def __init__(
        self,
        pointer: Path,
        *,
        check_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pointer = pointer
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._loaded: _Loaded | None = None
        self.swaps = 0
        self.errors = 0

    @property
    def model_version(self) -> str | None:
        return None if self._loaded is None else str(self._loaded.model.model_id)

    def refresh(self) -> None:
        """Re-read the pointer (at most every ``check_every_s``); load a new target fully, then
        swap. A failed load keeps the model already loaded."""
        now = self._clock()
        if now - self._checked_at < self.check_every_s:
            return
        self._checked_at = now
        try:
            target = self.pointer.read_text().strip()
        except OSError:
            return  # no model deployed yet
        if not target or (self._loaded is not None and self._loaded.model_dir == target):
            return
        try:
            loaded = load_model(target)
        except Exception as exc:  # a bad model must not stop the consumer: keep the old one
            self.errors += 1
            log.error("model %s not loaded for scoring: %s: %s", target, type(exc).__name__, exc)
            return
        self._loaded = loaded
        self.swaps += 1
        log.info("scoring with model %s from %s", self.model_version, target)

    def score(self, rows: pa.Table) -> Scored | None:
        """The batch's scores, or ``None`` while no model is deployed."""
        self.refresh()
        loaded = self._loaded
        if loaded is None or rows.num_rows == 0:
            return None
        model = loaded.model
        names = [f.name for f in model.features]
        frame = rows.select([n for n in names if n in rows.column_names]).to_pandas()
        for n in names:
            if n not in frame.columns:
                frame[n] = None  # a feature the batch lacks scores as missing
        x = loaded.module.encode_frame(frame, model)
        scores = np.asarray(model.predict_scores(x), dtype=np.float64)
        return Scored(scores, str(model.model_id))
