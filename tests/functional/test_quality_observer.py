"""Model quality on the stream for inline labels: the consumer's quality observer scores decoded
batches with the served model, closes a window and publishes it next to the drift metrics; the
published AUC is scikit-learn's on the same rows and scores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from consumers.app import build_observer
from consumers.metrics import MetricsPublisher
from consumers.quality_observer import Observers, QualityObserver
from consumers.scoring import BatchScorer
from etl.aws import AwsClients
from etl.contract import load_contract
from etl.settings import load_settings
from etl.synthetic import Scenario, generate_frame
from infra.commands.quality import latest_figures
from retrain.artifacts import pack, unpack
from retrain.backends.local import write_pointer
from retrain.inference import encode_frame, model_fn
from retrain.train import train

pytestmark = pytest.mark.functional
CONTRACT = load_contract()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality-obs")
    (root / "data").mkdir()
    generate_frame(1500, seed=6).to_parquet(root / "data" / "train.parquet")
    train(root / "data", root / "out", hyperparameters={"model_id": "m1", "max_iter": 20})
    cache = root / "models" / "card-transactions"
    model_dir = unpack(pack(root / "out", root / "m.tar.gz"), cache / "m1")
    write_pointer(cache, model_dir)
    return cache / "CURRENT"


def test_a_closed_window_publishes_the_models_auc_on_the_inline_labels(
    aws: AwsClients, served: Path
) -> None:
    cw = aws.client("cloudwatch")
    obs = QualityObserver(
        CONTRACT,
        BatchScorer(served),
        MetricsPublisher(cw, "Driftline", stream_name="s-events"),
        window_s=60,
        min_labels=500,
    )
    frame = generate_frame(900, seed=21, scenario=Scenario.STATIONARY)
    batches = [frame.iloc[i : i + 300] for i in range(0, 900, 300)]
    # WHEN three batches are observed and the window is flushed before and after its time
    for i, b in enumerate(batches):
        obs.observe(pa.Table.from_pandas(b, preserve_index=False), 0, now=float(i))
        obs.flush(now=float(i))
    assert obs.closed == []  # not 60 s yet
    obs.flush(now=61.0)
    # THEN one window closed with every row labelled, its AUC scikit-learn's on the model's scores
    (figures,) = obs.closed
    model = model_fn(str(served.read_text()))
    scores = model.predict_scores(encode_frame(frame, model))
    assert figures.labels == figures.predictions == 900 and obs.errors == 0
    assert figures.auc == pytest.approx(roc_auc_score(frame["is_fraud"], scores), abs=1e-12)
    # AND CloudWatch has it under the stream, where the quality alarm looks
    got = latest_figures(cw, "Driftline", "s-events", hours=1, now=dt.datetime.now(dt.UTC))
    assert got["QualityAUC"]["value"] == pytest.approx(figures.auc)  # type: ignore[index]


def test_the_consumer_builds_it_only_when_asked(aws: AwsClients, served: Path) -> None:
    base = {"stream_name": "s-events", "lake_bucket": "b", "endpoint_url": aws.endpoint_url}
    cache = str(served.parent.parent)
    off = load_settings(base, env={}, config_path=None)
    on = load_settings(
        {**base, "quality_scoring": True, "model_cache_dir": cache}, env={}, config_path=None
    )
    assert not isinstance(build_observer(off, CONTRACT, aws), Observers)
    both = build_observer(on, CONTRACT, aws)
    assert isinstance(both, Observers)
    quality = both.observers[-1]
    assert isinstance(quality, QualityObserver) and quality.scorer.pointer == served.resolve()
