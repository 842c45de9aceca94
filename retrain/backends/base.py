"""The two backend interfaces: train a model from channels; serve a registered version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TrainingRequest:
    """Channels already uploaded to S3 (``*_uri``) and present locally (``*_dir``)."""

    run_id: str
    train_dir: Path
    test_dir: Path
    train_uri: str
    test_uri: str
    #: s3://bucket/prefix/ under which the model artifact goes.
    output_uri: str
    hyperparameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrainingResult:
    model_data_url: str
    #: The extracted model directory (model.joblib, model.json, metrics.json, baseline.json).
    model_dir: Path
    image_uri: str
    seconds: float
    job_name: str = ""


@dataclass(frozen=True, slots=True)
class Deployment:
    endpoint: str
    model_id: str
    seconds: float


class TrainingBackend(Protocol):
    name: str

    def image_uri(self) -> str: ...

    def train(self, request: TrainingRequest) -> TrainingResult: ...


class ServingBackend(Protocol):
    name: str

    def deploy(
        self, *, version: int, model_data_url: str, image_uri: str, model_dir: Path | None
    ) -> Deployment: ...
