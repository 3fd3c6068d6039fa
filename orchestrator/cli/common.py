"""What every command shares: the ``error:`` line, and running a study with its outcome
turned into an exit code (0 complete, 1 incomplete or failed, 2 bad input, 128+N a signal)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_study_command(spec: Any, options: Any, executor: str) -> Any:
    """``run_study`` with every expected failure as an ``error:`` line and an exit code."""
    from orchestrator.execution import (
        Interrupted,
        StudyError,
        StudyInputError,
        run_study,
    )
    from orchestrator.studies.options import StudyOptionsError
    from orchestrator.studies.spec import StudySpecError

    try:
        return run_study(spec, options, console=console, executor=executor)
    except (StudyInputError, StudySpecError, StudyOptionsError) as err:
        raise fail(str(err), 2) from None
    except StudyError as err:
        raise fail(str(err), 1) from None
    except KeyboardInterrupt as err:
        from orchestrator.execution import interrupts

        name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
        code = err.exit_code if isinstance(err, Interrupted) else 130
        interrupts.reset()  # reported here, with what it means for the runs
        raise fail(f"interrupted by {name}: folds already finished are kept in MLflow and the "
                   "parent runs were ended as KILLED; run the same command again to resume",
                   code) from None
