"""Training entry point under the SageMaker training contract.

Inputs come from the environment SageMaker sets in a training container (the local backend sets
the same variables for a subprocess):

* ``SM_CHANNEL_TRAIN`` (required) and ``SM_CHANNEL_TEST`` (optional): folders of Parquet (or CSV)
  files with the contract's features and label;
* ``SM_CHANNEL_CONTRACT``: the data contract the run trains on (``contract.json``, the contract's
  canonical form; the retrain handler uploads it next to the data as its own channel). ``--contract
  PATH`` (a TOML contract) wins over it; without either the shipped example is used;
* ``SM_MODEL_DIR``: where the model goes (SageMaker tars it into ``model.tar.gz``);
* ``SM_OUTPUT_DATA_DIR``: extra outputs (metrics, baseline copy);
* hyperparameters as command-line arguments (``--max-iter 200 --learning-rate 0.1 ...``).

Outputs in ``SM_MODEL_DIR``: ``model.joblib`` (a scikit-learn estimator), ``model.json`` (the input
schema that ``retrain/inference.py`` validates requests against), ``metrics.json`` (on the test
channel) and ``baseline.json`` — the drift baseline profile of the training data, in the format of
``etl/profile.py``, which becomes the current baseline when the model is promoted.

Run locally::

    SM_CHANNEL_TRAIN=data/train SM_MODEL_DIR=/tmp/model python -m retrain.train --max-iter 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etl import jsonsafe
from etl.contract import Contract, Field, Task, load_contract, parse_contract
from etl.exceptions import ContractError, LabelRequiredError, RetrainError
from retrain.evaluate import score
from retrain.inference import (
    MODEL_FILE,
    SCHEMA_FILE,
    FeatureSpec,
    LoadedModel,
    encode_frame,
)

log = logging.getLogger("retrain.train")

METRICS_FILE = "metrics.json"
BASELINE_FILE = "baseline.json"
CONTRACT_FILE = "contract.json"
#: HistGradientBoosting's categorical codes must be < max_bins (255).
MAX_CATEGORIES = 250


def _specs(schema: Mapping[str, Any]) -> tuple[FeatureSpec, ...]:
    return tuple(FeatureSpec(f["name"], f["type"], f["nullable"]) for f in schema["features"])


def score_frame(model: LoadedModel, data: pd.DataFrame) -> list[float]:
    """Scores of every row of a typed DataFrame (batch evaluation)."""
    return model.predict_scores(encode_frame(data, model))


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


def build_vocab(data: pd.DataFrame, contract: Contract) -> dict[str, dict[str, int]]:
    """Integer codes of each categorical feature's values, most frequent first (at most 250)."""
    vocab: dict[str, dict[str, int]] = {}
    for f in contract.features:
        if not f.is_categorical:  # numbers and times are encoded as numbers
            continue
        col = data[f.name].dropna()
        text = col.map(lambda v: str(v).lower() if isinstance(v, bool) else str(v))
        counts = text.value_counts()
        ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        vocab[f.name] = {str(k): i for i, (k, _) in enumerate(ordered[:MAX_CATEGORIES])}
    return vocab


def _label(contract: Contract) -> Field:
    if contract.label is None:
        raise LabelRequiredError(
            f'contract {contract.name!r} declares no label; a model needs one (role = "label")'
        )
    return contract.label


def labels(data: pd.DataFrame, contract: Contract) -> np.ndarray[Any, np.dtype[Any]]:
    """The label column: bools for binary classification, floats for regression."""
    col = data[_label(contract).name]
    if contract.task is Task.REGRESSION:
        return np.asarray(pd.to_numeric(col).to_numpy(), dtype=np.float64)
    return np.asarray(col.astype(bool).to_numpy(), dtype=bool)


def labelled(data: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    missing = [n for n in [f.name for f in contract.features] if n not in data.columns]
    label = _label(contract)
    if label.name not in data.columns:
        missing.append(label.name)
    if missing:
        raise RetrainError(
            f"the training data lacks the contract's columns {missing} (contract"
            f" {contract.name!r}); train with the contract the data was written under"
        )
    return data[data[label.name].notna()].reset_index(drop=True)


def build_estimator(contract: Contract, hp: Mapping[str, Any]) -> Any:
    """Gradient-boosted trees (a classifier or a regressor, as the contract's task says) on
    numeric inputs (ints, floats, times as epoch seconds) and frequency-ranked category codes
    (strings, bools); a null is NaN, which the trees route down their learned missing branch.

    Codes are plain numbers to the trees (not ``categorical_features``): that path wraps every
    predict in a pandas ColumnTransformer, which costs milliseconds per request.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (
        HistGradientBoostingRegressor
        if contract.task is Task.REGRESSION
        else HistGradientBoostingClassifier
    )
    return cls(
        max_iter=int(hp["max_iter"]),
        learning_rate=float(hp["learning_rate"]),
        max_leaf_nodes=int(hp["max_leaf_nodes"]),
        random_state=int(hp["seed"]),
    )


def schema_doc(
    contract: Contract,
    model_id: str,
    vocab: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "vocab": vocab,
        "contract": {"name": contract.name, "hash": contract.hash},
        "label": contract.label.name if contract.label else None,
        "task": contract.task.value if contract.task else None,
        "features": [
            {"name": f.name, "type": f.type.value, "nullable": f.nullable or not f.required}
            for f in contract.features
        ],
        "threshold": None if contract.task is Task.REGRESSION else 0.5,
        **extra,
    }


def train(
    train_dir: str | Path,
    model_dir: str | Path,
    *,
    test_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    contract: Contract | None = None,
) -> dict[str, Any]:
    """Fit, evaluate, write model + schema + metrics + baseline; returns the metrics document."""
    import joblib

    from etl.profile import build_profile

    contract = contract or load_contract()
    hp = {
        "max_iter": 200,
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
        "seed": 0,
        "model_id": "model",
        "source": str(train_dir),
        **(hyperparameters or {}),
    }
    started = time.monotonic()
    data = labelled(read_channel(train_dir), contract)
    y = labels(data, contract)
    task = contract.task.value if contract.task else ""
    if contract.task is Task.BINARY_CLASSIFICATION and len(np.unique(y)) < 2:
        raise RetrainError(
            f"training data ({len(y)} labelled rows) has a single class; widen the window"
        )
    vocab = build_vocab(data, contract)
    schema = schema_doc(contract, str(hp["model_id"]), vocab, {})
    encoder = LoadedModel(estimator=None, features=_specs(schema), model_id="", vocab=vocab)
    estimator = build_estimator(contract, hp)
    estimator.fit(encode_frame(data, encoder), y)
    fit_s = time.monotonic() - started
    model = LoadedModel(
        estimator=estimator, features=encoder.features, model_id="", vocab=vocab, task=task
    )

    metrics: dict[str, Any] = {"train_rows": len(data), "fit_seconds": round(fit_s, 3)}
    metrics["task"] = task
    metrics["train"] = score(y, model.predict_scores(encode_frame(data, model)), task=task)
    if test_dir is not None and Path(test_dir).exists():
        test = labelled(read_channel(test_dir), contract)
        metrics["test"] = score(labels(test, contract), score_frame(model, test), task=task)

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, out / MODEL_FILE)
    profile = build_profile(data, contract, source=str(hp["source"]))
    extra = {
        "hyperparameters": {
            k: hp[k] for k in ("max_iter", "learning_rate", "max_leaf_nodes", "seed")
        },
        "baseline_version": profile.version,
        "train_rows": len(data),
    }
    (out / SCHEMA_FILE).write_text(
        json.dumps(
            schema_doc(contract, str(hp["model_id"]), vocab, extra), indent=1, sort_keys=True
        )
    )
    metrics["baseline_version"] = profile.version
    metrics_text = jsonsafe.dumps(metrics, indent=1, sort_keys=True, default=float)
    (out / METRICS_FILE).write_text(metrics_text)
    (out / BASELINE_FILE).write_text(profile.to_json())
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / METRICS_FILE).write_text(metrics_text)
    log.info("trained on %d rows in %.2fs; model in %s", len(data), fit_s, out)
    return metrics


def job_contract(path: str | None, env: Mapping[str, str]) -> Contract:
    """``--contract PATH``, else the ``contract`` channel, else the shipped example."""
    if path:
        return load_contract(path)
    channel = env.get("SM_CHANNEL_CONTRACT")
    if channel:
        doc_path = Path(channel) / CONTRACT_FILE
        if not doc_path.is_file():
            raise ContractError(
                f"the contract channel {channel!r} holds no {CONTRACT_FILE}; upload the contract"
                " as the channel 'contract'"
            )
        try:
            doc = json.loads(doc_path.read_text())
        except ValueError as exc:
            raise ContractError(f"{doc_path}: not valid JSON: {exc}") from None
        return parse_contract(doc, str(doc_path))
    return load_contract()


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


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    env = os.environ if env is None else env
    args = parse_args(argv)
    if "SM_CHANNEL_TRAIN" not in env or "SM_MODEL_DIR" not in env:
        print(
            "train: SM_CHANNEL_TRAIN and SM_MODEL_DIR must be set (SageMaker training contract)",
            file=sys.stderr,
        )
        return 2
    hp = {
        k: getattr(args, k)
        for k in ("max_iter", "learning_rate", "max_leaf_nodes", "seed", "model_id")
    }
    hp["source"] = args.source or env["SM_CHANNEL_TRAIN"]
    try:
        train(
            env["SM_CHANNEL_TRAIN"],
            env["SM_MODEL_DIR"],
            test_dir=env.get("SM_CHANNEL_TEST"),
            output_dir=env.get("SM_OUTPUT_DATA_DIR"),
            hyperparameters=hp,
            contract=job_contract(args.contract, env),
        )
    except (RetrainError, ContractError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
