"""Training and serving backends: ``local`` (subprocess, local model server) and ``sagemaker``."""

from __future__ import annotations

from retrain.backends.base import (
    Deployment,
    ServingBackend,
    TrainingBackend,
    TrainingJob,
    TrainingRequest,
)

__all__ = ["Deployment", "ServingBackend", "TrainingBackend", "TrainingJob", "TrainingRequest"]
