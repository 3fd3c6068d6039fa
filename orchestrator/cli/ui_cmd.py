"""``medn ui``: the MLflow UI on the project's store (study -> variants -> folds)."""

# No `from __future__ import annotations`: Typer reads the signature.
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
LINKS_SHOWN = 10


def local_addresses() -> list[str]:
    """This machine's addresses others can reach it by, the one of the default route first
    (the address a connected UDP socket gets; nothing is sent)."""
    found: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.254", 9))  # routed, not a broadcast: picks the interface only
        found.append(s.getsockname()[0])
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.append(str(info[4][0]))
    usable = []
    for address in dict.fromkeys(found):
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(address)
            if not ip.is_loopback and not ip.is_unspecified and not ip.is_link_local:
                usable.append(address)
    return usable


def served_names(host: str) -> list[str]:
    """The names and addresses the UI is reached by when bound to ``host`` (first: the one to
    print)."""
    if host in LOOPBACK:
        return ["127.0.0.1"]
    if host in WILDCARD:
        # addresses first: the host name may resolve to loopback only (as in many containers)
        names = [*local_addresses(), *(n for n in (socket.gethostname(), socket.getfqdn())
                                       if _reachable_name(n))]
        return list(dict.fromkeys(n for n in names if n and n not in LOOPBACK)) or ["127.0.0.1"]
    return [host]


def _reachable_name(name: str) -> bool:
    """Whether ``name`` resolves to an address other machines can use (not loopback)."""
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return any(not ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def url_host(name: str) -> str:
    """``name`` as the host part of a URL (IPv6 addresses in brackets)."""
    return f"[{name}]" if ":" in name else name


def mlflow_ui_args(tracking_uri: str, host: str, port: int, workers: int = 1,
                   allowed_hosts: list[str] | None = None) -> list[str]:
    """The ``mlflow ui`` command line serving ``tracking_uri`` (artifacts of a sqlite store
    under ``<db folder>/artifacts``, where the study writer puts them).

    Bound beyond loopback, MLflow's own guards (allowed Host headers, CORS origins: localhost
    and private networks by default) would answer 403 to a browser on another machine, so the
    machine's names and addresses, and ``allowed_hosts``, are allowed explicitly."""
    from orchestrator.tracking import default_artifact_location

    args = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
            "--host", host, "--port", str(port), "--workers", str(workers)]
    artifacts = default_artifact_location(tracking_uri)
    if artifacts is not None:
        args += ["--default-artifact-root", artifacts]
    if host not in LOOPBACK:
        names = list(dict.fromkeys([*served_names(host), socket.gethostname(),
                                    socket.getfqdn(), *(allowed_hosts or []), "localhost",
                                    "127.0.0.1"]))
        hosts = [h for name in names for h in (url_host(name), f"{url_host(name)}:{port}")]
        origins = [f"http://{url_host(name)}:{port}" for name in names]
        args += ["--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", ",".join(origins)]
    return args


def experiment_links(tracking_uri: str, port: int, host: str) -> list[tuple[str, str]]:
    """(experiment, deep link to its runs) for the store's newest experiments."""
    from mlflow import MlflowClient

    from orchestrator.tracking import ui_link

    experiments = MlflowClient(tracking_uri).search_experiments(
        max_results=LINKS_SHOWN, order_by=["last_update_time DESC"])
    return [(e.name, ui_link(e.experiment_id, port=port, host=url_host(host)))
            for e in experiments if e.name != "Default"]


def ui_command(
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    ] = None,
    port: Annotated[int, typer.Option(help="port to serve on")] = 5000,
    host: Annotated[str, typer.Option(
        help="address to bind (0.0.0.0 to reach it from other machines)")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="server worker processes")] = 1,
    allowed_hosts: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="another name browsers use to reach this machine (a DNS alias, "
                               "a proxy), allowed besides its own names; repeatable")] = None,
) -> None:
    """Start the MLflow UI on the project's store and print its address (Ctrl-C stops it)."""
    from orchestrator.cli.common import fail
    from orchestrator.execution.environment import apply_env_defaults
    from orchestrator.tracking import TrackingStoreError, resolve_tracking_uri

    apply_env_defaults(mlflow=True)
    console = Console()
    try:
        uri = resolve_tracking_uri(tracking_uri)
    except TrackingStoreError as err:
        raise fail(str(err), 2) from None
    if uri.startswith(("http://", "https://")):
        console.print(f"The store {uri} is a tracking server: open it in a browser; "
                      "there is nothing to start.")
        return
    shown = served_names(host)[0]
    console.print(f"MLflow UI for {escape(uri)} at [bold]http://{url_host(shown)}:{port}[/] "
                  "(Ctrl-C to stop)", highlight=False)
    if shown != "127.0.0.1":
        others = "".join(f"http://{url_host(n)}:{port}, " for n in served_names(host)[1:])
        console.print(f"  also {others}on this machine http://127.0.0.1:{port}",
                      highlight=False, soft_wrap=True)
    with contextlib.suppress(Exception):  # a store not created yet has no experiments
        for name, link in experiment_links(uri, port, shown):
            console.print(f"  {escape(name)}: {link}", highlight=False, soft_wrap=True)
    # Same process group as this command: Ctrl-C in the terminal, or a signal to the group,
    # reaches the server and its workers too; a SIGTERM to this process alone is passed on.
    # One worker and no GenAI job runner: browsing runs needs neither, and each costs a process.
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    process = subprocess.Popen(mlflow_ui_args(uri, host, port, workers, allowed_hosts),
                               env=env)

    def stop(signum: int, frame: object) -> None:
        del signum, frame
        with contextlib.suppress(ProcessLookupError):
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
