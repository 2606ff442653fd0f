"""A real `ray start --head` cluster for tests: 127.0.0.1, free ports, its own temp dir, token auth on.

Started as `ray start --head --block` in a session of its own, so every process it
spawns (GCS, raylet, client server, dashboard, workers) shares that session id. Stopped
by PID: SIGTERM to the `ray start` process, which stops what it started, then SIGKILL to
anything of its session still alive. Never `ray stop`: that stops every Ray on the machine.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
START_SECONDS = 120  # a loaded 2-core machine takes 5-30 s
PORT_NAMES = (
    "port", "ray-client-server-port", "node-manager-port", "object-manager-port", "metrics-export-port",
    "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "dashboard-port",
)


def free_ports(count: int) -> list[int]:
    """Ports the OS gives out now, all different (held open together while asked for)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class Cluster:
    """One running head node; the addresses a driver uses and the environment that goes with them."""

    process: subprocess.Popen  # `ray start --head --block`, leader of its own session
    temp_dir: Path
    token: str
    ports: dict[str, int]

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports['port']}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.ports['ray-client-server-port']}"

    @property
    def jobs_address(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard-port']}"

    def env(self, token: bool = True, **extra: str) -> dict:
        """This process's environment for a driver: the repo on PYTHONPATH, the token or none of Ray's auth settings."""
        env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        if token:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token)
        return {**env, **extra}

    def pids(self) -> list[int]:
        """Every live process of the cluster's session (it made them all)."""
        sid = self.process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getsid(int(entry.name)) == sid:
                        found.append(int(entry.name))
                except OSError:  # gone meanwhile
                    pass
        return found


def start(dashboard: bool = True) -> Cluster:
    """A head node with token auth on, 2 CPUs; the dashboard (the Jobs API) only when asked for."""
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    if not dashboard:
        del ports["dashboard-port"]
    temp_dir = Path(tempfile.mkdtemp(prefix="hpray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token = secrets.token_hex(32)
    args = [f"--{name}={port}" for name, port in ports.items()]
    args += ["--min-worker-port=0", f"--include-dashboard={str(dashboard).lower()}", "--dashboard-host=127.0.0.1"]
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)  # never the machine's ~/.ray/auth_token
    # a Ray Client's own server process on the head must answer within this (Ray's default 30 s): on a 2-core
    # machine busy with the rest of the suite it took longer once ("Initialization failure from server")
    env["RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S"] = "120"
    ray_cli = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
    log = open(temp_dir / "ray_start.log", "wb")
    process = subprocess.Popen(
        [*ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         f"--temp-dir={temp_dir}", "--disable-usage-stats", *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    cluster = Cluster(process, temp_dir, token, ports)
    try:
        wait_ready(cluster, dashboard)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def wait_ready(cluster: Cluster, dashboard: bool) -> None:
    """Until `ray start` says it started and the client server (and dashboard) accept connections."""
    needed = ["ray-client-server-port"] + (["dashboard-port"] if dashboard else [])
    deadline = time.monotonic() + START_SECONDS
    log = cluster.temp_dir / "ray_start.log"
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            raise RuntimeError(f"ray start exited with {cluster.process.returncode}:\n{log.read_text()[-3000:]}")
        if b"Ray runtime started" in log.read_bytes() and all(answers(cluster.ports[name]) for name in needed):
            return
        time.sleep(0.5)
    raise RuntimeError(f"ray start not ready after {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop(cluster: Cluster, grace: float = 30.0) -> None:
    """SIGTERM to `ray start` (it stops its children), then SIGKILL to whatever of its session is left."""
    if cluster.process.poll() is None:
        cluster.process.send_signal(signal.SIGTERM)
        try:
            cluster.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + grace
    while cluster.pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in cluster.pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if cluster.process.poll() is None:
        cluster.process.kill()
    cluster.process.wait()
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
