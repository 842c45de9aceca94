"""The relay between the KCL daemon and a record processor: a crashed processor is restarted in
place from the last acknowledged checkpoint, and the daemon sees an unbroken protocol.

The daemon's side is played by the test over pipes; the processor is a real child process that
speaks the multilang protocol (no KCL library), writes what it saw to a file and dies once on a
record whose data is ``crash``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from consumers.relay import Relay, last_sequence, records_after

CHILD = textwrap.dedent(
    """
    import base64, json, os, sys
    token, seen = sys.argv[1], sys.argv[2]
    def say(doc):
        sys.stdout.write("\\n" + json.dumps(doc) + "\\n"); sys.stdout.flush()
    def note(text):
        with open(seen, "a") as f: f.write(text + "\\n")
    for line in sys.stdin:
        msg = json.loads(line)
        action = msg["action"]
        if action == "initialize":
            note("init:" + str(msg["sequenceNumber"]))
        if action == "processRecords":
            for r in msg["records"]:
                note(r["sequenceNumber"])
                if base64.b64decode(r["data"]) == b"crash" and not os.path.exists(token):
                    open(token, "w").close(); os._exit(9)
            last = msg["records"][-1]["sequenceNumber"] if msg["records"] else None
            if last is not None and int(last) % 4 == 0:
                say({"action": "checkpoint", "sequenceNumber": last, "subSequenceNumber": None})
                reply = json.loads(sys.stdin.readline())
                assert reply["action"] == "checkpoint", reply
                late = any(base64.b64decode(r["data"]) == b"late" for r in msg["records"])
                if late and not os.path.exists(token + ".late"):
                    open(token + ".late", "w").close(); os._exit(9)
        say({"action": "status", "responseFor": action})
    """
)


def records(first: int, last: int, crash_at: int | None = None, data: bytes = b"crash") -> bytes:
    recs = [
        {
            "action": "record",
            "data": base64.b64encode(data if n == crash_at else b"ok").decode(),
            "partitionKey": "pk",
            "sequenceNumber": str(n),
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": 1,
        }
        for n in range(first, last + 1)
    ]
    return json.dumps(
        {"action": "processRecords", "records": recs, "millisBehindLatest": 0}
    ).encode()


class FakeDaemon:
    """Sends actions, answers checkpoint requests, collects what the relay writes back."""

    def __init__(self, relay: Relay, read_fd: int) -> None:
        self.relay = relay
        self.reader = os.fdopen(read_fd, "rb")
        self.statuses: list[str] = []
        self.checkpoints: list[str] = []

    def send(self, line: bytes) -> None:
        self.relay.events.put(("daemon", line + b"\n"))
        while True:
            msg: dict[str, Any] = json.loads(self.reader.readline())
            if msg["action"] == "status":
                self.statuses.append(msg["responseFor"])
                return
            self.checkpoints.append(msg["sequenceNumber"])
            reply = {"action": "checkpoint", "sequenceNumber": msg["sequenceNumber"], "error": None}
            self.relay.events.put(("daemon", json.dumps(reply).encode() + b"\n"))


def start(tmp_path: Path, **kwargs: Any) -> tuple[Relay, FakeDaemon, threading.Thread, list[int]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cmd = [sys.executable, str(script), str(tmp_path / "token"), str(tmp_path / "seen")]
    read_fd, write_fd = os.pipe()
    relay = Relay(cmd, out=os.fdopen(write_fd, "wb"), **kwargs)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(relay.run()), daemon=True)
    thread.start()
    return relay, FakeDaemon(relay, read_fd), thread, codes


def test_a_crashed_processor_restarts_from_the_checkpoint_and_replays_what_came_after(
    tmp_path: Path,
) -> None:
    relay, daemon, thread, codes = start(tmp_path)
    init = {"action": "initialize", "shardId": "shardId-0", "sequenceNumber": "TRIM_HORIZON"}
    # GIVEN a processor that checkpointed 4 and then got 5-6 without checkpointing
    daemon.send(json.dumps(init).encode())
    daemon.send(records(1, 4))
    daemon.send(records(5, 6))
    # WHEN it dies on record 8 of the next batch, and the stream goes on
    daemon.send(records(7, 9, crash_at=8))
    daemon.send(records(10, 12))
    relay.events.put(("daemon_eof",))
    thread.join(30)
    # THEN the daemon saw every call answered once and the two checkpoints, nothing else
    assert daemon.statuses == ["initialize"] + ["processRecords"] * 4
    assert daemon.checkpoints == ["4", "12"]
    # AND the new processor started at checkpoint 4 and got 5-9 again before 10-12
    seen = (tmp_path / "seen").read_text().split()
    first_child = ["init:TRIM_HORIZON", "1", "2", "3", "4", "5", "6", "7", "8"]
    second_child = ["init:4", "5", "6", "7", "8", "9", "10", "11", "12"]
    assert seen == [*first_child, *second_child]
    assert relay.restarts == 1 and codes == [0]


def test_a_call_flushed_and_checkpointed_before_the_crash_is_not_processed_again(
    tmp_path: Path,
) -> None:
    relay, daemon, thread, codes = start(tmp_path)
    init = {"action": "initialize", "shardId": "shardId-0", "sequenceNumber": "TRIM_HORIZON"}
    daemon.send(json.dumps(init).encode())
    # GIVEN a processor that checkpoints 8 (the whole call) and dies before answering the call
    daemon.send(records(5, 8, crash_at=8, data=b"late"))
    daemon.send(records(9, 10))
    relay.events.put(("daemon_eof",))
    thread.join(30)
    # THEN the new processor starts at 8 and gets that call without its records, then 9-10
    assert daemon.statuses == ["initialize", "processRecords", "processRecords"]
    assert daemon.checkpoints == ["8"]
    seen = (tmp_path / "seen").read_text().split()
    assert seen == ["init:TRIM_HORIZON", "5", "6", "7", "8", "init:8", "9", "10"]
    assert relay.restarts == 1 and codes == [0]


def test_the_relay_gives_up_after_too_many_crashes(tmp_path: Path) -> None:
    relay, daemon, thread, codes = start(tmp_path, max_crashes=0)
    init = {"action": "initialize", "shardId": "shardId-0", "sequenceNumber": "TRIM_HORIZON"}
    daemon.send(json.dumps(init).encode())
    # WHEN the processor dies and no restart is allowed
    relay.events.put(("daemon", records(1, 3, crash_at=2) + b"\n"))
    thread.join(30)
    # THEN the relay exits with the processor's code: the daemon's own path takes over
    assert codes == [9] and relay.restarts == 0


def test_sequence_helpers_read_the_daemons_lines_without_parsing_them() -> None:
    line = records(7, 9)
    assert last_sequence(line) == 9
    kept = json.loads(records_after(line, 7))
    assert [r["sequenceNumber"] for r in kept["records"]] == ["8", "9"]
    assert last_sequence(records(1, 0)) is None
