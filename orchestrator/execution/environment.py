"""Process-wide environment defaults for Ray (and, through the tracking package, MLflow), set
once when a command starts.

They are applied by the CLI at start-up and by ``run_study`` (for Python callers), never at
import, so importing medn's modules changes nothing in the process. Each is a default: a value
the user exported wins.
"""

from __future__ import annotations

import os

ENV_DEFAULTS: dict[str, str] = {
    # Tune's legacy reporter at verbose=0 prints nothing; the new output engine would print
    # its own progress lines over the live table. Read when ray.tune is imported.
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial CSV/JSON logs
    "RAY_DEDUP_LOGS": "0",
    # medn routes SIGINT and SIGTERM itself (orchestrator.execution.interrupts) and stops Tune
    # through its stopper; Tune's own SIGINT handler would swallow the first Ctrl-C silently.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


def apply_env_defaults(mlflow: bool = False) -> None:
    """Set every ``ENV_DEFAULTS`` variable the user has not set; with ``mlflow`` also the
    tracking package's MLflow defaults (importing it loads MLflow: only where a command will
    use it anyway)."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if mlflow:
        from orchestrator.tracking import configure_mlflow_environment

        configure_mlflow_environment()
