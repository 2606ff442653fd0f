"""The ray executor: each config a Ray task on a cluster (``RayExecutor``; Ray is optional).
A task runs ``runner.execute`` in a Ray worker and returns the store's own
value format (``codec.to_bytes``), never a pickled Result; the driver
decodes it with the validating reader, checks the key against the config
it sent, and writes through ``Store.put``, which writes a key once: a
retried or duplicated task never makes a second result. A task asks for
one GPU when the cluster has GPUs, one CPU otherwise. A worker that dies,
or a task that raises, is retried ``max_retries`` times; after that the
config's row is ``failed`` with the error. Ctrl-C cancels the outstanding
tasks and re-raises. Workers import hierpoly from this checkout through
PYTHONPATH; for ``ray://`` addresses the checkout is shipped as the job's
``working_dir`` (``ray.init(runtime_env=...)``: Ray uploads a local folder
only at the job level). An explicit address is probed first, so a dead
one or a refused token is a one-line error in seconds, not Ray's 30 s
retry loop. For the Ray Jobs API route a job prints its results as a
bundle into its log and ``fetch_job_bundle`` reads it back.

Importing this module imports neither JAX nor Ray.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from hierpoly import locations
from hierpoly.config import RunConfig
from hierpoly.failure import first_line
from hierpoly.jobs.executors import SweepError, outcome
from hierpoly.results import checkpoints
from hierpoly.results.codec import StoreError, from_bytes, to_bytes
from hierpoly.results.store import default_dir as store_dir

INSTALL_HINT = "the ray executor needs Ray: pip install -r requirements-ray.txt"
SHIP_EXCLUDES = [".git", "cache", "node_modules", "__pycache__", "*.zip", ".pytest_cache"]
TASK_NAME = "hierpoly_train"  # workers running a task show up as `ray::hierpoly_train`
PROBE_SECONDS = 5.0  # a live head answers a probe in well under a second
AUTH_HINT = (
    "set RAY_AUTH_MODE=token and give this machine the cluster's token "
    "(RAY_AUTH_TOKEN=... or the file ~/.ray/auth_token; `ray get-auth-token` prints it on the head node)"
)
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for a driver started by `ray job submit`


class ClusterError(SweepError):
    """Ray missing or the cluster unreachable, with a one-line reason."""


def train_to_bytes(config: dict) -> tuple[str, str, str, bytes | None]:
    """Train one config (runs in a Ray worker); returns key, status, message and, when done, the stored bytes."""
    from hierpoly.jobs import runner

    cfg = RunConfig.from_dict(config)
    ended = runner.execute(cfg)  # a retried task resumes from the worker's checkpoint of this key
    if ended.result is None:  # diverged: reported, not stored (like the local executor)
        return cfg.key(), ended.status, ended.message, None
    value = to_bytes(ended.result)
    checkpoints.discard(store_dir(), cfg.key())  # the reply carries the run now; the driver stores it
    return cfg.key(), "done", ended.message, value


def accept(cfg: RunConfig, reply, store) -> dict:
    """Validate one task's reply and store it once; returns the config's row."""
    try:
        key, status, message, value = reply
    except (TypeError, ValueError):
        return outcome(cfg, "failed", "the task returned something other than (key, status, message, bytes)")
    if key != cfg.key():
        return outcome(cfg, "failed", f"the task answered for key {str(key)[:16]}, not {cfg.key()[:16]}")
    if status != "done":
        return outcome(cfg, status, str(message))
    if not isinstance(value, bytes):
        return outcome(cfg, "failed", "the task returned no result bytes")
    try:
        result = from_bytes(value)  # the validating reader: format, finite numbers, config matches its key
        if result.key != cfg.key() or result.config != cfg:
            raise StoreError("the result belongs to another config")
        store.put(result)  # write once: a duplicate or retried reply is a no-op
    except StoreError as err:
        return outcome(cfg, "failed", f"result refused: {err}")
    return outcome(cfg, "done", str(message), result)


def error_message(err: BaseException) -> str:
    """One line for a task that failed after its retries."""
    cause = getattr(err, "cause", None)  # RayTaskError wraps the worker's exception
    err = cause if isinstance(cause, BaseException) else err
    return f"{type(err).__name__}: {first_line(err)}"


def is_auth_failure(err: BaseException) -> bool:
    """Whether Ray refused us for a missing or wrong token (its errors say so in their type or text)."""
    text = f"{type(err).__name__} {err}"
    return "AuthenticationError" in text or "Unauthenticated" in text or "InvalidAuthToken" in text


def split_address(address: str) -> tuple[str, str, int]:
    """("client", host, port) for ray://HOST:PORT, ("gcs", host, port) for HOST:PORT."""
    kind, rest = ("client", address[len("ray://"):]) if address.startswith("ray://") else ("gcs", address)
    host, sep, port = rest.rstrip("/").rpartition(":")
    if "://" in rest or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return kind, host.strip("[]"), int(port)


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Raise ClusterError within seconds when nothing answers at ``address`` or it refuses our token.

    Ray itself retries a dead or refusing address for 20-30 s and then reports a bare
    timeout; one RPC on the channel Ray would use (TLS and the token header as this
    process's RAY_AUTH_MODE says) tells the cases apart at once.
    """
    import socket

    kind, host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise ClusterError(f"nothing answers at {address}: {err.strerror or err} (is the head up, the port right, the tunnel open?)") from None
    import grpc
    from ray._private.grpc_utils import init_grpc_channel

    server = "Ray Client server (ray start's --ray-client-server-port, 10001 by default)" if kind == "client" else "Ray GCS"
    try:
        channel = init_grpc_channel(f"{host}:{port}")
        try:
            _ping(channel, kind, timeout)
        finally:
            channel.close()
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise ClusterError(f"the cluster at {address} requires token authentication: {AUTH_HINT}") from None
        raise ClusterError(f"{address} does not answer as a {server}: {err.code().name}: {err.details()}") from None
    except Exception as err:  # e.g. RAY_AUTH_MODE=token but no token on this machine
        if is_auth_failure(err):
            raise ClusterError(f"no token to present to the cluster at {address}: {AUTH_HINT}") from None
        raise


def _ping(channel, kind: str, timeout: float) -> None:
    """The cheapest call each server answers: the client server's PING, the GCS's cluster id."""
    if kind == "client":
        from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

        request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
        ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(request, timeout=timeout)
    else:
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)


def job_ships_code() -> bool:
    """Whether this driver runs inside a Ray job whose working_dir already carries the checkout."""
    try:
        job = json.loads(os.environ.get(JOB_CONFIG_VAR, "{}"))
    except ValueError:
        return False
    return bool(((job.get("runtime_env") or {}) if isinstance(job, dict) else {}).get("working_dir"))


class RayExecutor:
    """Every missing config a Ray task on the cluster at ``address`` (see module docstring).

    Args:
        address: None (an already connected Ray, else $RAY_ADDRESS, else a new local
            instance), "auto" (the cluster started on this machine by `ray start`),
            "HOST:PORT" or "ray://HOST:PORT" (Ray Client).
        max_retries: retries per task after a worker death or an exception.
        ship_code: send the checkout as the job's working_dir (default: only for ray://).
        poll: seconds between progress notes while waiting.
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 2, ship_code: bool | None = None, poll: float = 1.0):
        if address is not None and not (isinstance(address, str) and address.strip()):
            raise ClusterError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ClusterError(f"max_retries must be a whole number ≥ 0, got {max_retries!r}")
        self.address = address.strip() if address else None
        if self.address not in (None, "auto"):
            split_address(self.address)  # a malformed address is refused before Ray is imported
        self.max_retries = max_retries
        self.ship_code = ship_code if ship_code is not None else bool(self.address and self.address.startswith("ray://"))
        self.poll = poll
        self._connection = None  # (ray, whether we started it), between connect() and the end of run()

    # --------------------------------------------------------------- connection
    def _connect(self):
        """Ray, connected; returns (ray, whether we started the connection)."""
        try:
            import ray
        except ImportError:
            raise ClusterError(INSTALL_HINT) from None
        if ray.is_initialized():
            return ray, False
        if self.address not in (None, "auto"):
            probe(self.address)
        elif os.environ.get("RAY_ADDRESS", "").strip() not in ("", "auto"):
            split_address(os.environ["RAY_ADDRESS"].strip())  # a bad $RAY_ADDRESS, named as such
        where = self.address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        try:
            if self.address and self.address.startswith("ray://"):  # Ray Client: the server takes these options
                ray.init(address=self.address, runtime_env=self.job_runtime_env(), log_to_driver=False)
            else:  # worker output stays in the cluster's logs: stdout is the CLI's JSON
                ray.init(
                    address=self.address, runtime_env=self.job_runtime_env(),
                    include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                )
        except Exception as err:  # ConnectionError, ValueError for a bad address, ...
            if is_auth_failure(err):
                raise ClusterError(f"the cluster at {where} refused this client: {AUTH_HINT}") from None
            raise ClusterError(f"cannot start or reach Ray at {where}: {error_message(err)}") from None
        return ray, True

    def job_runtime_env(self) -> dict:
        """How workers find hierpoly, set once for the job: Ray uploads a local working_dir only at this level."""
        if job_ships_code():  # `ray job submit --working-dir .`: the job's own copy is already on every node
            return {}
        if self.ship_code:  # the checkout, or an installed package itself
            root = locations.checkout()
            where = {"working_dir": str(root)} if root else {"py_modules": [str(locations.PACKAGE)]}
            return {**where, "excludes": SHIP_EXCLUDES}
        return {"env_vars": {"PYTHONPATH": self.python_path()}}

    @staticmethod
    def python_path() -> str:
        """This hierpoly's folder first (unless installed), then the caller's PYTHONPATH (workers on this machine or a
        shared filesystem)."""
        return locations.child_pythonpath(os.environ.get("PYTHONPATH"))

    def task_runtime_env(self, gpus: bool, started: bool) -> dict:
        """Per task, merged by Ray into the job's: the JAX backend, and the code path when someone else connected."""
        env_vars = {} if gpus else {"JAX_PLATFORMS": "cpu"}  # no CUDA probing on CPU nodes
        if not started and not job_ships_code():  # a Ray connected before us has no job env of ours
            env_vars["PYTHONPATH"] = self.python_path()
        return {"env_vars": env_vars}

    def connect(self) -> None:
        """Connect now (a bad address or a refused token fails here, in seconds); ``run`` reuses the connection."""
        if self._connection is None:
            self._connection = self._connect()

    # ---------------------------------------------------------------------- run
    def run(self, configs: list[RunConfig], store, on_done: Callable[[dict], None], on_note: Callable[[str], None]) -> list[dict]:
        """One Ray task per distinct missing config; rows as each finishes (see ``executors.outcome``)."""
        self.connect()
        ray, started = self._connection
        try:
            return self._run(ray, configs, store, on_done, on_note, started)
        finally:
            self._connection = None
            if started:
                ray.shutdown()

    def _run(self, ray, configs, store, on_done, on_note, started: bool = False) -> list[dict]:
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        task = ray.remote(train_to_bytes).options(
            name=TASK_NAME,
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            max_retries=self.max_retries,
            retry_exceptions=True,
            runtime_env=self.task_runtime_env(gpus, started),
        )
        unique = list({cfg.key(): cfg for cfg in configs}.values())  # one task per key, even if listed twice
        rows, pending, unit, last_note = [], {}, "GPU" if gpus else "CPU", 0.0
        try:
            for cfg in unique:
                if store.has(cfg.key()):  # stored meanwhile (another sweep): nothing to run
                    rows.append(outcome(cfg, "done", "already in the store", store.get(cfg.key()), cached=True))
                    on_done(rows[-1])
                else:
                    pending[task.remote(cfg.to_dict())] = cfg
            total = len(pending)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll)
                for ref in ready:
                    cfg = pending.pop(ref)
                    try:
                        rows.append(accept(cfg, ray.get(ref), store))
                    except ray.exceptions.RayError as err:  # the task failed after its retries, or was cancelled
                        rows.append(outcome(cfg, "failed", f"after {self.max_retries} retries: {error_message(err)}"))
                    on_done(rows[-1])
                if pending and time.monotonic() - last_note >= self.poll:
                    last_note = time.monotonic()
                    on_note(f"ray: {total - len(pending)}/{total} back, {len(pending)} on the cluster (1 {unit} each)")
        except KeyboardInterrupt:
            for ref in pending:  # stop what this sweep sent; the cluster keeps running
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # a task that just finished cannot be cancelled
                    pass
            raise
        return rows


# ------------------------------------------------- the Ray Jobs API route
# A job started by `ray job submit` keeps its store on the cluster; the Jobs API gives back
# only the job's status and log. So the job prints its results as a bundle into its log
# (`sweep ... --print-bundle`) and `sweep ... --fetch JOB_ID` reads it back, then imports it
# through the validating bundle reader (hashes, keys, finite arrays), like any bundle.
