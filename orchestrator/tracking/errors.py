"""What can go wrong with tracking, as exceptions whose message is the user's ``error:`` line.

Every class derives from ``TrackingError``; a command prints ``str(err)`` and exits 2 for the
store-setup errors (``TrackingStoreError`` and its subclasses), and stops the study at once for
``DiskFull``. No message ever holds a password: the tracking URI in them is redacted.
"""

from __future__ import annotations


class TrackingError(RuntimeError):
    """Base class of the tracking errors; the message says what happened and what to do."""


class TrackingUnavailable(TrackingError):
    """The tracking store stayed unreachable through every retry (results stay in the spool)."""


class TrackingStoreError(TrackingError):
    """The tracking store cannot be used as asked (unsupported URI, read-only, a deleted
    experiment, ...): retrying would not help, the user must change something."""


class ExperimentBusy(TrackingStoreError):
    """Another medn process is running the same experiment right now."""


class DiskFull(TrackingError):
    """A write failed because the disk (or quota) is full; the message names the path."""

    def __init__(self, path: object, detail: str = "") -> None:
        self.path = str(path)
        super().__init__(
            f"disk full at {self.path}{f' ({detail})' if detail else ''}: the study stopped; "
            "results already spooled are kept. Free some space and re-run the same command "
            "(finished folds are not trained again).")


class SpoolError(TrackingError):
    """A spool file that cannot be read; the message names the file."""
