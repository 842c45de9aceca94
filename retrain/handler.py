"""The retrain loop's AWS Lambda entry point.

``handler(event, context)`` is the target of the alarm rule (step 1: start the training job and
return), of the training-job rule (step 2: finish the run), of the daily safety-net schedule, and
of the one-time schedules that deliver a deferred alarm again (:mod:`retrain.redeliver`). A
Lambda invocation never waits for training.

Where the rest lives: the gate (:mod:`retrain.gate`), step 1 (:mod:`retrain.start`), step 2
(:mod:`retrain.finish`), both steps in one process (:mod:`retrain.run`), wiring from settings
(:mod:`retrain.wiring`), results and statuses (:mod:`retrain.results`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.settings import load_settings
from retrain.gate import GateDeps, handle_event
from retrain.redeliver import SchedulerRedelivery


def handler(event: Any, context: Any) -> dict[str, Any]:
    """AWS Lambda entry point (``wait=False``: step 1 returns once the job started)."""
    logging.getLogger().setLevel(logging.INFO)
    settings = load_settings()
    if not Path(settings.model_cache_dir).is_absolute():
        # Lambda's working directory is read-only; only the temp directory is writable
        settings = settings.replace(
            model_cache_dir=str(Path(tempfile.gettempdir()) / "driftline" / "models")
        )
    clients = AwsClients.from_settings(settings)
    gate = GateDeps(redeliver=SchedulerRedelivery.from_settings(settings, clients))
    return handle_event(event, settings, clients, wait=False, gate=gate).to_dict()
