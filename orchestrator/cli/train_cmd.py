"""``medn train``: one configuration's full LOSO as a one-variant study, trained in this process
(no Ray) through the same path as ``medn study``, and logged to MLflow."""

# No `from __future__ import annotations`: Typer reads these signatures at registration time.
import inspect
from pathlib import Path
from typing import Any

import typer

from orchestrator.cli.common import fail, run_study_command
from orchestrator.cli.options import options_command

DOC = (
    "Train one configuration with leave-one-subject-out cross-validation and log it to MLflow."
    "\n\nRe-running the same command resumes: folds already FINISHED in MLflow are skipped. "
    "The configuration is built as: the --profile, then the --config file, then the data "
    "flags, then --set items.")

CONFIG = inspect.Parameter(
    "config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
    default=typer.Option(None, "--config", help="a YAML configuration file"))


def _train(given: dict[str, Any], extra: dict[str, Any]) -> None:
    from orchestrator.studies.options import StudyOptions, StudyOptionsError
    from orchestrator.studies.single import train_spec
    from orchestrator.studies.spec import StudySpecError

    try:
        spec, from_file = train_spec(given.get("variant") or "default", extra.get("config"))
        options = StudyOptions(**{**from_file, **given})
    except (StudySpecError, StudyOptionsError, ValueError) as err:
        raise fail(str(err), 2) from None
    outcome = run_study_command(spec, options, executor="local")
    if outcome.problems:  # already printed one by one: results wait in the spool
        raise fail("the training is incomplete (see the problems above); re-run the same "
                   "command to resume it", 1)
    failed = sorted({s for v in outcome.variants for s in v.missing
                     if not options.folds or s in options.folds})
    if failed:
        raise fail(f"fold(s) {', '.join(failed)} did not finish (their failed runs are kept in "
                   "MLflow); re-run the same command to retry them", 1)


train = options_command("train", _train, extra=[CONFIG], doc=DOC)


def register(app: typer.Typer) -> None:
    """Add ``medn train`` to ``app``."""
    app.command("train")(train)
