"""Starting Ray for a study: a local instance by default, or an existing cluster.

Ray's own log lines never reach the console: the driver-side ``ray`` loggers write to a file
(``ray_log_path``), worker output stays in Ray's session logs (``log_to_driver=False``), and
Tune's console reporter is off (``verbose=0``, ``RAY_AIR_NEW_OUTPUT=0``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.execution import interrupts
from orchestrator.execution.context import StudyError, StudyInputError
from orchestrator.execution.environment import apply_env_defaults
from orchestrator.execution.faults import fault_env

SHIP_CODE_ENV = "MEDN_RAY_SHIP_CODE"


@dataclass(frozen=True)
class RaySession:
    """Where Ray runs for this study and where its logs are."""

    address: str | None  # None: a local instance started by this process
    log_file: Path
    session_dir: str
    cluster_cpus: float
    cluster_gpus: float

    @property
    def local(self) -> bool:
        """Whether this process started its own local Ray instance."""
        return self.address is None

    def trial_resources(self, options: Any) -> tuple[float, float]:
        """``(gpus, cpus)`` per trial from the study options, checked against this cluster;
        a ``StudyInputError`` naming the flag when a trial could never be placed."""
        gpus = options.resolve_gpus_per_trial(self.cluster_gpus)
        cpus = float(options.cpus_per_trial)
        if cpus > self.cluster_cpus:
            raise StudyInputError(f"--cpus-per-trial {cpus:g}: the Ray cluster has only "
                                  f"{self.cluster_cpus:g} CPUs")
        return gpus, cpus


def _route_ray_logs(log_file: Path) -> logging.Handler:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray", "ray.tune", "ray.train"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(
                    old, logging.FileHandler):
                logger.removeHandler(old)
        logger.propagate = name != "ray"  # children reach "ray"'s file handler, not the root
    ray_logger = logging.getLogger("ray")
    ray_logger.addHandler(handler)
    ray_logger.setLevel(logging.INFO)
    return handler


def _runtime_env(address: str | None) -> dict[str, Any] | None:
    """What workers of a cluster need: this checkout's code (``py_modules``, unless
    ``MEDN_RAY_SHIP_CODE=0`` because the image has it) and the testing fault hook."""
    env: dict[str, Any] = {}
    if address is not None and os.environ.get(SHIP_CODE_ENV, "1") != "0":
        import medn
        import orchestrator

        env["py_modules"] = [str(Path(medn.__file__).parent),
                             str(Path(orchestrator.__file__).parent)]
    if fault_env():
        env["env_vars"] = fault_env()
    return env or None


@contextmanager
def ray_session(address: str | None, log_file: Path,
                num_cpus: int | None = None) -> Iterator[RaySession]:
    """Ray for one study run; a local instance is shut down at the end, a cluster is left.

    ``address``: None -> ``RAY_ADDRESS`` if set, else a local instance with ``num_cpus`` (default
    ``os.cpu_count()``); ``host:port`` (GCS) or ``ray://host:10001`` (Ray client) -> that cluster.
    If Ray is already initialised in this process (tests, notebooks) it is used as it is.
    """
    apply_env_defaults()  # before ray is imported: its output settings are read at import
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    ours = interrupts.installed()
    handler = _route_ray_logs(log_file)
    started = False
    # ray.init drops the "ray" logger's handlers; its own warnings during start-up come from
    # ray._private.* loggers, which keep this one while it runs.
    init_logger = logging.getLogger("ray._private")
    init_logger.addHandler(handler)
    try:
        if not ray.is_initialized():
            common: dict[str, Any] = dict(
                include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                configure_logging=False, runtime_env=_runtime_env(address))
            try:
                if address is None:
                    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **common)
                else:
                    ray.init(address=address, **common)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
                ray.shutdown()  # whatever half-started is stopped
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                text = " ".join(str(err).split())[:300]
                raise StudyError(f"could not start or reach {where} ({type(err).__name__}: "
                                 f"{text}); Ray's log: {log_file}") from None
            except SystemExit as exit_:  # ray.init's own SIGTERM handler: sys.exit(15)
                ray.shutdown()
                if exit_.code == signal.SIGTERM and ours:
                    raise interrupts.Interrupted("SIGTERM") from None
                raise
            except KeyboardInterrupt:
                ray.shutdown()
                raise
            started = True
            if ours:  # ray.init replaced the SIGTERM handler with a bare sys.exit
                interrupts.install()
            # ray.init(configure_logging=False) cleared the "ray" logger's handlers
            logging.getLogger("ray").addHandler(handler)
        init_logger.removeHandler(handler)
        resources = ray.cluster_resources()
        try:
            session_dir = ray.get_runtime_context().get_node_id() and str(
                ray._private.worker.global_worker.node.get_session_dir_path())
        except Exception:  # Ray client: the session folder is on the head node
            session_dir = "(on the Ray head node: /tmp/ray/session_latest/logs)"
        yield RaySession(address=address, log_file=log_file, session_dir=session_dir,
                         cluster_cpus=float(resources.get("CPU", 0.0)),
                         cluster_gpus=float(resources.get("GPU", 0.0)))
    finally:
        if started:
            ray.shutdown()
        logging.getLogger("ray").removeHandler(handler)
        init_logger.removeHandler(handler)
        handler.close()


def local_raylet() -> Any:
    """The ``Popen`` of the raylet this process started (None for a cluster's, or when Ray's
    internals do not expose it)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    processes = getattr(node, "all_processes", {}) or {}
    infos = processes.get("raylet") or []
    return getattr(infos[0], "process", None) if infos else None


@contextmanager
def raylet_watchdog(on_lost: Callable[[int, int | None], None],
                    interval_s: float = 0.05) -> Iterator[None]:
    """Call ``on_lost(pid, returncode)`` from a watcher thread if the local raylet dies.

    Without it the driver ends with Ray's text only, or none: a put into the dead raylet's
    object store ends the process at once (exit 1, no Python handler runs). The watcher polls
    every ``interval_s`` so ``on_lost`` can print medn's error line and end the open parent
    runs; an exception that leaves the block while the raylet is dead is reported the same way.
    """
    raylet = local_raylet()
    if raylet is None:
        yield
        return
    done = threading.Event()
    once = threading.Lock()

    def lost_if_dead_here() -> bool:
        """Report a dead raylet from this thread; False if it lives or another thread has."""
        code = raylet.poll()
        if code is None or not once.acquire(blocking=False):  # reported once, by one thread
            return False
        on_lost(raylet.pid, code)
        return True

    def watch() -> None:
        while not done.wait(interval_s):
            if raylet.poll() is not None:
                lost_if_dead_here()
                return

    thread = threading.Thread(target=watch, name="medn-raylet-watchdog", daemon=True)
    thread.start()
    try:
        yield
    except Exception:
        # Ray's own error can reach this thread before the watcher's next poll: the raylet's
        # death is then still what the user must be told
        if raylet.poll() is not None and not lost_if_dead_here():
            thread.join()  # the watcher is already ending the process its way
        raise
    finally:
        done.set()
        thread.join(timeout=2 * interval_s)


def stop_local_ray(timeout_s: float = 5.0) -> None:
    """Kill every process of the local Ray this process started (best effort, bounded): for
    when Ray cannot be shut down in order (its raylet is gone)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return
    killer = threading.Thread(target=lambda: node.kill_all_processes(
        check_alive=False, allow_graceful=False), daemon=True)
    killer.start()
    killer.join(timeout_s)
    # the workers (children of the dead raylet) name this session's folder on their command
    # line; its agents retitle themselves ("ray::DashboardAgent") but keep log files open in it
    session_dir = str(node.get_session_dir_path())
    session = os.path.basename(session_dir)
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(proc.name)
            if pid == os.getpid():
                continue
            if session in (proc / "cmdline").read_bytes().decode(errors="replace") or any(
                    os.readlink(fd).startswith(session_dir) for fd in (proc / "fd").iterdir()):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue
