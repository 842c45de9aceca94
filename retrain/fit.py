"""The training job itself: what runs inside the SageMaker scikit-learn container.

The framework image (``sklearn`` 1.2-1) runs **Python 3.9** with scikit-learn, pandas, numpy,
joblib and pyarrow 14 (its Dockerfile installs them), and the job runs with network isolation:
nothing can be installed at start. So this module and everything it imports from us
(:mod:`retrain.inference`, :mod:`retrain.evaluate`, :mod:`etl.exceptions`, :mod:`etl.jsonsafe`)
stay Python-3.9 code with no other dependency; :data:`SHIPPED` lists them, the source bundle
carries exactly those, and ``tests/unit/test_retrain_bundle.py`` holds both to it.

What the job needs from the contract and the drift baseline is prepared before it starts (by the
retrain handler, on Python 3.11):

* the channel ``contract`` holds ``contract.json``, the contract's canonical form; the job reads
  only the few keys it needs (:class:`TrainingSpec`) instead of importing ``etl.contract``;
* the channel ``baseline`` holds ``baseline.json``, the drift profile of the training rows,
  built with ``etl.profile``; the job copies it into the model directory unchanged.

Outputs in ``SM_MODEL_DIR``: ``model.joblib``, ``model.json`` (the input schema),
``metrics.json``, ``baseline.json`` and ``code/inference.py`` (the serving container's program,
``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etl import jsonsafe
from etl.exceptions import ContractError, LabelRequiredError, RetrainError
from retrain.evaluate import score
from retrain.inference import (
    MODEL_FILE,
    SCHEMA_FILE,
    FeatureSpec,
    LoadedModel,
    encode_frame,
)

log = logging.getLogger("retrain.fit")

METRICS_FILE = "metrics.json"
BASELINE_FILE = "baseline.json"
CONTRACT_FILE = "contract.json"
#: HistGradientBoosting's categorical codes must be < max_bins (255).
MAX_CATEGORIES = 250
BINARY = "binary_classification"
REGRESSION = "regression"
_CATEGORICAL = ("string", "bool")
_DEFAULT_TASK = {"bool": BINARY, "int": REGRESSION, "float": REGRESSION}
#: The modules of ours the training container imports (the source bundle ships these only).
SHIPPED = (
    "etl/__init__.py",
    "etl/exceptions.py",
    "etl/jsonsafe.py",
    "retrain/__init__.py",
    "retrain/evaluate.py",
    "retrain/fit.py",
    "retrain/inference.py",
)
HYPERPARAMETERS = ("max_iter", "learning_rate", "max_leaf_nodes", "seed")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool

    @property
    def is_categorical(self) -> bool:
        return self.type in _CATEGORICAL


@dataclass(frozen=True)
class TrainingSpec:
    """What training needs from a contract: its name and hash, features, label and task."""

    name: str
    hash: str
    features: tuple[Column, ...]
    label: Column | None
    task: str | None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], where: str = "contract") -> TrainingSpec:
        """From the contract's canonical form (``Contract.to_dict()``, already validated)."""
        try:
            name = str(doc["name"])
            fields = [
                (str(f["name"]), str(f["type"]), str(f["role"]), f) for f in doc.get("fields", [])
            ]
        except (KeyError, TypeError) as exc:
            raise ContractError(f"{where}: not a contract's canonical form ({exc})") from None
        cols = {
            n: Column(n, t, bool(f.get("nullable", False)) or not f.get("required", True))
            for n, t, _, f in fields
        }
        features = tuple(cols[n] for n, _, role, _ in fields if role == "feature")
        label = next((cols[n] for n, _, role, _ in fields if role == "label"), None)
        task = doc.get("task") or (_DEFAULT_TASK.get(label.type) if label else None)
        canon = json.dumps(dict(doc), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canon.encode()).hexdigest()
        return cls(name, digest, features, label, None if task is None else str(task))

    @classmethod
    def read(cls, path: Path) -> TrainingSpec:
        if not path.is_file():
            raise ContractError(
                f"the contract channel {str(path.parent)!r} holds no {CONTRACT_FILE}; upload the"
                " contract as the channel 'contract'"
            )
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise ContractError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_doc(doc, str(path))

    def require_label(self) -> Column:
        if self.label is None:
            raise LabelRequiredError(
                f'contract {self.name!r} declares no label; a model needs one (role = "label")'
            )
        return self.label


# -- data ---------------------------------------------------------------------------------------
def read_channel(path: str | Path) -> pd.DataFrame:
    """All Parquet/CSV files of a channel folder (or one file), concatenated in name order."""
    root = Path(path)
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.rglob("*") if p.suffix in (".parquet", ".csv") and p.is_file())
    )
    if not files:
        raise RetrainError(f"channel {str(root)!r} holds no .parquet or .csv files")
    frames = [pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for p in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def labels(data: pd.DataFrame, spec: Any) -> np.ndarray[Any, np.dtype[Any]]:
    """The label column: bools for binary classification, floats for regression.

    ``spec`` is a :class:`TrainingSpec` or anything with its ``label``/``task`` (a Contract)."""
    label = spec.label
    if label is None:
        raise LabelRequiredError(
            f'contract {spec.name!r} declares no label; a model needs one (role = "label")'
        )
    col = data[label.name]
    if str(spec.task) == REGRESSION:
        return np.asarray(pd.to_numeric(col).to_numpy(), dtype=np.float64)
    return np.asarray(col.astype(bool).to_numpy(), dtype=bool)


def labelled(data: pd.DataFrame, spec: TrainingSpec) -> pd.DataFrame:
    """The rows with a label, after checking that every column the contract names is there."""
    label = spec.require_label()
    missing = [c.name for c in (*spec.features, label) if c.name not in data.columns]
    if missing:
        raise RetrainError(
            f"the training data lacks the contract's columns {missing} (contract"
            f" {spec.name!r}); train with the contract the data was written under"
        )
    return data[data[label.name].notna()].reset_index(drop=True)


def build_vocab(data: pd.DataFrame, spec: TrainingSpec) -> dict[str, dict[str, int]]:
    """Integer codes of each categorical feature's values, most frequent first (at most 250)."""
    vocab: dict[str, dict[str, int]] = {}
    for f in spec.features:
        if not f.is_categorical:  # numbers and times are encoded as numbers
            continue
        col = data[f.name].dropna()
        text = col.map(lambda v: str(v).lower() if isinstance(v, bool) else str(v))
        counts = text.value_counts()
        ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        vocab[f.name] = {str(k): i for i, (k, _) in enumerate(ordered[:MAX_CATEGORIES])}
    return vocab


# -- model --------------------------------------------------------------------------------------
def build_estimator(spec: TrainingSpec, hp: Mapping[str, Any]) -> Any:
    """Gradient-boosted trees (a classifier or a regressor, as the contract's task says) on
    numeric inputs (ints, floats, times as epoch seconds) and frequency-ranked category codes
    (strings, bools); a null is NaN, which the trees route down their learned missing branch.

    Codes are plain numbers to the trees (not ``categorical_features``): that path wraps every
    predict in a pandas ColumnTransformer, which costs milliseconds per request.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (
        HistGradientBoostingRegressor if spec.task == REGRESSION else HistGradientBoostingClassifier
    )
    return cls(
        max_iter=int(hp["max_iter"]),
        learning_rate=float(hp["learning_rate"]),
        max_leaf_nodes=int(hp["max_leaf_nodes"]),
        random_state=int(hp["seed"]),
    )


def schema_doc(
    spec: TrainingSpec,
    model_id: str,
    vocab: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "vocab": vocab,
        "contract": {"name": spec.name, "hash": spec.hash},
        "label": spec.label.name if spec.label else None,
        "task": spec.task,
        "features": [
            {"name": f.name, "type": f.type, "nullable": f.nullable} for f in spec.features
        ],
        "threshold": None if spec.task == REGRESSION else 0.5,
        **extra,
    }


def _encoder(spec: TrainingSpec, vocab: dict[str, dict[str, int]]) -> LoadedModel:
    features = tuple(FeatureSpec(f.name, f.type, f.nullable) for f in spec.features)
    return LoadedModel(estimator=None, features=features, model_id="", vocab=vocab)


def _hyperparameters(hyperparameters: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    hp: dict[str, Any] = {
        "max_iter": 200,
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
        "seed": 0,
        "model_id": "model",
        "source": source,
    }
    hp.update(hyperparameters or {})
    return hp


def fit(
    data: pd.DataFrame, spec: TrainingSpec, hp: Mapping[str, Any]
) -> tuple[LoadedModel, dict[str, Any]]:
    """The fitted model on labelled rows, and the training half of its metrics."""
    started = time.monotonic()
    y = labels(data, spec)
    if spec.task == BINARY and len(np.unique(y)) < 2:
        raise RetrainError(
            f"training data ({len(y)} labelled rows) has a single class; widen the window"
        )
    vocab = build_vocab(data, spec)
    encoder = _encoder(spec, vocab)
    estimator = build_estimator(spec, hp)
    estimator.fit(encode_frame(data, encoder), y)
    fit_s = time.monotonic() - started
    task = spec.task or ""
    model = LoadedModel(
        estimator=estimator, features=encoder.features, model_id="", vocab=vocab, task=task
    )
    metrics: dict[str, Any] = {"train_rows": len(data), "fit_seconds": round(fit_s, 3)}
    metrics["task"] = task
    metrics["train"] = score(y, model.predict_scores(encode_frame(data, model)), task=task)
    return model, metrics


@dataclass(frozen=True)
class Job:
    """One training job's inputs and outputs (the SageMaker environment contract's folders)."""

    train_dir: Path
    model_dir: Path
    spec: TrainingSpec
    baseline_json: str
    test_dir: Path | None = None
    output_dir: Path | None = None


def run_job(job: Job, hyperparameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit, evaluate, write model + schema + metrics + baseline + inference code; returns the
    metrics document."""
    import joblib

    hp = _hyperparameters(hyperparameters, str(job.train_dir))
    data = labelled(read_channel(job.train_dir), job.spec)
    model, metrics = fit(data, job.spec, hp)
    if job.test_dir is not None and job.test_dir.exists():
        test = labelled(read_channel(job.test_dir), job.spec)
        scores = model.predict_scores(encode_frame(test, model))
        metrics["test"] = score(labels(test, job.spec), scores, task=model.task)
    baseline_version = str(json.loads(job.baseline_json).get("version", ""))
    metrics["baseline_version"] = baseline_version
    out = job.model_dir
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.estimator, out / MODEL_FILE)
    extra = {
        "hyperparameters": {k: hp[k] for k in HYPERPARAMETERS},
        "baseline_version": baseline_version,
        "train_rows": len(data),
    }
    schema = schema_doc(job.spec, str(hp["model_id"]), model.vocab, extra)
    (out / SCHEMA_FILE).write_text(json.dumps(schema, indent=1, sort_keys=True))
    metrics_text = jsonsafe.dumps(metrics, indent=1, sort_keys=True, default=float)
    (out / METRICS_FILE).write_text(metrics_text)
    (out / BASELINE_FILE).write_text(job.baseline_json)
    # the serving container's program travels in the model artifact (network isolation)
    (out / "code").mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("inference.py"), out / "code" / "inference.py")
    if job.output_dir is not None:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        (job.output_dir / METRICS_FILE).write_text(metrics_text)
    log.info("trained on %d rows in %.2fs; model in %s", len(data), metrics["fit_seconds"], out)
    return metrics


# -- the container's entry point ----------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Hyperparameters as SageMaker passes them (``--key value``; dashes or underscores)."""
    p = argparse.ArgumentParser(description="driftline training entry point (SageMaker contract)")
    p.add_argument("--max-iter", "--max_iter", dest="max_iter", type=int, default=200)
    p.add_argument(
        "--learning-rate", "--learning_rate", dest="learning_rate", type=float, default=0.1
    )
    p.add_argument(
        "--max-leaf-nodes", "--max_leaf_nodes", dest="max_leaf_nodes", type=int, default=31
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-id", "--model_id", dest="model_id", default="model")
    p.add_argument("--source", default="", help="where the training data came from (lineage)")
    p.add_argument("--contract", default=None, help="contract file; the shipped one by default")
    return p.parse_args(argv)


def job_hyperparameters(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    hp = {k: getattr(args, k) for k in (*HYPERPARAMETERS, "model_id")}
    hp["source"] = args.source or env["SM_CHANNEL_TRAIN"]
    return hp


def optional_dir(env: Mapping[str, str], key: str) -> Path | None:
    value = env.get(key)
    return Path(value) if value else None


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def missing_environment(env: Mapping[str, str]) -> bool:
    if "SM_CHANNEL_TRAIN" in env and "SM_MODEL_DIR" in env:
        return False
    print(
        "train: SM_CHANNEL_TRAIN and SM_MODEL_DIR must be set (SageMaker training contract)",
        file=sys.stderr,
    )
    return True


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """The container's entry: channels ``train``, ``test``, ``contract`` and ``baseline``."""
    setup_logging()
    env = os.environ if env is None else env
    args = parse_args(argv)
    if missing_environment(env):
        return 2
    try:
        contract_dir = optional_dir(env, "SM_CHANNEL_CONTRACT")
        baseline_dir = optional_dir(env, "SM_CHANNEL_BASELINE")
        if contract_dir is None or baseline_dir is None:
            raise RetrainError(
                "the training job needs the channels 'contract' and 'baseline' (the retrain"
                " handler uploads both)"
            )
        job = Job(
            train_dir=Path(env["SM_CHANNEL_TRAIN"]),
            model_dir=Path(env["SM_MODEL_DIR"]),
            spec=TrainingSpec.read(contract_dir / CONTRACT_FILE),
            baseline_json=(baseline_dir / BASELINE_FILE).read_text(),
            test_dir=optional_dir(env, "SM_CHANNEL_TEST"),
            output_dir=optional_dir(env, "SM_OUTPUT_DATA_DIR"),
        )
        run_job(job, job_hyperparameters(args, env))
    except (RetrainError, ContractError, OSError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
