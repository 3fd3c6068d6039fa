"""``medn ui``: the MLflow UI on the project's store (study -> variants -> folds)."""

# No `from __future__ import annotations`: Typer reads the signature.
import contextlib
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console


def mlflow_ui_args(tracking_uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow ui`` command line serving ``tracking_uri`` (artifacts of a sqlite store
    under ``<db folder>/artifacts``, where the study writer puts them)."""
    from orchestrator.tracking import default_artifact_location

    args = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
            "--host", host, "--port", str(port), "--workers", str(workers)]
    artifacts = default_artifact_location(tracking_uri)
    if artifacts is not None:
        args += ["--default-artifact-root", artifacts]
    return args


def ui_command(
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    ] = None,
    port: Annotated[int, typer.Option(help="port to serve on")] = 5000,
    host: Annotated[str, typer.Option(
        help="address to bind (0.0.0.0 to reach it from other machines)")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="server worker processes")] = 1,
) -> None:
    """Start the MLflow UI on the project's store and print its address (Ctrl-C stops it)."""
    from orchestrator.tracking import resolve_tracking_uri

    console = Console()
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        console.print(f"The store {uri} is a tracking server: open it in a browser; "
                      "there is nothing to start.")
        return
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    console.print(f"MLflow UI for {uri} at [bold]http://{shown}:{port}[/] (Ctrl-C to stop)",
                  highlight=False)
    # Same process group as this command: Ctrl-C in the terminal, or a signal to the group,
    # reaches the server and its workers too; a SIGTERM to this process alone is passed on.
    # One worker and no GenAI job runner: browsing runs needs neither, and each costs a process.
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    process = subprocess.Popen(mlflow_ui_args(uri, host, port, workers), env=env)

    def stop(signum: int, frame: object) -> None:
        del signum, frame
        with contextlib.suppress(ProcessLookupError):
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
        code = process.wait()
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``medn ui`` to ``app``."""
    app.command("ui")(ui_command)
