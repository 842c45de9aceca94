"""The scikit-learn serving container's contract: model_fn, input_fn, predict_fn, output_fn.

The same module is the ``entry_point`` of a SageMaker endpoint and is what the local model server
(``infra/model_server.py``) calls. It is self-contained (numpy, pandas, joblib, scikit-learn): the
model directory carries its own input schema (``model.json``), so no driftline code is needed in
the container.

Requests: ``application/json`` with one object, a list of objects or ``{"instances": [...]}`` whose
keys are the feature names (extra keys are ignored; a nullable feature may be absent or null), or
``text/csv`` with one row per record in the schema's feature order (an optional header row names
them; an empty cell is null). Responses: JSON ``{"predictions": [{"score": p, "label": bool}]}``
or CSV (one score per line).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "model.joblib"
SCHEMA_FILE = "model.json"
JSON = "application/json"
CSV = "text/csv"
NUMERIC = ("int", "float")
TIMESTAMP = "timestamp"
BINARY = "binary_classification"
REGRESSION = "regression"


class InputError(ValueError):
    """A request the model cannot score; the message says what is wrong (the server answers 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class LoadedModel:
    """A fitted estimator, the schema it was trained on and the categorical vocabularies.

    Categorical features are encoded as integer codes (``vocab``; unknown or null → NaN, which
    the gradient-boosted trees treat as missing), numeric ones pass through as floats. The
    encoding is plain dictionaries, not a pandas pipeline: scoring one record costs well under a
    millisecond on top of the trees.
    """

    estimator: Any
    features: tuple[FeatureSpec, ...]
    model_id: str
    vocab: Mapping[str, Mapping[str, int]]
    #: Scores at or above it are labelled true; ``None`` for a regression (no label).
    threshold: float | None = 0.5
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: ``binary_classification`` (scores are probabilities) or ``regression`` (predictions).
    task: str = BINARY

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def predict_scores(self, x: np.ndarray[Any, np.dtype[np.float64]]) -> list[float]:
        if self.task == REGRESSION:
            return [float(p) for p in self.estimator.predict(x)]
        return [float(p) for p in self.estimator.predict_proba(x)[:, 1]]


def model_fn(model_dir: str) -> LoadedModel:
    """Load ``model.joblib`` and ``model.json`` from ``model_dir`` (fully, before any swap)."""
    import joblib

    root = Path(model_dir)
    meta = json.loads((root / SCHEMA_FILE).read_text())
    features = tuple(
        FeatureSpec(f["name"], f["type"], bool(f.get("nullable", False))) for f in meta["features"]
    )
    estimator = joblib.load(root / MODEL_FILE)
    threshold = meta.get("threshold", 0.5)
    return LoadedModel(
        estimator=estimator,
        features=features,
        model_id=str(meta.get("model_id", root.name)),
        vocab={k: dict(v) for k, v in (meta.get("vocab") or {}).items()},
        threshold=None if threshold is None else float(threshold),
        meta=meta,
        task=str(meta.get("task", BINARY)),
    )


def _base_type(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def input_fn(request_body: str | bytes, request_content_type: str) -> list[Any]:
    """Parse the body into records (JSON objects) or rows (CSV lists of strings)."""
    kind = _base_type(request_content_type or JSON)
    if isinstance(request_body, bytes):
        try:
            text = request_body.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("the request body is not UTF-8") from None
    else:
        text = request_body
    if not text.strip():
        raise InputError("the request body is empty; send at least one record")
    if kind == JSON:
        return _json_records(text)
    if kind == CSV:
        return _csv_rows(text)
    raise InputError(
        f"content type {request_content_type!r} is not supported; use {JSON!r} or {CSV!r}",
        status=415,
    )


def _json_records(text: str) -> list[Any]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("the JSON body is nested too deeply") from None
    if isinstance(doc, Mapping) and "instances" in doc:
        doc = doc["instances"]
    records = [doc] if isinstance(doc, Mapping) else doc
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise InputError(
            'expected a JSON object, a list of objects or {"instances": [...]} of feature'
            " name -> value"
        )
    if not records:
        raise InputError("no records to score")
    return list(records)


def _csv_rows(text: str) -> list[Any]:
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:  # e.g. a field over the csv module's field size limit
        raise InputError(f"the body is not valid CSV: {exc}") from None
    if not rows:
        raise InputError("no CSV rows to score")
    return rows


def _check_value(spec: FeatureSpec, value: Any, where: str) -> Any:
    if value is None:
        if not spec.nullable:
            raise InputError(f"{where}: feature {spec.name!r} is required and may not be null")
        return None
    if spec.type in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(
                f"{where}: feature {spec.name!r} must be a number ({spec.type}), got {value!r}"
            )
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):
            raise InputError(f"{where}: feature {spec.name!r} must be finite, got {value!r}")
        return number
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise InputError(f"{where}: feature {spec.name!r} must be true/false, got {value!r}")
        return str(value).lower()
    if spec.type == TIMESTAMP:
        return _epoch_seconds(spec, value, where)
    if not isinstance(value, str):
        raise InputError(f"{where}: feature {spec.name!r} must be a string, got {value!r}")
    return value


def _epoch_seconds(spec: FeatureSpec, value: Any, where: str) -> float:
    """An ISO-8601 time (``Z`` or an offset; naive means UTC) as seconds since the epoch."""
    from datetime import datetime, timezone

    if not isinstance(value, str):
        raise InputError(
            f"{where}: feature {spec.name!r} must be an ISO-8601 time string, got {value!r}"
        )
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{where}: feature {spec.name!r} must be an ISO-8601 time, got {value!r}"
        ) from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def _from_csv_cell(spec: FeatureSpec, cell: str, where: str) -> Any:
    if cell == "":
        return _check_value(spec, None, where)
    if spec.type in NUMERIC:
        try:
            number = float(cell)
        except ValueError:
            raise InputError(
                f"{where}: feature {spec.name!r} must be a number ({spec.type}), got {cell!r}"
            ) from None
        return _check_value(spec, number, where)
    if spec.type == "bool":
        return _check_value(spec, cell.strip().lower() in ("true", "1"), where)
    if spec.type == TIMESTAMP:
        return _check_value(spec, cell, where)
    return cell


def _category_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _code(model: LoadedModel, spec: FeatureSpec, value: Any) -> float:
    if value is None:
        return math.nan
    if spec.type in NUMERIC or spec.type == TIMESTAMP:
        return float(value)
    return float(model.vocab[spec.name].get(str(value), math.nan))


def encode_records(
    data: Sequence[Any], model: LoadedModel
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Validate parsed records/rows against the model's schema; the encoded float matrix."""
    names = model.feature_names
    rows = list(data)
    if rows and isinstance(rows[0], list) and [c.strip() for c in rows[0]] == names:
        rows = rows[1:]  # CSV header
    if not rows:
        raise InputError("no records to score")
    out = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, rec in enumerate(rows):
        where = f"record {i}"
        if isinstance(rec, Mapping):
            values = [_check_value(spec, rec.get(spec.name), where) for spec in model.features]
        elif isinstance(rec, list):
            if len(rec) != len(names):
                raise InputError(
                    f"{where}: expected {len(names)} CSV columns in the order {names}, got"
                    f" {len(rec)}"
                )
            values = [_from_csv_cell(spec, cell, where) for spec, cell in zip(model.features, rec)]
        else:
            raise InputError(f"{where}: expected an object or a CSV row, got {rec!r}")
        out[i] = [_code(model, spec, v) for spec, v in zip(model.features, values)]
    return out


def encode_frame(frame: pd.DataFrame, model: LoadedModel) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Vectorised encoding of a (trusted, typed) DataFrame: training and batch evaluation."""
    cols = []
    for spec in model.features:
        col = frame[spec.name]
        if spec.type in NUMERIC:
            cols.append(pd.to_numeric(col, errors="coerce").astype("float64").to_numpy())
        elif spec.type == TIMESTAMP:
            t = pd.to_datetime(col, utc=True, errors="coerce")
            secs = (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
            cols.append(secs.astype("float64").to_numpy())
        else:
            text = col.astype(object).where(col.notna(), None).map(_category_text)
            cols.append(text.map(model.vocab[spec.name]).astype("float64").to_numpy())
    return np.column_stack(cols) if cols else np.empty((len(frame), 0))


def predict_fn(input_data: Sequence[Any], model: LoadedModel) -> list[float]:
    """Each record's score: the label's probability (binary) or the predicted value."""
    return model.predict_scores(encode_records(input_data, model))


def output_fn(
    prediction: Sequence[float], accept: str, threshold: float | None = 0.5
) -> tuple[bytes, str]:
    """Serialise scores as JSON (default) or CSV; returns (body, content type). Without a
    ``threshold`` (a regression) predictions carry no ``label``."""
    kind = _base_type(accept or JSON)
    if kind in (JSON, "*/*"):
        if threshold is None:
            body: dict[str, Any] = {"predictions": [{"score": p} for p in prediction]}
        else:
            body = {"predictions": [{"score": p, "label": p >= threshold} for p in prediction]}
        return json.dumps(body).encode(), JSON
    if kind == CSV:
        return "".join(f"{p!r}\n" for p in prediction).encode(), CSV
    raise InputError(f"accept type {accept!r} is not supported; use {JSON!r} or {CSV!r}", 406)
