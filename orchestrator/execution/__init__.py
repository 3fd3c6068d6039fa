"""Study execution on Ray Tune: ``run_study(spec, options) -> StudyOutcome``.

See ``docs/execution.md``. Importing this package is cheap; Ray is imported when a study runs.
"""

from orchestrator.execution.runner import (
    StudyError,
    StudyOutcome,
    VariantOutcome,
    run_study,
)

__all__ = ["StudyError", "StudyOutcome", "VariantOutcome", "run_study"]
