"""SageMaker data-capture lines (pure): written and read back, each encoding; the bounded buffer."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime

import pytest

from etl.capture import (
    CaptureBuffer,
    LineProblem,
    MalformedLineError,
    capture_key,
    capture_line,
    predictions_of,
)
from etl.capture_lake import read_capture


def test_a_json_invocation_round_trips_in_sagemakers_shape() -> None:
    body = json.dumps({"instances": [{"id": "a", "x": 1}, {"id": "b", "x": 2}]}).encode()
    out = json.dumps({"predictions": [{"score": 0.1, "label": False}, {"score": 0.9}]}).encode()
    line = capture_line(
        body, "application/json", out, "application/json", event_id="e", when=1.5, model_version="v"
    )
    doc = json.loads(line)
    assert doc["eventVersion"] == "0"
    assert doc["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": body.decode(),
        "encoding": "JSON",
    }
    assert doc["eventMetadata"] == {
        "eventId": "e",
        "inferenceTime": "1970-01-01T00:00:01.500000Z",
        "modelVersion": "v",
    }
    got = [(p.record_id("id"), p.score, p.features["x"]) for p in predictions_of(line)]
    assert got == [("a", 0.1, 1), ("b", 0.9, 2)]


def test_csv_output_and_binary_input_are_encoded_like_sagemaker() -> None:
    line = capture_line(
        b"\xff\x00", "application/x-npy", b"0.5\n", "text/csv", event_id="e", when=0.0
    )
    doc = json.loads(line)["captureData"]
    assert doc["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(doc["endpointInput"]["data"]) == b"\xff\x00"
    assert doc["endpointOutput"]["encoding"] == "CSV"
    assert predictions_of(line) == []  # no JSON records: nothing to join by id


def test_a_line_whose_inputs_and_outputs_disagree_yields_nothing() -> None:
    line = capture_line(
        b'[{"id": 1}, {"id": 2}]',
        "application/json",
        b'{"predictions": [{"score": 0.3}]}',
        "application/json",
        event_id="e",
        when=0.0,
    )
    assert predictions_of(line) == []


def test_capture_keys_follow_sagemakers_layout() -> None:
    key = capture_key("/capture/", "ep", "AllTraffic", 3600 * 25, "x")
    assert key == "capture/ep/AllTraffic/1970/01/02/01/x.jsonl"


def test_the_buffer_never_blocks_and_counts_what_it_drops() -> None:
    buf = CaptureBuffer(max_lines=100)
    threads = [
        threading.Thread(target=lambda: [buf.offer("l") for _ in range(50)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (buf.offered, len(buf), buf.dropped) == (200, 100, 100)
    assert len(buf.drain(30)) == 30 and len(buf.drain()) == 70 and len(buf) == 0
    buf.count_dropped(5)
    assert buf.dropped == 105
    with pytest.raises(ValueError, match="max_lines"):
        CaptureBuffer(0)


def _good_line(n_in: int = 1, n_out: int = 1) -> str:
    body = json.dumps([{"id": f"r{i}"} for i in range(n_in)]).encode()
    out = json.dumps({"predictions": [{"score": 0.5}] * n_out}).encode()
    return capture_line(body, "application/json", out, "application/json", event_id="e", when=0.0)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", LineProblem.NOT_JSON),
        ('{"eventVersion": "0"}', LineProblem.NOT_CAPTURE),
        ('{"captureData": {"endpointInput": [], "endpointOutput": {}}}', LineProblem.NOT_CAPTURE),
        (
            capture_line(
                b'{"id": 1}',
                "application/json",
                b'{"predictions": [{"p": 1}]}',
                "application/json",
                event_id="e",
                when=0.0,
            ),
            LineProblem.BAD_BODY,
        ),
        (_good_line(2, 1), LineProblem.COUNT_MISMATCH),
    ],
)
def test_a_strict_read_names_what_is_wrong_with_a_line(line: str, problem: LineProblem) -> None:
    # GIVEN a line that is not a readable data-capture line  WHEN read strictly
    with pytest.raises(MalformedLineError) as info:
        predictions_of(line, strict=True)
    # THEN the problem is named, with a detail
    assert info.value.problem is problem and info.value.detail


def test_read_capture_keeps_good_lines_and_dead_letters_the_rest_with_their_place() -> None:
    # GIVEN an object of a good line, a blank line, garbage, bytes that are not UTF-8 and a CSV
    csv = capture_line(b"1,2\n", "text/csv", b"0.5\n", "text/csv", event_id="c", when=0.0)
    body = b"\n".join([_good_line(2, 2).encode(), b"", b"garbage", b"\xff\xfe", csv.encode(), b""])
    # WHEN read
    found, dead = read_capture(body, "s3://b/capture/x.jsonl")
    # THEN the good line's two predictions, the CSV line skipped (no id), and two dead letters
    assert [p.record_id("id") for p in found] == ["r0", "r1"]
    assert [(d.reason, d.line) for d in dead] == [("capture_not_json", 3), ("capture_not_utf8", 4)]
    doc = json.loads(dead[1].to_json(datetime(2026, 1, 5, tzinfo=UTC)))
    assert doc["payload_base64"] == base64.b64encode(b"\xff\xfe").decode()
    assert doc["capture_object"] == "s3://b/capture/x.jsonl" and doc["line"] == 4
    assert json.loads(dead[0].to_json(datetime(2026, 1, 5, tzinfo=UTC)))["payload"] == "garbage"
