"""Local backends: the training script in a subprocess; the local model server for serving.

Training runs the training job's own entry, ``python -m retrain.fit`` (``python -m
retrain.train`` for a request without a ``baseline`` channel), to its end inside ``start``
(``describe`` then reports the job), with the environment a SageMaker training container gets
(``SM_MODEL_DIR``, ``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_TEST``, ``SM_OUTPUT_DATA_DIR``, ``SM_HPS``)
and the hyperparameters as arguments, then uploads ``model.tar.gz`` to S3 (the
emulator's) as a training job would.

Serving extracts the version's artifact into the model cache and asks the running model server
(``infra/model_server.py``) to load it: ``POST /admin/reload``; it also rewrites the pointer file
the server watches, so a server started later (or one that missed the request) serves it too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from etl.exceptions import RetrainError
from retrain.artifacts import fetch_model, upload_model
from retrain.backends.base import Deployment, JobStatus, TrainingJob, TrainingRequest
from retrain.backends.reload_auth import read_token

log = logging.getLogger(__name__)

LOCAL_IMAGE = "driftline/local-sklearn:latest"
POINTER_FILE = "CURRENT"
JOB_FILE = "job.json"


def sm_env(
    model_dir: Path,
    train_dir: Path,
    test_dir: Path,
    output_dir: Path,
    hyperparameters: dict[str, str],
    contract_dir: Path | None = None,
    baseline_dir: Path | None = None,
) -> dict[str, str]:
    """The variables of the SageMaker training contract for one job (a channel ``NAME`` is
    ``SM_CHANNEL_NAME``; the contract and the baseline travel as channels of their own)."""
    channels = {"train": train_dir, "test": test_dir}
    if contract_dir is not None:
        channels["contract"] = contract_dir
    if baseline_dir is not None:
        channels["baseline"] = baseline_dir
    return {
        "SM_MODEL_DIR": str(model_dir),
        **{f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()},
        "SM_OUTPUT_DATA_DIR": str(output_dir),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(hyperparameters, sort_keys=True),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
    }


def hyperparameter_args(hyperparameters: dict[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in sorted(hyperparameters.items()):
        args += [f"--{key}", str(value)]
    return args


class LocalTraining:
    """``retrain/train.py`` in a subprocess with the SageMaker environment contract."""

    name = "local"

    def __init__(self, s3: Any, work_dir: Path, *, timeout_s: float = 900.0) -> None:
        self._s3 = s3
        self._work = work_dir
        self._timeout = timeout_s
        self._jobs: dict[str, TrainingJob] = {}

    def image_uri(self) -> str:
        return LOCAL_IMAGE

    def start(self, request: TrainingRequest) -> str:
        """Run the job to its end (a local job is a subprocess; ``describe`` then reports it).

        The job's state is also written to ``<work>/<run>/job.json``, so another instance (or
        process) of this backend can describe it."""
        job_name = request.job_name or request.run_id
        job = self._work / request.run_id
        model_dir, output_dir = job / "model", job / "output"
        model_dir.mkdir(parents=True, exist_ok=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        hps = dict(request.hyperparameters)
        env = {
            # The local job shares the machine with the emulator, KCL daemons and consumers:
            # OpenMP's spinning threads made a 5,000-row fit take minutes on a loaded 2-vCPU VM
            # (seconds with one thread). An explicit OMP_NUM_THREADS in the environment wins.
            "OMP_NUM_THREADS": "1",
            **os.environ,
            **sm_env(
                model_dir,
                request.train_dir,
                request.test_dir,
                output_dir,
                hps,
                request.contract_dir,
                request.baseline_dir,
            ),
            "PYTHONUNBUFFERED": "1",
        }
        entry = "retrain.fit" if request.baseline_dir is not None else "retrain.train"
        cmd = [sys.executable, "-m", entry, *hyperparameter_args(hps)]
        log.info("training job %s: %s", job_name, " ".join(cmd))
        self._record(job, TrainingJob(job_name, JobStatus.IN_PROGRESS))
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except subprocess.TimeoutExpired:
            self._record(
                job,
                TrainingJob(
                    job_name,
                    JobStatus.FAILED,
                    failure_reason=f"local training job {job_name} exceeded {self._timeout:.0f}s",
                ),
            )
            return job_name
        (job / "train.log").write_text(proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            reason = (
                f"local training job {job_name} failed with exit code {proc.returncode}:"
                f" {tail} (full log: {job / 'train.log'})"
            )
            self._record(job, TrainingJob(job_name, JobStatus.FAILED, failure_reason=reason))
            return job_name
        url = upload_model(self._s3, model_dir, request.output_uri)
        self._record(job, TrainingJob(job_name, JobStatus.COMPLETED, model_data_url=url))
        return job_name

    def describe(self, job_name: str) -> TrainingJob:
        found = self._jobs.get(job_name)
        if found is not None:
            return found
        for path in self._work.glob(f"*/{JOB_FILE}"):
            doc = json.loads(path.read_text())
            if doc.get("name") == job_name:
                return TrainingJob(**{**doc, "status": JobStatus(doc["status"])})
        raise RetrainError(f"local training job {job_name!r} is unknown under {self._work}")

    def _record(self, job_dir: Path, job: TrainingJob) -> None:
        self._jobs[job.name] = job
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / JOB_FILE).write_text(
            json.dumps(
                {
                    "name": job.name,
                    "status": job.status,
                    "model_data_url": job.model_data_url,
                    "failure_reason": job.failure_reason,
                },
                sort_keys=True,
            )
        )


def write_pointer(cache_dir: Path, model_dir: Path) -> Path:
    """Atomically point ``cache_dir/CURRENT`` at ``model_dir`` (the server watches it)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    pointer = cache_dir / POINTER_FILE
    fd, tmp = tempfile.mkstemp(prefix=".current-", dir=cache_dir)
    with os.fdopen(fd, "w") as fh:
        fh.write(str(model_dir.resolve()))
    Path(tmp).replace(pointer)
    return pointer


def reload_server(
    url: str, model_dir: Path, *, token_file: Path, timeout_s: float = 120.0
) -> dict[str, Any]:
    """Ask the local model server to load ``model_dir`` and swap to it (with its reload token)."""
    body = json.dumps({"model_dir": str(model_dir.resolve())}).encode()
    req = urllib.request.Request(
        f"{url.rstrip('/')}/admin/reload",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {read_token(token_file)}",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        raise RetrainError(
            f"model server {url} refused the reload of {model_dir}: {exc.code}"
            f" {exc.read().decode(errors='replace')}"
        ) from None
    except OSError as exc:
        raise RetrainError(f"model server {url} is unreachable ({exc}); is it running?") from None


class LocalServing:
    """Deploy = extract into the cache, point CURRENT at it, reload the server (if running)."""

    name = "local"

    def __init__(
        self, s3: Any, cache_dir: Path, server_url: str | None, token_file: Path | None = None
    ) -> None:
        self._s3 = s3
        self._cache = cache_dir
        self._url = server_url
        self._token_file = token_file

    def deploy(
        self, *, version: int, model_data_url: str, image_uri: str, model_dir: Path | None
    ) -> Deployment:
        started = time.monotonic()
        dest = self._cache / f"v{version}"
        if model_dir is not None and model_dir.exists():
            self._cache.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=self._cache))
            shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        else:
            fetch_model(self._s3, model_data_url, dest)
        write_pointer(self._cache, dest)
        model_id = f"v{version}"
        if self._url:
            if self._token_file is None:
                raise RetrainError(
                    f"model server {self._url} needs its reload token: set"
                    " DRIFTLINE_MODEL_SERVER_TOKEN_FILE (model_server.token in its state folder)"
                )
            doc = reload_server(self._url, dest, token_file=self._token_file)
            model_id = str(doc.get("model_id", model_id))
        return Deployment(
            endpoint=self._url or str(dest), model_id=model_id, seconds=time.monotonic() - started
        )
