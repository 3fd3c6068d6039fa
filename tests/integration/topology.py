"""The cluster topology of docker/compose.yaml, without Docker, on 127.0.0.1 only.

A PostgreSQL server (``initdb``/``pg_ctl`` into a temporary directory), the MLflow tracking server
on it with served artifacts (started through ``docker/entrypoint.sh mlflow``, the image's own
role), and a two-node Ray cluster with token authentication (``ray start --head`` + a second
``ray start --address`` offering the custom resource ``node2``). Every process is started in its
own session and stopped by its process group and recorded pids, never by name.

Used by ``tests/integration/conftest.py``, and by hand for debugging::

    .venv/bin/python tests/integration/topology.py up      # prints the addresses and env
    .venv/bin/python tests/integration/topology.py down    # stops what `up` started
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script too
from tests.ports import free_port  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "docker" / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent
STATE_FILE = Path(tempfile.gettempdir()) / "medn-topology.json"
NODE2_RESOURCE = "node2"


class TopologyError(RuntimeError):
    """A part of the topology did not start; the message names it and its log file."""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _pgid_members(pgid: int) -> list[int]:
    """Pids whose process group or session is ``pgid`` (read from /proc). Every process here is
    started as the leader of a new session; Ray's raylet puts its workers in process groups of
    their own, but they stay in the session."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if pgid in (int(fields[2]), int(fields[3])):
                out.append(int(stat.split("/")[2]))
    return out


def _pids_naming(fragment: str) -> list[int]:
    """Pids whose command line contains ``fragment`` (a unique temporary path of ours)."""
    out = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if fragment in Path(cmdline).read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pid = int(cmdline.split("/")[2])
                if pid != os.getpid():
                    out.append(pid)
    return out


def kill_group(pgid: int, grace_s: float = 10.0, extra_pids: tuple[int, ...] = ()) -> None:
    """SIGTERM the process group/session ``pgid`` (and ``extra_pids``), then SIGKILL what is
    left."""
    targets = set(_pgid_members(pgid)) | set(extra_pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        for pid in targets | set(_pgid_members(pgid)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            targets = {p for p in targets | set(_pgid_members(pgid)) if _alive(p)}
            if not targets:
                return
            time.sleep(0.1)


def wait_http(url: str, timeout_s: float, log: Path | None = None, what: str = "") -> None:
    """Poll ``url`` until it answers 200, or raise TopologyError with the log's tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(
                url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.3)
    tail = _tail(log) if log else ""
    raise TopologyError(f"{what or url} did not answer within {timeout_s:.0f}s; log {log}:\n{tail}")


def _pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (the newest /usr/lib/postgresql/*/bin, else PATH)."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{bindir}/{name}", os.X_OK):
            return f"{bindir}/{name}"
    found = shutil.which(name)
    if not found:
        raise TopologyError(f"PostgreSQL's {name} was not found in /usr/lib/postgresql/*/bin "
                            f"nor on PATH; install the postgresql server package")
    return found


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1:``port`` with password (scram) auth."""

    root: Path
    port: int = field(default_factory=free_port)
    user: str = "medn"
    # Characters that must be URL-encoded in a SQLAlchemy URI: exercises the entrypoint.
    password: str = "p@ss:w/rd %medn"
    database: str = "mlflow"
    pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def _run(self, *cmd: str, env: dict[str, str] | None = None) -> None:
        # As root, PostgreSQL's binaries refuse to run: run them as the `postgres` user.
        user = "postgres" if os.geteuid() == 0 else None
        done = subprocess.run(cmd, user=user, env={**os.environ, **(env or {})},
                              capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise TopologyError(f"{' '.join(cmd[:2])} failed ({done.returncode}):\n"
                                f"{done.stdout}\n{done.stderr}\nlog {self.log}:\n{_tail(self.log)}")

    def start(self) -> None:
        """initdb (first time only), start the server, create the database."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        first = not self.datadir.exists()
        if first:
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            self._run(_pg_bin("initdb"), "-D", str(self.datadir), "-U", self.user,
                      "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8")
            pwfile.unlink()
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w",
                  "-t", "60", "-o", opts, "start")
        self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        if first:
            self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                      self.user, self.database, env={"PGPASSWORD": self.password})

    def stop(self) -> None:
        """pg_ctl stop (fast); SIGKILL the postmaster's group if it is still there."""
        if self.pid is None:
            return
        with contextlib.suppress(TopologyError, subprocess.TimeoutExpired):
            self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30",
                      "stop")
        if _alive(self.pid):
            kill_group(os.getpgid(self.pid), grace_s=5, extra_pids=(self.pid,))
        self.pid = None


@dataclass
class MlflowServer:
    """``mlflow server`` on PostgreSQL with ``--serve-artifacts``, via the image's entrypoint."""

    postgres: Postgres
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "mlflow-server.log"

    def start(self, timeout_s: float = 90.0) -> None:
        """Start (or restart: same port, same database) and wait for /health."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "POSTGRES_USER": self.postgres.user,
            "POSTGRES_PASSWORD": self.postgres.password,
            "POSTGRES_DB": self.postgres.database,
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.postgres.port),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(self.port),
            "MLFLOW_WORKERS": "1",
            "MLFLOW_ARTIFACTS_DESTINATION": str(self.root / "artifacts"),
        }
        self.starts += 1
        log = self.log.open("a")
        log.write(f"\n===== start #{self.starts} =====\n")
        log.flush()
        self.proc = subprocess.Popen(["bash", str(ENTRYPOINT), "mlflow"], env=env, cwd=self.root,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_http(f"{self.uri}/health", timeout_s, self.log, "the MLflow server")

    def stop(self) -> None:
        """Stop the server and its workers by process group."""
        if self.proc is not None:
            kill_group(self.proc.pid, grace_s=3, extra_pids=(self.proc.pid,))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None


@dataclass
class RayNode:
    """One ``ray start --block`` process, leader of its own process group."""

    name: str
    proc: subprocess.Popen
    log: Path

    def pids(self) -> list[int]:
        """Every live process of this node (its process group)."""
        return [p for p in _pgid_members(self.proc.pid) if _alive(p)]

    def raylet_pid(self) -> int:
        """The pid of this node's raylet."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                if exe.endswith(b"/raylet"):
                    return pid
        raise TopologyError(f"no raylet process in node {self.name}'s process group")


@dataclass
class RayCluster:
    """A head (1 CPU) and a second node (1 CPU + custom resource ``node2``), token auth on."""

    root: Path
    port: int = field(default_factory=free_port)
    nodes: dict[str, RayNode] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token_path(self) -> Path:
        return self.root / "auth_token"

    @property
    def temp_dir(self) -> Path:
        return self.root / "t"

    def env(self) -> dict[str, str]:
        """Environment every node and every driver of this cluster needs."""
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(self.temp_dir),
        }

    def _start_node(self, name: str, args: list[str]) -> RayNode:
        log = self.root / f"ray-{name}.log"
        env = {**os.environ, **self.env(),
               "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("RAY_ADDRESS", None)
        cmd = [str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1",
               "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats",
               "--object-store-memory", str(200 * 1024**2),
               "--dashboard-agent-listen-port", str(free_port()),
               "--temp-dir", str(self.temp_dir), *args]
        with log.open("a") as fh:
            proc = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        node = RayNode(name, proc, log)
        self.nodes[name] = node
        return node

    def alive_nodes(self) -> list[dict]:
        """The cluster's alive nodes as ``ray status`` sees them ({"resources": ...})."""
        code = (f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR', "
                "log_to_driver=False); print(json.dumps([n['Resources'] for n in ray.nodes() "
                "if n['Alive']]))")
        env = {**os.environ, **self.env()}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise TopologyError(f"cannot read the Ray cluster at {self.address}:\n"
                                f"{done.stderr[-2000:]}")
        return [{"resources": r} for r in json.loads(done.stdout.strip().splitlines()[-1])]

    def _wait_port(self, timeout_s: float, node: RayNode) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise TopologyError(f"ray start for {node.name} exited ({node.proc.returncode});"
                                    f" log {node.log}:\n{_tail(node.log)}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.3)
        raise TopologyError(f"the Ray head did not listen on {self.address} within "
                            f"{timeout_s:.0f}s; log {node.log}:\n{_tail(node.log)}")

    def start_head(self, timeout_s: float = 90.0) -> None:
        """Generate the cluster's token and start the head."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.token_path.exists():
            import secrets

            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        head = self._start_node("head", [
            "--head", "--port", str(self.port), "--include-dashboard", "false"])
        self._wait_port(timeout_s, head)

    def start_node2(self, timeout_s: float = 90.0) -> None:
        """Start the second node (resource ``node2``) and wait until the head counts it."""
        node = self._start_node("node2", [
            "--address", self.address, "--resources", json.dumps({NODE2_RESOURCE: 1})])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise TopologyError(f"the second Ray node exited ({node.proc.returncode}); "
                                    f"log {node.log}:\n{_tail(node.log)}")
            if any(NODE2_RESOURCE in n["resources"] for n in self.alive_nodes()):
                return
            time.sleep(1.0)
        raise TopologyError(f"the second Ray node did not join within {timeout_s:.0f}s; "
                            f"log {node.log}:\n{_tail(node.log)}")

    def kill_node(self, name: str) -> None:
        """Stop one node by its process group (and whatever still names our temp dir there)."""
        node = self.nodes.pop(name, None)
        if node is not None:
            kill_group(node.proc.pid, grace_s=5, extra_pids=(node.proc.pid,))
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop every node; then SIGKILL any process still naming this cluster's temp dir."""
        for name in list(self.nodes)[::-1]:
            self.kill_node(name)
        for pid in _pids_naming(str(self.temp_dir)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Topology:
    """PostgreSQL + MLflow server + two-node Ray cluster under one temporary root."""

    root: Path
    postgres: Postgres = field(init=False)
    mlflow: MlflowServer = field(init=False)
    ray: RayCluster = field(init=False)

    def __post_init__(self) -> None:
        # Short paths: Ray's unix sockets live under the temp dir (107-byte limit).
        self.postgres = Postgres(self.root / "pg")
        self.mlflow = MlflowServer(self.postgres, self.root / "mlflow")
        self.ray = RayCluster(self.root / "ray")

    @classmethod
    def create(cls) -> Topology:
        """A topology rooted in a fresh short temporary directory readable by `postgres`."""
        root = Path(tempfile.mkdtemp(prefix="mdn", dir="/tmp"))
        root.chmod(0o755)
        return cls(root)

    def up(self) -> None:
        """Start everything, stopping what started if a later part fails."""
        try:
            self.postgres.start()
            self.mlflow.start()
            self.ray.start_head()
            self.ray.start_node2()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop everything that was started (each part independently, errors collected)."""
        errors = []
        for stop in (self.ray.stop, self.mlflow.stop, self.postgres.stop):
            try:
                stop()
            except Exception as err:  # noqa: BLE001 - every part must get its chance to stop
                errors.append(f"{stop.__qualname__}: {err}")
        if errors:
            raise TopologyError("; ".join(errors))

    def driver_env(self) -> dict[str, str]:
        """Environment for a `medn` driver process pointed at this topology."""
        return {**self.ray.env(), "MLFLOW_TRACKING_URI": self.mlflow.uri}

    def describe(self) -> dict:
        """Addresses, pids and logs, as printed by ``topology.py up``."""
        return {
            "root": str(self.root),
            "ray_address": self.ray.address,
            "tracking_uri": self.mlflow.uri,
            "postgres": f"127.0.0.1:{self.postgres.port}",
            "env": self.driver_env(),
            "pids": {"postgres": self.postgres.pid,
                     "mlflow_pgid": self.mlflow.proc.pid if self.mlflow.proc else None,
                     **{f"ray_{n}_pgid": node.proc.pid for n, node in self.ray.nodes.items()}},
            "logs": [str(p) for p in (self.postgres.log, self.mlflow.log,
                                      *(n.log for n in self.ray.nodes.values()))],
        }


def _cli(argv: list[str]) -> int:
    if argv[:1] == ["up"]:
        topo = Topology.create()
        topo.up()
        info = topo.describe()
        STATE_FILE.write_text(json.dumps(info, indent=2))
        print(json.dumps(info, indent=2))
        exports = " ".join(f"{k}={v}" for k, v in info["env"].items())
        print(f"\nexport {exports}\nmedn study ablation-components --profile smoke "
              f"--address {info['ray_address']} --tracking-uri {info['tracking_uri']}\n"
              f"stop with: {sys.executable} {__file__} down")
        return 0
    if argv[:1] == ["down"]:
        if not STATE_FILE.exists():
            print(f"nothing to stop ({STATE_FILE} not found)")
            return 0
        info = json.loads(STATE_FILE.read_text())
        for key, pid in info["pids"].items():
            if pid and key.endswith("_pgid"):
                kill_group(pid, grace_s=5, extra_pids=(pid,))
        for pid in _pids_naming(info["root"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        pg = Postgres(Path(info["root"]) / "pg", pid=info["pids"]["postgres"])
        pg.stop()
        STATE_FILE.unlink()
        print(f"stopped; logs kept under {info['root']}")
        return 0
    print(f"usage: {sys.argv[0]} up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_cli(sys.argv[1:]))
