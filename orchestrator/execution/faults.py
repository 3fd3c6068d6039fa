"""A testing hook: make chosen folds raise, a given number of times, to exercise retries.

``MEDN_FAULT_INJECT="<variant>:<subject>:<times>[,...]"`` makes the training of that
(variant, fold) raise ``InjectedFault`` on its first ``<times>`` attempts (``*`` matches any
variant). Attempts are counted with marker files in ``MEDN_FAULT_DIR`` (default
``<tmp>/medn_faults``), a folder every worker must be able to read and write. Not for users: it
exists so that tests can show a failed attempt is retried and stays visible in MLflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FAULT_ENV = "MEDN_FAULT_INJECT"
FAULT_DIR_ENV = "MEDN_FAULT_DIR"


class InjectedFault(RuntimeError):
    """The failure ``MEDN_FAULT_INJECT`` asked for."""


def fault_env() -> dict[str, str]:
    """The fault-injection variables set in this process (to forward to cluster workers)."""
    return {k: os.environ[k] for k in (FAULT_ENV, FAULT_DIR_ENV) if os.environ.get(k)}


def parse_faults(text: str) -> list[tuple[str, str, int]]:
    """``"v:s:2,w:t:1"`` -> ``[("v", "s", 2), ("w", "t", 1)]``; a clear error otherwise."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.rsplit(":", 2)
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"{FAULT_ENV}: {item!r}: expected <variant>:<subject>:<times>")
        faults.append((parts[0], parts[1], int(parts[2])))
    return faults


def maybe_inject_fault(variant: str, subject: str) -> None:
    """Raise ``InjectedFault`` if ``MEDN_FAULT_INJECT`` asks for it on this attempt."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    folder = Path(os.environ.get(FAULT_DIR_ENV) or Path(tempfile.gettempdir()) / "medn_faults")
    for fault_variant, fault_subject, times in parse_faults(text):
        if fault_variant not in ("*", variant) or fault_subject != subject:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, times + 1):
            marker = folder / f"{variant}__{subject}__{attempt}"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.close(fd)
            raise InjectedFault(f"injected fault ({FAULT_ENV}) in variant {variant!r}, "
                                f"fold {subject!r}, attempt {attempt} of {times}")
