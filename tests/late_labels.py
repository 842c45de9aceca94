"""Test helpers for late labels: a served model, the metrics as published, and the oracle
(scikit-learn on the (score, label) pairs rebuilt from the lake and the labels produced)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from etl.synthetic import generate_frame


def serve_model(root: Path, model_name: str) -> Path:
    """Train a small model on the card data and point ``root/models/<model_name>/CURRENT`` at it
    (the local serving backend's layout); returns the cache folder (``model_cache_dir``)."""
    from retrain.artifacts import pack, unpack
    from retrain.backends.local import write_pointer
    from retrain.train import train

    (root / "data").mkdir(parents=True)
    generate_frame(1500, seed=6).to_parquet(root / "data" / "train.parquet")
    train(root / "data", root / "out", hyperparameters={"model_id": "m1", "max_iter": 20})
    cache = root / "models" / model_name
    write_pointer(cache, unpack(pack(root / "out", root / "m.tar.gz"), cache / "m1"))
    return root / "models"


def score_rows(frame: pd.DataFrame, cache: Path, model_name: str) -> np.ndarray:
    """The served model's scores of lake rows, computed here, apart from the consumer."""
    from retrain.inference import encode_frame, model_fn

    model = model_fn((cache / model_name / "CURRENT").read_text().strip())
    return np.asarray(model.predict_scores(encode_frame(frame, model)), dtype=np.float64)


def oracle(
    lake: pd.DataFrame, final: dict[str, Any], cache: Path, model_name: str
) -> dict[str, dict[str, float]]:
    """Per shard: labels joined, coverage and scikit-learn's AUC on the joined pairs."""
    scores = score_rows(lake, cache, model_name)
    lake = lake.assign(score=scores)
    out: dict[str, dict[str, float]] = {}
    for shard, rows in lake.groupby("shard_id"):
        joined = rows[rows["transaction_id"].isin(final.keys())]
        y = [float(final[k]) for k in joined["transaction_id"]]
        out[str(shard)] = {
            "labels": float(len(joined)),
            "coverage": len(joined) / len(rows),
            "auc": float(roc_auc_score(y, joined["score"])),
        }
    return out


def published(cw: Any, namespace: str, stream: str, metric: str) -> list[float]:
    """Every datum of ``metric`` under the stream in the last hour, sorted (windows closing in
    the same minute are told apart by their minimum and maximum: at most two per minute)."""
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    resp = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": "Stream", "Value": stream}],
        StartTime=end - dt.timedelta(hours=1),
        EndTime=end,
        Period=60,
        Statistics=["SampleCount", "Minimum", "Maximum"],
    )
    values: list[float] = []
    for p in resp["Datapoints"]:
        n = int(p["SampleCount"])
        assert n <= 2, f"{n} windows of {metric} in one minute: cannot tell them apart"
        values += [p["Minimum"], p["Maximum"]][:n] if n == 2 else [p["Minimum"]]
    return sorted(values)
