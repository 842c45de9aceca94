"""The consumer's scoring path: a decoded batch scored with the served model, by the model's own
code/inference.py, equal to what the model server answers; swapped when the pointer changes; a
bad model keeps the old one."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from consumers.scoring import BatchScorer
from etl.synthetic import Scenario, generate_frame
from retrain.artifacts import pack, unpack
from retrain.backends.local import write_pointer
from retrain.inference import input_fn, model_fn, predict_fn
from retrain.train import train

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two models as a deploy extracts them into the cache (files + code/inference.py)."""
    root = tmp_path_factory.mktemp("scoring")
    frame = generate_frame(2000, seed=3, scenario=Scenario.DRIFT, drift_at=0.5)
    out = []
    for name, part in (("alpha", frame.iloc[:1000]), ("beta", frame.iloc[1000:])):
        (root / f"{name}-data").mkdir()
        part.to_parquet(root / f"{name}-data" / "train.parquet")
        train(
            root / f"{name}-data",
            root / f"{name}-out",
            hyperparameters={"model_id": name, "max_iter": 20},
        )
        archive = pack(root / f"{name}-out", root / f"{name}.tar.gz")
        out.append(unpack(archive, root / "cache" / name))
    return out[0], out[1]


def _batch(n: int) -> pa.Table:
    return pa.Table.from_pandas(
        generate_frame(n, seed=11, scenario=Scenario.STATIONARY), preserve_index=False
    )


def test_scores_equal_the_model_servers_and_follow_the_pointer(models: tuple[Path, Path]) -> None:
    alpha, beta = models
    cache = alpha.parent
    clock = [0.0]
    scorer = BatchScorer(cache / "CURRENT", check_every_s=5.0, clock=lambda: clock[0])
    batch = _batch(300)
    # GIVEN no model deployed yet: nothing to score with
    assert scorer.score(batch) is None
    # WHEN alpha is deployed (the pointer names it)
    write_pointer(cache, alpha)
    clock[0] += 5
    got = scorer.score(batch)
    # THEN the batch's scores are what the model server's path gives for the same records
    assert got is not None and got.model_version == "alpha"
    body = batch.to_pandas().to_json(orient="records", date_format="iso").encode()
    want = predict_fn(input_fn(body, "application/json"), model_fn(str(alpha)))
    assert got.scores.tolist() == pytest.approx(want, rel=1e-12)
    # WHEN beta is deployed: picked up at the next check, not before
    write_pointer(cache, beta)
    assert scorer.score(batch).model_version == "alpha"  # type: ignore[union-attr]
    clock[0] += 5
    assert scorer.score(batch).model_version == "beta"  # type: ignore[union-attr]
    assert scorer.swaps == 2


def test_a_model_that_fails_to_load_keeps_the_old_one(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    alpha, _ = models
    broken = alpha.parent / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "model.json").write_text(json.dumps({"features": []}))
    pointer = tmp_path / "CURRENT"
    pointer.write_text(str(alpha))
    clock = [0.0]
    scorer = BatchScorer(pointer, check_every_s=1.0, clock=lambda: clock[0])
    assert scorer.score(_batch(10)).model_version == "alpha"  # type: ignore[union-attr]
    pointer.write_text(str(broken))
    clock[0] += 1
    assert scorer.score(_batch(10)).model_version == "alpha"  # type: ignore[union-attr]
    assert scorer.errors == 1
