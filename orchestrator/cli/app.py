"""The ``medn`` command: one Typer app assembled from one module per command group."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="medn",
    help="Run the MEDN micro-expression recognition experiments: LOSO trainings and studies "
         "on Ray Tune, tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Annotation sheets, preprocessing and the synthetic dataset.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


def _register_commands() -> None:
    # Each module adds its commands; imported here so that `medn --help` stays one place.
    from orchestrator.cli import (
        data_prepare,
        data_preview,
        data_synth,
        data_validate,
        report_cmd,
        study_cmd,
        train_cmd,
        ui_cmd,
    )

    data_validate.register(data_app)
    data_prepare.register(data_app)
    data_preview.register(data_app)
    data_synth.register(data_app)
    train_cmd.register(app)
    study_cmd.register(app)
    report_cmd.register(app)
    ui_cmd.register(app)


_register_commands()


def main() -> None:
    """Entry point of the ``medn`` console script: the process-wide environment defaults of
    Ray and MLflow, Ctrl-C and SIGTERM routed to one handler, then the command."""
    from orchestrator.execution.environment import apply_env_defaults
    from orchestrator.execution.interrupts import Interrupted, install, received

    apply_env_defaults()
    install()
    try:
        app()
    except SystemExit as exit_:
        # a command without its own handling ends on a signal as Typer's exit 130: say which
        # signal and exit as shells report it, 128 + the signal (130 Ctrl-C, 143 SIGTERM)
        name = received()
        if name is not None and exit_.code in (1, 130):
            print(f"error: interrupted by {name}", file=sys.stderr)
            raise SystemExit(Interrupted(name).exit_code) from None
        raise
