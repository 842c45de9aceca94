"""The label join's snapshots on the emulator's S3: saved under the last sequence they include,
loaded at exactly the checkpoint, older ones pruned; a restored join replays to the same state."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from etl.aws import AwsClients
from etl.exceptions import LakeWriteError
from etl.quality import ClassificationWindow
from etl.quality_join import LabelJoin
from etl.quality_state import JoinStateStore, snapshot_key

BUCKET = "driftline-test-quality"
SHARD = "shardId-000000000000"


@pytest.fixture
def store(aws: AwsClients) -> JoinStateStore:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return JoinStateStore(aws.client("s3"), BUCKET, "card_transactions")


def test_save_load_at_the_checkpoint_and_prune(store: JoinStateStore) -> None:
    # GIVEN a join that saw two flushes; the second was saved but never checkpointed
    join = LabelJoin(ClassificationWindow(), horizon_s=3600)
    join.add_predictions(["a", "b"], [0.2, 0.9], [0.0, 1.0])
    store.save(SHARD, "9", join.snapshot())
    join.add_labels(["a", "b"], [0, 1], [5.0, 6.0])
    store.save(SHARD, "10", join.snapshot())
    store.save(SHARD, "123", join.snapshot())
    # WHEN the restarted processor loads at its checkpoint "10"
    doc = store.load(SHARD, "10")
    assert doc is not None
    back = LabelJoin.restore(doc, ClassificationWindow())
    # THEN it has what the join had at 10 (compared as integers: "9" < "10" < "123")
    assert store.sequences(SHARD) == ["9", "10", "123"]
    assert back.window.figures().auc == 1.0 and back.counts.joined == 2
    # AND no checkpoint / a non-numeric one / a missing snapshot: nothing to restore
    assert store.load(SHARD, None) is None
    assert store.load(SHARD, "TRIM_HORIZON") is None
    assert store.load(SHARD, "11") is None
    # AND pruning below the checkpoint keeps it and what lies past it
    assert store.prune(SHARD, "10") == 1
    assert store.sequences(SHARD) == ["10", "123"]


def test_a_failed_save_blocks_the_checkpoint_with_a_clear_error(aws: AwsClients) -> None:
    store = JoinStateStore(aws.client("s3"), "no-such-bucket", "card_transactions")
    with pytest.raises(LakeWriteError, match=r"label join's state .*\(NoSuchBucket\)"):
        store.save(SHARD, "1", {"version": 1})
    assert snapshot_key("quality-state", "t", SHARD, "1").endswith("1.json")
    with pytest.raises(ClientError):
        store.load(SHARD, "1")
