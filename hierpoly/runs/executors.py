"""Executors: where a sweep's missing configs run. Each makes every config end in the
store through the validated ``Store.put`` path, or reports why it did not, as one
row per config (``outcome``).

    local   every config a background job (``jobs.submit``), so the app sees its
            progress; workers run one at a time by default (HIERPOLY_MAX_WORKERS).
            Ctrl-C cancels the jobs this sweep submitted.

    inline  in this process, no background jobs: the seeds of a cell train together
            as one compiled program (``runner.execute_seeds``, vmap over seeds). The
            fastest way to fill a grid on one machine from the command line.

    ray     each config a Ray task on a cluster (``RayExecutor``; Ray is optional).
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
            ``working_dir``.

Importing this module imports neither JAX nor Ray.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Protocol

from hierpoly.config import RunConfig
from hierpoly.runs.codec import StoreError, from_bytes, to_bytes
from hierpoly.runs.store import REPO


class SweepError(ValueError):
    """A sweep that cannot be run (bad grid, unknown executor, Ray missing or unreachable), with a one-line reason."""


class Executor(Protocol):
    """Makes each config end in the store through ``Store.put``, or reports why it did not."""

    name: str

    def run(self, configs: list[RunConfig], store, on_done: Callable[[dict], None], on_note: Callable[[str], None]) -> list[dict]:
        """One row per config (see ``outcome``), calling on_done(row) as each finishes."""
        ...


def outcome(cfg: RunConfig, status: str, message: str, store=None, cached: bool = False) -> dict:
    """The row of one config: its grid coordinates, status and, when stored, its metrics."""
    row = {
        "key": cfg.key(), "d": cfg.d, "n": cfg.n, "k": cfg.k, "seed": cfg.seed, "arch": cfg.arch, "mode": cfg.mode,
        "status": status, "message": message, "cached": cached,
        "test_loss": None, "feature_corr": None, "train_loss": None, "seconds": None,
    }
    result = store.get(row["key"]) if store is not None and status == "done" else None
    if result is not None:
        row.update({name: result.metrics.get(name) for name in ("test_loss", "feature_corr", "train_loss")})
        row["seconds"] = result.meta.get("seconds")
    return row


class LocalExecutor:
    """Every config a background job on this machine (see module docstring)."""

    name = "local"

    def __init__(self, poll: float = 1.0):
        self.poll = poll

    def run(self, configs, store, on_done, on_note) -> list[dict]:
        from hierpoly.runs import jobs

        pending, rows = submit_all(configs, store)
        for row in rows:
            on_done(row)
        try:
            while pending:
                snapshot = {job.job_id: job for job in jobs.list_jobs(store) if job.job_id in pending}
                for job_id, cfg in list(pending.items()):
                    job = snapshot.get(job_id)
                    if job is None:
                        rows.append(outcome(cfg, "failed", "the job disappeared from the job table"))
                    elif job.finished:
                        rows.append(outcome(cfg, job.status, job.message, store))
                    else:
                        if job.status == "running" and job.progress:
                            on_note(f"d={cfg.d} n={cfg.n} seed {cfg.seed} {cfg.arch}: step {job.step}")
                        continue
                    del pending[job_id]
                    on_done(rows[-1])
                if pending:
                    time.sleep(self.poll)
        except KeyboardInterrupt:
            for job_id in pending:  # the jobs are detached: stop the ones this sweep started
                jobs.cancel(job_id, store)
            raise
        return rows


def submit_all(configs: list[RunConfig], store, submit: Callable | None = None) -> tuple[dict[str, RunConfig], list[dict]]:
    """Submit each config as a background job without waiting: ({job_id: config}, rows of the refused ones).

    ``submit(cfg, store)`` defaults to ``jobs.submit``; the web passes its mode's rules (``policy``).
    """
    from hierpoly.runs import budget, jobs

    submit = submit or jobs.submit
    ids, refused = {}, []
    for cfg in configs:
        try:
            ids[submit(cfg, store)] = cfg
        except (budget.BudgetError, jobs.QueueFull) as err:
            refused.append(outcome(cfg, "refused", str(err)))
    return ids, refused


def seed_groups(configs: list[RunConfig]) -> list[list[RunConfig]]:
    """Configs that differ only in their seed, grouped (in first-seen order)."""
    groups: dict[str, list[RunConfig]] = {}
    for cfg in configs:
        groups.setdefault(dataclasses.replace(cfg, seed=0).key(), []).append(cfg)
    return list(groups.values())


class InlineExecutor:
    """Every cell in this process, its seeds batched into one program (``train.run_seeds``)."""

    name = "inline"

    def run(self, configs, store, on_done, on_note) -> list[dict]:
        from hierpoly.runs import runner

        rows = []
        for group in seed_groups(configs):
            first = group[0]
            label = f"d={first.d} n={first.n} {first.arch} seeds {','.join(str(c.seed) for c in group)}"

            def note(i, row, label=label):
                on_note(f"{label}: step {row.step}" if row.is_history else f"{label}: {row.phase}")

            for ended in runner.execute_seeds(group, on_progress=note):
                if ended.result is not None:
                    store.put(ended.result)
                rows.append(outcome(ended.config, ended.status, ended.message, store))
                on_done(rows[-1])
        return rows


# ---------------------------------------------------------------------- ray
INSTALL_HINT = "the ray executor needs Ray: pip install -r requirements-ray.txt"
SHIP_EXCLUDES = [".git", "cache", "node_modules", "__pycache__", "*.zip", ".pytest_cache"]
TASK_NAME = "hierpoly_train"  # workers running a task show up as `ray::hierpoly_train`


class ClusterError(SweepError):
    """Ray missing or the cluster unreachable, with a one-line reason."""


def train_to_bytes(config: dict) -> tuple[str, str, str, bytes | None]:
    """Train one config (runs in a Ray worker); returns key, status, message and, when done, the stored bytes."""
    from hierpoly.runs import runner

    cfg = RunConfig.from_dict(config)
    ended = runner.execute(cfg)
    if ended.result is None:  # diverged: reported, not stored (like the local executor)
        return cfg.key(), ended.status, ended.message, None
    return cfg.key(), "done", ended.message, to_bytes(ended.result)


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
    return outcome(cfg, "done", str(message), store)


def error_message(err: BaseException) -> str:
    """One line for a task that failed after its retries."""
    cause = getattr(err, "cause", None)  # RayTaskError wraps the worker's exception
    err = cause if isinstance(cause, BaseException) else err
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0].strip() if lines else 'no message'}"


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
        self.max_retries = max_retries
        self.ship_code = ship_code if ship_code is not None else bool(self.address and self.address.startswith("ray://"))
        self.poll = poll

    # --------------------------------------------------------------- connection
    def _connect(self):
        """Ray, connected; returns (ray, whether we started the connection)."""
        try:
            import ray
        except ImportError:
            raise ClusterError(INSTALL_HINT) from None
        if ray.is_initialized():
            return ray, False
        try:
            if self.address and "://" in self.address:  # Ray Client forwards init options to the server: send none
                ray.init(address=self.address)
            else:  # worker output stays in the cluster's logs: stdout is the CLI's JSON
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except Exception as err:  # ConnectionError, ValueError for a bad address, ...
            where = self.address or os.environ.get("RAY_ADDRESS") or "a new local instance"
            raise ClusterError(f"cannot start or reach Ray at {where}: {error_message(err)}") from None
        return ray, True

    def runtime_env(self, gpus: bool) -> dict:
        """How workers find hierpoly (PYTHONPATH or the shipped checkout) and which JAX backend they use."""
        env_vars = {} if gpus else {"JAX_PLATFORMS": "cpu"}  # no CUDA probing on CPU nodes
        if self.ship_code:
            return {"working_dir": str(REPO), "excludes": SHIP_EXCLUDES, "env_vars": env_vars}
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        return {"env_vars": {**env_vars, "PYTHONPATH": path}}

    # ---------------------------------------------------------------------- run
    def run(self, configs: list[RunConfig], store, on_done: Callable[[dict], None], on_note: Callable[[str], None]) -> list[dict]:
        """One Ray task per distinct missing config; rows as each finishes (see ``sweeps.outcome``)."""
        ray, started = self._connect()
        try:
            return self._run(ray, configs, store, on_done, on_note)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, configs, store, on_done, on_note) -> list[dict]:
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        task = ray.remote(train_to_bytes).options(
            name=TASK_NAME,
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            max_retries=self.max_retries,
            retry_exceptions=True,
            runtime_env=self.runtime_env(gpus),
        )
        unique = list({cfg.key(): cfg for cfg in configs}.values())  # one task per key, even if listed twice
        rows, pending, unit, last_note = [], {}, "GPU" if gpus else "CPU", 0.0
        try:
            for cfg in unique:
                if store.has(cfg.key()):  # stored meanwhile (another sweep): nothing to run
                    rows.append(outcome(cfg, "done", "already in the store", store, cached=True))
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


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "inline": InlineExecutor, "ray": RayExecutor}


def get(name: str) -> Executor:
    """A new executor by name."""
    if name not in EXECUTORS:
        raise SweepError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
