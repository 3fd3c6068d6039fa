"""Study execution: ``run_study(spec, options) -> StudyOutcome`` on Ray Tune or locally.

See ``docs/execution.md``. Importing this package is cheap; Ray is imported when a study runs.
"""

from orchestrator.execution.context import StudyError, StudyInputError
from orchestrator.execution.interrupts import Interrupted
from orchestrator.execution.outcome import StudyOutcome, VariantOutcome
from orchestrator.execution.runner import run_study

__all__ = ["Interrupted", "StudyError", "StudyInputError", "StudyOutcome", "VariantOutcome",
           "run_study"]
