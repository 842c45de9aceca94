"""The predict page: a form generated from the contract's features, checked against the contract
(type, bounds, allowed values, nullability), and the endpoint call.

The endpoint is the one ``driftline predict`` calls: the local model server's ``/invocations``,
or ``sagemaker-runtime:InvokeEndpoint`` with ``serving_backend=sagemaker``.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etl.contract import Contract, Field, FieldType
from infra.console.context import BackendError, Console, guard


class FormError(ValueError):
    """The form or raw JSON is invalid; ``errors`` maps field name -> message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True, slots=True)
class Input:
    """How one feature is asked for."""

    name: str
    kind: str  # number | select | text | bool
    step: str
    min: float | None
    max: float | None
    choices: tuple[str, ...]
    required: bool
    hint: str


def inputs(contract: Contract) -> list[Input]:
    return [_input(f) for f in contract.features]


def _input(f: Field) -> Input:
    required = not f.nullable
    bounds = " ".join(
        part
        for part in (
            f"≥ {f.min:g}" if f.min is not None else "",
            f"≤ {f.max:g}" if f.max is not None else "",
        )
        if part
    )
    if f.type == FieldType.BOOL:
        return Input(f.name, "bool", "", None, None, ("true", "false"), required, "true / false")
    if f.is_numeric:
        step = "1" if f.type == FieldType.INT else "any"
        hint = f"{f.type}" + (f", {bounds}" if bounds else "")
        return Input(f.name, "number", step, f.min, f.max, (), required, hint)
    if f.allowed:
        return Input(f.name, "select", "", None, None, f.allowed, required, "one of the allowed")
    return Input(f.name, "text", "", None, None, (), required, str(f.type))


def parse_form(contract: Contract, form: Mapping[str, str]) -> dict[str, Any]:
    """The record from form fields ``f.<name>``; an empty optional field is null."""
    record: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in contract.features:
        raw = str(form.get(f"f.{f.name}", "")).strip()
        try:
            record[f.name] = _value(f, raw)
        except ValueError as exc:
            errors[f.name] = str(exc)
    if errors:
        raise FormError(errors)
    return record


def _value(f: Field, raw: str) -> Any:
    if raw == "":
        if f.nullable:
            return None
        raise ValueError("is required")
    if f.type == FieldType.BOOL:
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw.lower() == "true"
    if f.is_numeric:
        try:
            value: float = int(raw) if f.type == FieldType.INT else float(raw)
        except ValueError:
            raise ValueError(
                f"expected {'an integer' if f.type == FieldType.INT else 'a number'}, got {raw!r}"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {raw!r}")
        if f.min is not None and value < f.min:
            raise ValueError(f"must be ≥ {f.min:g}, got {raw}")
        if f.max is not None and value > f.max:
            raise ValueError(f"must be ≤ {f.max:g}, got {raw}")
        return value
    if f.allowed and raw not in f.allowed:
        raise ValueError(f"must be one of {list(f.allowed)}, got {raw!r}")
    return raw


MAX_RAW_BYTES = 256 * 1024


def parse_raw(text: str) -> bytes:
    """Raw mode: any JSON the endpoint accepts (object, list, {"instances": [...]})."""
    body = text.encode()
    if len(body) > MAX_RAW_BYTES:
        raise FormError({"json": f"is {len(body)} bytes; at most {MAX_RAW_BYTES} are sent"})
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FormError({"json": f"is not valid JSON: {exc}"}) from None
    if not isinstance(doc, dict | list):
        raise FormError({"json": 'expected a JSON object, a list or {"instances": [...]}'})
    return body


@dataclass
class Answer:
    status: int
    body: Any
    model: str
    latency_ms: float
    endpoint: str


def invoke(console: Console, body: bytes) -> Answer:
    s = console.settings
    if s.serving_backend == "sagemaker":
        name = s.require("endpoint_name")
        runtime = console.clients.client("sagemaker-runtime")
        t0 = time.perf_counter()
        resp = guard(
            "SageMaker",
            f"sagemaker-runtime:InvokeEndpoint {name}",
            lambda: runtime.invoke_endpoint(
                EndpointName=name,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            ),
        )
        text = resp["Body"].read().decode()
        ms = (time.perf_counter() - t0) * 1000
        return Answer(200, _json(text), str(resp.get("InvokedProductionVariant", "")), ms, name)
    url = s.model_server_url
    if not url:
        raise BackendError(
            "model server", "POST /invocations", "no model server is running (the demo starts one)"
        )
    req = urllib.request.Request(
        f"{url.rstrip('/')}/invocations",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # loopback model server
            text, status, model = resp.read().decode(), resp.status, resp.headers.get("X-Model-Id")
    except urllib.error.HTTPError as exc:
        text, status, model = exc.read().decode(errors="replace"), exc.code, None
    except OSError as exc:
        raise BackendError("model server", f"POST {url}/invocations", str(exc)) from None
    ms = (time.perf_counter() - t0) * 1000
    return Answer(status, _json(text), model or "", ms, url)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
