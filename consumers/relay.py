"""The daemon's child per shard: a relay that restarts a crashed record processor in place.

The KCL 3.x MultiLangDaemon ends itself when a child it started dies: the child's end of stream
fails the pending protocol call, ``MultiLangShardRecordProcessor.stopProcessing`` calls
``System.exit(1)``, and the JVM's shutdown hook then shuts down *every* shard of that worker
gracefully and waits up to ``shutdownGraceMillis`` for the crashed one, whose thread is the one
blocked in ``System.exit``. No setting changes that. So the daemon's child is this relay, which
does no data work and does not crash with the processor behind it:

* it passes every line between the daemon and the processor unchanged;
* it keeps what a restart from the last checkpoint needs: the ``initialize`` message, the last
  checkpoint the daemon acknowledged, and the ``processRecords`` messages delivered after it (the
  same records the KCL would fetch again; bounded by ``--max-buffer-bytes``);
* when the processor dies it starts a new one, initializes it at that checkpoint, replays those
  messages (the processor's own replay of pending flush ranges then applies, and its checkpoints
  go to the daemon as usual), and resumes: the daemon, and the worker's other shards, never notice.

When the relay cannot recover (no buffer after an overflow, more than ``--max-crashes`` within a
minute) it exits with the processor's code, and the daemon's own path (exit, supervisor restart,
lease re-taken from the checkpoint) takes over. Run by the daemon's launcher script::

    python -m consumers.relay --max-buffer-bytes 268435456 -- python -u -m consumers.app
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from consumers.proctree import die_with_parent
from consumers.warm import SERVER_ENV, SERVER_PID_ENV, WarmChild
from consumers.warm import request as warm_request

_ACTION = re.compile(rb'"action"\s*:\s*"(\w+)"')
_SEQ_KEY = b'"sequenceNumber"'
_SEQ_VALUE = re.compile(rb'\s*:\s*"(\d+)"')
_DAEMON, _DAEMON_EOF, _CHILD, _CHILD_EOF = "daemon", "daemon_eof", "child", "child_eof"


def action_of(line: bytes) -> str | None:
    """The message's action (the first ``action`` key: the daemon writes it first)."""
    m = _ACTION.search(line, 0, 200)
    return m.group(1).decode() if m else None


def last_sequence(line: bytes) -> int | None:
    """The last record's sequence number in a ``processRecords`` line, without parsing it."""
    at = line.rfind(_SEQ_KEY)
    m = _SEQ_VALUE.match(line, at + len(_SEQ_KEY)) if at >= 0 else None
    return int(m.group(1)) if m else None


def records_after(line: bytes, checkpoint: int) -> bytes:
    """The ``processRecords`` line keeping only the records past ``checkpoint``."""
    msg = json.loads(line)
    msg["records"] = [r for r in msg["records"] if int(r["sequenceNumber"]) > checkpoint]
    return json.dumps(msg, separators=(",", ":")).encode()


@dataclass
class _Delivered:
    line: bytes
    last: int | None
    size: int


@dataclass
class Relay:
    command: list[str]
    max_buffer_bytes: int = 256 * 1024 * 1024
    max_crashes: int = 5
    out: IO[bytes] = field(default_factory=lambda: sys.stdout.buffer)
    events: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    init: dict[str, Any] | None = None
    checkpoint: str | None = None
    #: processRecords lines delivered after ``checkpoint`` (or overflow: too many to keep).
    buffer: deque[_Delivered] = field(default_factory=deque)
    buffered: int = 0
    overflow: bool = False
    delivered_last: int | None = None
    #: The daemon's action awaiting a status (it sends one at a time), and whether it was sent.
    outstanding: bytes | None = None
    outstanding_sent: bool = False
    #: Checkpoints the processor asked for, in order, with the processor's generation.
    asked: deque[tuple[int, str | None]] = field(default_factory=deque)
    #: Lines a new processor gets before ``outstanding``; their statuses stay here.
    replay: deque[bytes] = field(default_factory=deque)
    replaying: bool = False
    #: A processor died while a checkpoint it asked for was unanswered: restart after the answer.
    waiting_acks: bool = False
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0
    child: subprocess.Popen[bytes] | WarmChild | None = None
    generation: int = 0
    #: The warm processors' server (:mod:`consumers.warm`); None: start processors here.
    server: str | None = None
    server_pid: int | None = None
    _preexec: Callable[[], None] = field(default_factory=die_with_parent)

    # -- processes -------------------------------------------------------------------------
    def start_child(self) -> None:
        self.generation += 1
        warm = None
        if self.server:
            warm = warm_request(self.server, os.environ, server_pid=self.server_pid)
        self.child = warm or subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=self._preexec,  # noqa: PLW1509 (one prctl; see consumers.proctree)
        )
        threading.Thread(
            target=self._read_child, args=(self.child, self.generation), daemon=True
        ).start()

    def _read_child(self, child: subprocess.Popen[bytes] | WarmChild, gen: int) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip():
                self.events.put((_CHILD, gen, line))
        self.events.put((_CHILD_EOF, gen))

    def read_daemon(self, source: IO[bytes]) -> None:
        for line in source:
            if line.strip():
                self.events.put((_DAEMON, line))
        self.events.put((_DAEMON_EOF,))

    def to_child(self, line: bytes) -> None:
        assert self.child is not None and self.child.stdin is not None
        try:
            self.child.stdin.write(line if line.endswith(b"\n") else line + b"\n")
            self.child.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it died: its end of file is on the way

    def to_daemon(self, line: bytes) -> None:
        self.out.write(line if line.endswith(b"\n") else line + b"\n")
        self.out.flush()

    @property
    def healthy(self) -> bool:
        return not (self.replaying or self.waiting_acks)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        self.start_child()
        while True:
            event = self.events.get()
            kind = event[0]
            if kind == _DAEMON:
                self.on_daemon(event[1])
            elif kind == _DAEMON_EOF:
                return self.finish()
            elif event[1] != self.generation:
                continue  # a dead processor's last words
            elif kind == _CHILD:
                self.on_child(event[2])
            else:
                code = self.on_child_exit()
                if code is not None:
                    return code

    def on_daemon(self, line: bytes) -> None:
        action = action_of(line)
        if action == "checkpoint":
            gen = self._acknowledged(line)
            if gen == self.generation:
                self.to_child(line)
            if self.waiting_acks and not self.asked:
                self.waiting_acks = False
                self._restart()
            return
        if action == "initialize":
            self.init = json.loads(line)
            self.checkpoint = self.init.get("sequenceNumber")
        elif action == "processRecords":
            self._keep(line)
        self.outstanding, self.outstanding_sent = line, False
        if self.healthy:
            self._send_outstanding()

    def on_child(self, line: bytes) -> None:
        action = action_of(line)
        if action == "checkpoint":
            self.asked.append((self.generation, json.loads(line).get("sequenceNumber")))
            self.to_daemon(line)
        elif action == "status" and self.replaying:
            self._next_replay()
        else:
            if action == "status":
                self.outstanding = None
            self.to_daemon(line)

    def on_child_exit(self) -> int | None:
        """Restart the processor from the last checkpoint; the exit code when giving up."""
        assert self.child is not None
        code = self.child.wait()
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > 60.0:
            self.crashes.popleft()
        if self.init is None or self.overflow:
            why = "more records since the checkpoint than it keeps" if self.overflow else ""
            return self._give_up(code, why or "it died before initialize")
        if len(self.crashes) > self.max_crashes:
            return self._give_up(code, f"{len(self.crashes)} crashes within 60 s")
        _report("record processor died; restarting it from the last checkpoint", code=code)
        if self.asked:
            self.waiting_acks = True  # the daemon answers them: the call they belong to is open
        else:
            self._restart()
        return None

    def finish(self) -> int:
        """The daemon closed our input: close the processor's, wait for it, exit with its code."""
        assert self.child is not None
        if self.child.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.child.stdin.close()
        try:
            return self.child.wait(60)
        except subprocess.TimeoutExpired:
            self.child.kill()
            return self.child.wait()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _keep(self, line: bytes) -> None:
        last = last_sequence(line)
        if last is None:
            return  # no records: nothing to replay
        self.delivered_last = last
        if self.overflow:
            return
        self.buffer.append(_Delivered(line, last, len(line)))
        self.buffered += len(line)
        if self.buffered > self.max_buffer_bytes:
            self.overflow = True
            self.buffer.clear()
            self.buffered = 0

    def _acknowledged(self, line: bytes) -> int | None:
        """Record a checkpoint the daemon made; returns the generation that asked for it."""
        if not self.asked:
            return None
        gen, seq = self.asked.popleft()
        if json.loads(line).get("error") is not None:
            return gen
        if seq is None:  # "everything delivered so far" (shard end)
            self.buffer.clear()
            self.buffered, self.overflow = 0, False
            return gen
        self.checkpoint = seq
        done = int(seq) if seq.isdigit() else None
        if done is None:
            return gen
        while self.buffer and (last := self.buffer[0].last) is not None and last <= done:
            self.buffered -= self.buffer.popleft().size
        if self.overflow and self.delivered_last is not None and done >= self.delivered_last:
            self.overflow = False  # nothing delivered is past the checkpoint any more
        return gen

    def _restart(self) -> None:
        self.restarts += 1
        self._plan_replay()
        self.start_child()
        self._next_replay()

    def _plan_replay(self) -> None:
        assert self.init is not None
        init = json.dumps(dict(self.init, sequenceNumber=self.checkpoint)).encode()
        done = int(self.checkpoint) if self.checkpoint and self.checkpoint.isdigit() else None
        lines: list[bytes] = []
        current = self.outstanding
        action = action_of(current) if current is not None else None
        if action == "initialize":
            self.outstanding = init
        else:
            lines.append(init)
        for d in self.buffer:
            if d.line is not current:
                kept = records_after(d.line, done) if done is not None else d.line
                if b'"records":[]' not in kept:
                    lines.append(kept)
        if current is not None and action == "processRecords" and done is not None:
            # It may lie wholly at or below the checkpoint (flushed and acknowledged before the
            # processor died without answering it): then it goes with no records.
            self.outstanding = records_after(current, done)
        self.replay = deque(lines)
        self.replaying = True
        self.outstanding_sent = False  # the new processor has not seen it

    def _next_replay(self) -> None:
        if self.replay:
            self.to_child(self.replay.popleft())
            return
        self.replaying = False
        if not self.waiting_acks:
            self._send_outstanding()

    def _send_outstanding(self) -> None:
        if self.outstanding is not None and not self.outstanding_sent:
            self.outstanding_sent = True
            self.to_child(self.outstanding)

    def _give_up(self, code: int, why: str) -> int:
        _report(f"record processor died; relay exits ({why})", code=code)
        return code if code > 0 else 1


def _report(msg: str, **extra: Any) -> None:
    """A real error: on stderr, where the daemon logs it at ERROR."""
    doc = {"level": "ERROR", "logger": "driftline.relay", "msg": msg, **extra}
    sys.stderr.write(json.dumps(doc) + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="relay between the KCL daemon and a processor")
    parser.add_argument("--max-buffer-bytes", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--max-crashes", type=int, default=5)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    relay = Relay(command, args.max_buffer_bytes, args.max_crashes)
    relay.server = os.environ.get(SERVER_ENV) or None
    relay.server_pid = int(os.environ.get(SERVER_PID_ENV) or 0) or None
    threading.Thread(target=relay.read_daemon, args=(sys.stdin.buffer,), daemon=True).start()
    sys.exit(relay.run())


if __name__ == "__main__":
    main()
