"""The training window read from the lake: partition pruning, exact time bounds, time split."""

from __future__ import annotations

from datetime import timedelta

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.exceptions import RetrainError
from etl.synthetic import generate_frame
from retrain.data import Window, read_window, time_split
from tests.functional.retrain_lake import T0, write_lake

pytestmark = pytest.mark.functional


def test_reads_exactly_the_last_hours_and_splits_in_time_order(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN 6 hours of rows (1 row every 6 s) in hourly partitions
    contract = load_contract()
    aws.client("s3").create_bucket(Bucket="lake")
    frame = generate_frame(3600, seed=4, start=T0, events_per_second=1 / 6)
    paths = write_lake(
        frame, session=aws.session, endpoint=emulator, bucket="lake", contract=contract
    )
    assert len({p.rsplit("/", 1)[0] for p in paths}) == 6

    # WHEN the window is the 2.5 hours before T0 + 5h
    window = Window.last_hours(T0 + timedelta(hours=5), 2.5)
    got = read_window(
        aws.session, emulator, bucket="lake", lake_prefix="lake", contract=contract, window=window
    )

    # THEN it holds exactly the rows with start <= event_time < end, oldest first
    start, end = T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=5)
    want = frame[(frame.event_time >= start) & (frame.event_time < end)]
    assert len(got) == len(want) == 1500
    assert got.event_time.is_monotonic_increasing
    assert sorted(got.transaction_id) == sorted(want.transaction_id)
    assert list(got.columns) == [f.name for f in contract.fields]

    # AND the split holds out the newest quarter, nothing older than the boundary
    split = time_split(got, contract, holdout_fraction=0.25, window=window)
    assert (len(split.train), len(split.holdout)) == (1125, 375)
    assert split.train.event_time.max() < split.holdout.event_time.min()
    assert split.boundary == split.holdout.event_time.iloc[0].to_pydatetime()


def test_an_empty_window_is_a_clear_error(aws: AwsClients, emulator: str) -> None:
    # GIVEN a lake bucket without any rows
    aws.client("s3").create_bucket(Bucket="lake")
    # WHEN / THEN reading the window names the path and the fix
    with pytest.raises(RetrainError, match="no lake data under s3://lake/lake/card_transactions/"):
        read_window(
            aws.session,
            emulator,
            bucket="lake",
            lake_prefix="lake",
            contract=load_contract(),
            window=Window.last_hours(T0, 1),
        )
