"""The inference module's parsing, validation and encoding (no model file needed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from retrain.inference import (
    FeatureSpec,
    InputError,
    LoadedModel,
    encode_frame,
    encode_records,
    input_fn,
    output_fn,
)

FEATURES = (
    FeatureSpec("amount", "float", False),
    FeatureSpec("device", "string", False),
    FeatureSpec("distance", "float", True),
)
MODEL = LoadedModel(
    estimator=None, features=FEATURES, model_id="m", vocab={"device": {"mobile": 0, "desktop": 1}}
)


def test_json_and_csv_encode_to_the_same_matrix() -> None:
    # GIVEN the same two records as JSON (with an extra key and a missing nullable) and as CSV
    as_json = input_fn(
        json.dumps(
            {
                "instances": [
                    {"amount": 5, "device": "desktop", "distance": 1.5, "extra": "ignored"},
                    {"amount": 7.5, "device": "watch"},
                ]
            }
        ),
        "application/json; charset=utf-8",
    )
    as_csv = input_fn(b"amount,device,distance\n5,desktop,1.5\n7.5,watch,\n", "text/csv")
    # WHEN encoded
    a, b = encode_records(as_json, MODEL), encode_records(as_csv, MODEL)
    # THEN unknown categories and nulls are NaN, known ones their code
    np.testing.assert_array_equal(a, np.array([[5.0, 1.0, 1.5], [7.5, np.nan, np.nan]]))
    np.testing.assert_array_equal(a, b)
    # AND the vectorised DataFrame encoding agrees
    frame = pd.DataFrame(
        {"amount": [5.0, 7.5], "device": ["desktop", "watch"], "distance": [1.5, None]}
    )
    np.testing.assert_array_equal(encode_frame(frame, MODEL), a)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"\xff\xfe", "application/json", 400, "the request body is not UTF-8"),
        (b"[]", "application/json", 400, "no records to score"),
        (b"[1, 2]", "application/json", 400, "expected a JSON object, a list of objects"),
        (b"x", "application/xml", 415, "content type 'application/xml' is not supported"),
    ],
)
def test_unparseable_bodies(body: bytes, content_type: str, status: int, message: str) -> None:
    with pytest.raises(InputError) as info:
        input_fn(body, content_type)
    assert info.value.status == status and str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"amount": True, "device": "mobile"}, "record 0: feature 'amount' must be a number"),
        ({"amount": math.inf, "device": "mobile"}, "record 0: feature 'amount' must be finite"),
        ({"amount": 1.0, "device": None}, "record 0: feature 'device' is required"),
        ({"amount": 1.0, "device": ["mobile"]}, "record 0: feature 'device' must be a string"),
    ],
)
def test_bad_values_are_refused_with_the_feature_named(
    record: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=f"^{message}"):
        encode_records([record], MODEL)


def test_output_formats() -> None:
    body, kind = output_fn([0.25, 0.75], "application/json")
    assert kind == "application/json"
    assert json.loads(body) == {
        "predictions": [{"score": 0.25, "label": False}, {"score": 0.75, "label": True}]
    }
    assert output_fn([0.25, 0.75], "text/csv") == (b"0.25\n0.75\n", "text/csv")
    with pytest.raises(InputError) as info:
        output_fn([0.1], "image/png")
    assert info.value.status == 406


def test_the_handler_keeps_sagemaker_and_awswrangler_off_the_import_path() -> None:
    # the consumer's path must stay light: importing the handler imports neither SDK
    code = (
        "import sys, retrain.handler, infra.dispatcher; "
        "print(sorted(m for m in ('sagemaker', 'awswrangler') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
