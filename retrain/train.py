"""Training on this machine (Python 3.11): the contract and the drift baseline, then the job.

:mod:`retrain.fit` is the training job itself, the code that runs inside the SageMaker container
(Python 3.9, no ``etl.contract``/``etl.profile``). This module is its host-side front: it takes a
:class:`~etl.contract.Contract` (``--contract PATH``, the ``contract`` channel, or the shipped
example), builds the drift baseline of the training rows with ``etl.profile`` when no
``baseline`` channel brings one, and runs the same job. The retrain handler prepares the two
channels itself (:func:`baseline_json`) and the training backends run :mod:`retrain.fit`.

Inputs come from the environment SageMaker sets in a training container (``SM_CHANNEL_TRAIN``,
``SM_CHANNEL_TEST``, ``SM_CHANNEL_CONTRACT``, ``SM_CHANNEL_BASELINE``, ``SM_MODEL_DIR``,
``SM_OUTPUT_DATA_DIR``; hyperparameters as ``--key value``). Run locally::

    SM_CHANNEL_TRAIN=data/train SM_MODEL_DIR=/tmp/model python -m retrain.train --max-iter 100
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from etl.contract import Contract, load_contract, parse_contract
from etl.exceptions import ContractError, RetrainError
from retrain.fit import (
    BASELINE_FILE,
    CONTRACT_FILE,
    METRICS_FILE,
    Job,
    TrainingSpec,
    job_hyperparameters,
    labelled,
    labels,
    missing_environment,
    optional_dir,
    parse_args,
    read_channel,
    run_job,
    setup_logging,
)
from retrain.inference import LoadedModel, encode_frame

__all__ = [
    "BASELINE_FILE",
    "CONTRACT_FILE",
    "METRICS_FILE",
    "baseline_json",
    "labels",
    "main",
    "score_frame",
    "spec_of",
    "train",
]


def spec_of(contract: Contract) -> TrainingSpec:
    """What the training job reads from ``contract.json`` (the contract's canonical form)."""
    return TrainingSpec.from_doc(contract.to_dict(), contract.name)


def score_frame(model: LoadedModel, data: pd.DataFrame) -> list[float]:
    """Scores of every row of a typed DataFrame (batch evaluation)."""
    return model.predict_scores(encode_frame(data, model))


def baseline_json(data: pd.DataFrame, contract: Contract, *, source: str) -> str:
    """The drift baseline of the labelled training rows (``etl.profile``), as the job ships it."""
    from etl.profile import build_profile

    return build_profile(labelled(data, spec_of(contract)), contract, source=source).to_json()


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
    contract = contract or load_contract()
    source = str((hyperparameters or {}).get("source", train_dir))
    job = Job(
        train_dir=Path(train_dir),
        model_dir=Path(model_dir),
        spec=spec_of(contract),
        baseline_json=baseline_json(read_channel(train_dir), contract, source=source),
        test_dir=None if test_dir is None else Path(test_dir),
        output_dir=None if output_dir is None else Path(output_dir),
    )
    return run_job(job, hyperparameters)


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


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    setup_logging()
    env = os.environ if env is None else env
    args = parse_args(argv)
    if missing_environment(env):
        return 2
    hp = job_hyperparameters(args, env)
    try:
        contract = job_contract(args.contract, env)
        baseline = optional_dir(env, "SM_CHANNEL_BASELINE")
        if baseline is None:
            train(
                env["SM_CHANNEL_TRAIN"],
                env["SM_MODEL_DIR"],
                test_dir=env.get("SM_CHANNEL_TEST"),
                output_dir=env.get("SM_OUTPUT_DATA_DIR"),
                hyperparameters=hp,
                contract=contract,
            )
        else:
            job = Job(
                train_dir=Path(env["SM_CHANNEL_TRAIN"]),
                model_dir=Path(env["SM_MODEL_DIR"]),
                spec=spec_of(contract),
                baseline_json=(baseline / BASELINE_FILE).read_text(),
                test_dir=optional_dir(env, "SM_CHANNEL_TEST"),
                output_dir=optional_dir(env, "SM_OUTPUT_DATA_DIR"),
            )
            run_job(job, hp)
    except (RetrainError, ContractError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
