"""Model artifacts: ``model.tar.gz`` (the SageMaker layout) to and from S3 and local folders.

The archive holds the model directory's files at its root plus ``code/inference.py``, so a
SageMaker scikit-learn endpoint can serve it with ``SAGEMAKER_PROGRAM=inference.py`` and
``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from etl.aws import split_s3_uri
from etl.exceptions import RetrainError

ARCHIVE = "model.tar.gz"
INFERENCE_SOURCE = Path(__file__).with_name("inference.py")


def split_s3(uri: str) -> tuple[str, str]:
    return split_s3_uri(uri, RetrainError)


def pack(model_dir: Path, dest: Path) -> Path:
    """``dest`` (a .tar.gz) with the model files at the root and ``code/inference.py``."""
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
        tar.add(INFERENCE_SOURCE, arcname="code/inference.py")
    return dest


def unpack(archive: Path, dest: Path) -> Path:
    """Extract a model archive into ``dest`` (created; must be empty or absent)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def upload_model(s3: Any, model_dir: Path, uri_prefix: str) -> str:
    """Pack ``model_dir`` and put it at ``<uri_prefix>/model.tar.gz``; returns that URI."""
    bucket, key = split_s3(uri_prefix.rstrip("/") + "/" + ARCHIVE)
    with tempfile.TemporaryDirectory(prefix="driftline-pack-") as tmp:
        archive = pack(model_dir, Path(tmp) / ARCHIVE)
        s3.upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def fetch_model(s3: Any, model_data_url: str, dest: Path) -> Path:
    """Download and extract ``model_data_url`` into ``dest`` (replaced atomically when complete)."""
    bucket, key = split_s3(model_data_url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        archive = staging / ARCHIVE
        s3.download_file(bucket, key, str(archive))
        unpack(archive, staging / "model")
        archive.unlink()
        if dest.exists():
            shutil.rmtree(dest)
        (staging / "model").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
