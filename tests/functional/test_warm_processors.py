"""The warm processors' server (consumers.warm): a real server process forking real children.

Real parts: the server process (its imports done once), Unix sockets with descriptor passing,
fork, pipes, kill -9. The child function is a small echo instead of the record processor.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers import warm
from consumers.proctree import cmdline

SERVER = """
import os, sys
from consumers import warm

def echo():
    for line in sys.stdin:
        if line.strip() == "bye":
            sys.exit(3)
        sys.stdout.write(os.environ.get("GREETING", "") + line)
        sys.stdout.flush()

warm.serve(sys.argv[1], echo)
"""

HOLDER = """
import sys, time
from consumers import warm
child = warm.request(sys.argv[1], {})
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    name = f"driftline-test-{uuid.uuid4().hex[:12]}"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, name])
    try:
        yield name, proc
    finally:
        proc.kill()
        proc.wait(10)


def _first(name: str, env: dict[str, str]) -> warm.WarmChild:
    deadline = time.monotonic() + 120  # the server imports pyarrow, boto3, ... first
    while time.monotonic() < deadline:
        child = warm.request(name, env)
        if child is not None:
            return child
        time.sleep(0.2)
    raise AssertionError("the warm server never answered")


def test_a_forked_processor_gets_the_relays_pipes_environment_and_exit_code(server) -> None:  # type: ignore[no-untyped-def]
    name, proc = server
    # GIVEN a running server
    # WHEN a relay asks it for a processor with its environment
    child = _first(name, {"GREETING": "hi "})
    # THEN the processor is the server's child, reads the relay's pipe and answers on the other
    stat = Path(f"/proc/{child.pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) == proc.pid
    child.stdin.write(b"there\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"hi there\n"
    # AND its exit code reaches the relay through the server
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.2)
    child.stdin.write(b"bye\n")
    child.stdin.flush()
    assert child.wait(10) == 3
    assert child.stdout.read() == b""


def test_a_processor_dies_with_its_relay_whatever_kills_it(server) -> None:  # type: ignore[no-untyped-def]
    name, _ = server
    _first(name, {}).stdin.close()  # the server is up
    # GIVEN a relay holding a processor from the server
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, name], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        pid = int(holder.stdout.readline())
        assert cmdline(pid)
        # WHEN the relay is killed with SIGKILL
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        # THEN its processor goes too
        deadline = time.monotonic() + 10
        while cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cmdline(pid)
    finally:
        if holder.poll() is None:
            holder.kill()


def test_without_a_server_the_relay_is_told_to_start_the_processor_itself() -> None:
    # GIVEN no server under that name WHEN asked THEN the answer is None (the relay's Popen path)
    assert warm.request(f"driftline-none-{uuid.uuid4().hex}", {}, timeout=1.0) is None
