"""Exclusive file locks between medn processes: ``flock`` on a file beside the store.

The kernel drops a ``flock`` when its process ends, however it ends (``kill -9`` included), so a
lock is never left behind by a dead driver. The holder writes who it is into the file, so that a
process that finds the lock taken can say by whom. Inside one process a lock is re-entrant
(counted per path): two writers of the same experiment in one driver share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_HELD: dict[str, list[int]] = {}  # resolved path -> [fd, count] of locks this process holds
_HELD_GUARD = threading.Lock()


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: process id, host, start time (epoch s) and command line."""

    pid: int | None
    host: str
    since: float | None
    command: str

    def describe(self) -> str:
        """``pid 1234, host node-1, since 18:02:11 UTC, command: medn study x`` (what is known)."""
        parts = [f"pid {self.pid}" if self.pid else "pid unknown",
                 f"host {self.host or 'unknown'}"]
        if self.since:
            parts.append("since " + time.strftime("%H:%M:%S UTC", time.gmtime(self.since)))
        if self.command:
            parts.append(f"command: {self.command}")
        return ", ".join(parts)


def _holder_of(fd: int) -> LockHolder:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    pid = info.get("pid")
    since = info.get("since")
    return LockHolder(pid=pid if isinstance(pid, int) else None, host=str(info.get("host", "")),
                      since=float(since) if isinstance(since, int | float) else None,
                      command=str(info.get("command", "")))


def _me() -> bytes:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else ""
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                       "command": command}).encode()


def try_claim(path: Path) -> LockHolder | None:
    """Take the exclusive lock on ``path`` without waiting; None when taken (now held by this
    process until ``release``), else who holds it."""
    key = str(Path(path).resolve())
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            return None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Never O_TRUNC: the file holds the current holder's identity for others to read.
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_of(fd)
            os.close(fd)
            return holder
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, _me(), 0)
        _HELD[key] = [fd, 1]
        return None


def release(path: Path) -> None:
    """Release one hold of the lock on ``path`` taken by ``try_claim`` (the last one unlocks)."""
    key = str(Path(path).resolve())
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
        fd = held[0]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block, waiting for it if another process has
    it (for short critical sections such as creating a store)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
