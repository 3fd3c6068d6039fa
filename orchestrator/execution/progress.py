"""The live study table: one row per (task, variant) with folds done / running / failed,
pooled UF1 / UAR once a variant is complete, and the elapsed time and an ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.execution.units import VariantState


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _metric(pooled: dict | None, name: str) -> str:
    if not pooled or pooled.get(name) is None:
        return "-"
    return f"{float(pooled[name]):.4f}"


def study_table(title: str, states: Iterable[VariantState], elapsed: float | None = None,
                eta: float | None = None, note: str = "") -> Table:
    """The table of a study's variants as it stands now."""
    states = list(states)
    tasks = {s.task for s in states}
    table = Table(title=title, title_justify="left", expand=False)
    if len(tasks) > 1:
        table.add_column("task", justify="right")
    for name, justify in (("variant", "left"), ("label", "left"), ("done", "right"),
                          ("running", "right"), ("failed", "right"), ("UF1", "right"),
                          ("UAR", "right"), ("status", "left")):
        table.add_column(name, justify=justify)
    styles = {"complete": "green", "incomplete": "red", "pruned": "yellow",
              "running": "cyan"}
    for s in states:
        done = len(s.finished | s.received)
        row = [s.unit_name, s.label, f"{done}/{len(s.subjects)}", str(len(s.running)),
               str(s.failed_attempts), _metric(s.pooled, "uf1"), _metric(s.pooled, "uar"),
               Text(s.status + (f" ({s.note})" if s.note else ""),
                    style=styles.get(s.status, ""))]
        table.add_row(*([str(s.task)] if len(tasks) > 1 else []), *row)
    caption = []
    if elapsed is not None:
        caption.append(f"elapsed {_clock(elapsed)}")
    if eta is not None:
        caption.append(f"ETA {_clock(eta)}")
    if note:
        caption.append(note)
    table.caption = "  ".join(caption) or None
    table.caption_justify = "left"
    return table


class LiveProgress:
    """A ``rich.live.Live`` view of a study run, refreshed a few times a second.

    ``note()`` supplies an extra line (e.g. "MLflow unreachable, results kept in the spool").
    The ETA is the remaining folds times the mean wall time per fold finished in this run.
    """

    def __init__(self, title: str, states: list[VariantState], console: Console | None = None,
                 note: Callable[[], str] | None = None, enabled: bool = True) -> None:
        self.title = title
        self.states = states
        self.console = console or Console(stderr=True)
        self.note = note or (lambda: "")
        self.enabled = enabled
        self.started = time.monotonic()
        self._initial_done = sum(len(s.finished | s.received) for s in states)
        self._live: Live | None = None

    def eta(self) -> float | None:
        """Seconds left at this run's pace so far (None until a fold finished)."""
        done = sum(len(s.finished | s.received) for s in self.states)
        new = done - self._initial_done
        left = sum(len(s.subjects) - len(s.finished | s.received) for s in self.states
                   if not s.pruned)
        if new <= 0:
            return None
        return (time.monotonic() - self.started) / new * left

    def __rich__(self) -> Group:
        """Rendered by ``Live`` on every refresh."""
        return Group(study_table(self.title, self.states, time.monotonic() - self.started,
                                 self.eta(), self.note()))

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._live = Live(self, console=self.console, refresh_per_second=2,
                              transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.__enter__()
        return self

    def refresh(self) -> None:
        """Redraw now (state changed)."""
        if self._live is not None:
            self._live.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)  # type: ignore[arg-type]
            self._live = None
            if not self.console.is_terminal:
                self.console.line()  # the last frame ends without a newline when piped
