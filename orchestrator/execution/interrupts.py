"""Ctrl-C and SIGTERM, handled alike.

Schedulers, ``timeout`` and container stops send SIGTERM, a terminal sends SIGINT; a run must end
the same clean way on both: trials stopped, every parent run it opened ended (never left
RUNNING), results already received logged, and a message saying how to resume.

``install()`` (called once by the CLI) routes both signals to one handler. While Ray Tune runs,
``graceful(stop)`` makes the first signal call ``stop`` (Tune then ends its trials and returns);
a second signal, or a signal outside ``graceful``, raises ``Interrupted`` at once; inside
``deferred()`` it waits for the end of the section.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``signal_name`` says which."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process ended by that signal."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


_on_signal: list[Callable[[], None]] = []
_received: list[str] = []
_deferring: list[bool] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    _received.append(name)
    if _deferring:  # inside a write that must not be cut: raised when it ends
        return
    if _on_signal and len(_received) == 1:
        _on_signal[-1]()
        return
    raise Interrupted(name)


def install() -> None:
    """Route SIGINT and SIGTERM to the one handler (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def installed() -> bool:
    """Whether ``install`` routed the signals here (libraries such as Ray may replace it)."""
    return signal.getsignal(signal.SIGTERM) is _handler


def received() -> str | None:
    """The first signal received since ``reset`` (None: none)."""
    return _received[0] if _received else None


def reset() -> None:
    """Forget signals received so far (a new run starts)."""
    _received.clear()


@contextmanager
def graceful(stop: Callable[[], None]) -> Iterator[None]:
    """While inside, the first signal calls ``stop`` instead of raising."""
    _on_signal.append(stop)
    try:
        yield
    finally:
        _on_signal.remove(stop)


def raise_if_received() -> None:
    """Raise ``Interrupted`` when a signal arrived (after a graceful stop)."""
    name = received()
    if name is not None:
        raise Interrupted(name)


@contextmanager
def deferred() -> Iterator[None]:
    """A section a signal must not cut (creating a run and recording that it exists, logging
    a fold): a signal that arrives inside raises ``Interrupted`` when the section ends."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    if not _deferring and not _on_signal:
        raise_if_received()
