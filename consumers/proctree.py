"""Process trees on Linux: children that die with their parent, and finding a tree's members.

The supervisor (``driftline consume``) owns a tree: one process group per daemon (the java
process, the relay it starts per shard, the record processor behind each relay). Every level dies
with the level above it, whatever kills it:

* a daemon gets ``PR_SET_PDEATHSIG`` = SIGKILL from the supervisor (:func:`die_with_parent`);
* a relay reads the daemon's pipe: its end of file (the daemon is gone) ends it;
* a record processor gets ``PR_SET_PDEATHSIG`` from its relay when the relay starts it; one forked
  by the fleet's warm server (:mod:`consumers.warm`) watches its relay's connection instead.

Java's children do not get the death signal: the JVM starts them from pool threads that end
while the process lives on, and the kernel sends the signal when the *thread* ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
_PROC = Path("/proc")


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``Popen(preexec_fn=...)`` that makes the child get ``sig`` when its parent thread ends.

    For a process that starts children from its main thread (which lives as long as the
    process). libc is loaded here, in the parent: between fork and exec the child makes only the
    ``prctl`` and ``getppid`` system calls (no import, no allocation that could wait on a lock
    another thread held at fork). Linux only; elsewhere the child is left as it is.
    """
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    prctl = ctypes.CDLL(name, use_errno=True).prctl if name else None
    parent = os.getpid()

    def preexec() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would ever signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of ``pid`` from /proc, or None when it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its closing parenthesis.
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def _pids() -> list[int]:
    if not _PROC.is_dir():
        return []
    return [int(e.name) for e in _PROC.iterdir() if e.name.isdigit()]


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``."""
    return sorted(p for p in _pids() if (st := _stat(p)) is not None and st[0] == pid)


def descendants_of(pid: int) -> list[int]:
    """Every PID below ``pid`` in the process tree."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children_of(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return sorted(out)


def group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid``."""
    return sorted(p for p in _pids() if (st := _stat(p)) is not None and st[1] == pgid)


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone or unreadable)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
