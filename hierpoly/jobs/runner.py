"""The one runner: execute any ``RunConfig`` and turn the training result into a stored ``Result``.

The local worker, the inline executor and Ray tasks all call ``execute`` (or
``execute_seeds`` for a cell's seeds batched into one program). This is the only
module of ``runs`` that reaches the JAX engine, and only when called.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hierpoly.config import RunConfig
from hierpoly.results import store
from hierpoly.results.codec import HISTORY_COLUMNS, METRICS, SAMPLE_COLUMNS, SNAPSHOT_POINTS, Result, jsonable

CONVERGED = ("plateau", "feature settled", "holdout")  # the endings where a stopping rule fired (engine/loop.py)
SNAPSHOT_ROWS = 48  # feature snapshots kept per stored run, evenly thinned: ~50 kB, so a 250-run bundle stays small
_compilation_cache: list[Path] = []  # the directory set up in this process, once


@dataclass(frozen=True)
class Outcome:
    """How one run ended; ``result`` is set only when it is ``done`` (only those are stored)."""

    config: RunConfig
    status: str  # done, diverged or cancelled
    message: str
    result: Result | None


def execute(
    cfg: RunConfig,
    on_progress: Callable | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Train `cfg` (three-layer joint or layer-wise, kernel or two-layer baseline) to completion.

    Args:
        cfg: the run.
        on_progress: called with each ``hierpoly.progress.Progress`` row (phases and training rows).
        should_stop: polled between chunks; True cancels the run.
    Returns:
        the Outcome, with the stored-format Result when the run is done.
    """
    use_compilation_cache()
    from hierpoly.engine import baselines, train

    t0 = time.perf_counter()
    trainer = train.run if cfg.arch == "three_layer" else baselines.run
    trained = trainer(cfg, on_progress=on_progress, should_stop=should_stop)
    return _outcome(cfg, trained, time.perf_counter() - t0)


def execute_seeds(cfgs: list[RunConfig], on_progress: Callable | None = None) -> list[Outcome]:
    """Configs that differ only in their seed, trained as one program where possible (``train.run_seeds``)."""
    use_compilation_cache()
    from hierpoly.engine import train

    if not train.seeds_batchable(cfgs):
        return [execute(c, None if on_progress is None else _bind(on_progress, i)) for i, c in enumerate(cfgs)]
    trained = train.run_seeds(cfgs, on_progress=on_progress)
    return [_outcome(c, t, t.seconds) for c, t in zip(cfgs, trained)]


def use_compilation_cache(directory: Path | None = None) -> Path:
    """JAX's persistent compilation cache in `<store>/xla`, set up once per process (later calls keep the first).

    A fresh worker whose shapes were compiled before loads the programs from disk instead of compiling.
    """
    if not _compilation_cache:
        import jax

        path = Path(directory) if directory is not None else store.default_dir() / "xla"
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small programs add up too
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        _compilation_cache.append(path)
    return _compilation_cache[0]


def _bind(on_progress: Callable, i: int) -> Callable:
    return lambda row: on_progress(i, row)


def _outcome(cfg: RunConfig, trained, seconds: float) -> Outcome:
    result = to_result(cfg, trained, seconds) if trained.status == "done" else None
    return Outcome(cfg, trained.status, trained.message, result)


def to_result(cfg: RunConfig, trained, seconds: float) -> Result:
    """The stored Result of an ``engine.train.TrainResult``: the one place a training result becomes a Result."""
    from hierpoly.engine import train
    from hierpoly.versions import git_commit, versions

    rows = trained.history
    history = {name: np.asarray([getattr(r, name) for r in rows], dtype) for name, dtype in HISTORY_COLUMNS.items()}
    samples = {name: np.asarray(trained.samples[name], np.float32) for name in SAMPLE_COLUMNS if name in trained.samples}
    meta = {
        "versions": versions(),
        "device": train.device_info(),
        "git_commit": git_commit(),
        "seconds": float(seconds),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "C": float(trained.data_C),
        "steps": int(trained.steps),
        **stopping(cfg, trained.extra),
        "extra": jsonable(trained.extra),
    }
    metrics = {name: float(trained.metrics[name]) for name in METRICS if name in trained.metrics}
    return Result(cfg, trained.status, trained.message, metrics, history, samples, meta, snapshots(rows))


def stopping(cfg: RunConfig, extra: dict) -> dict:
    """Why a run stopped, and whether that means it converged.

    plateau, feature settled, holdout (the two-layer baseline's chosen step): a stopping rule fired (converged);
    step cap: not converged; closed form: the kernel's exact ridge fit (converged); fixed steps: layer-wise
    training runs its T1 + T2 steps by design (converged: None, not judged).
    """
    if cfg.arch == "kernel":
        return {"stopped_by": "closed form", "converged": True}
    if cfg.mode == "layerwise" and cfg.arch == "three_layer":
        return {"stopped_by": "fixed steps", "converged": None}
    stopped_by = extra.get("stopped_by")
    return {"stopped_by": stopped_by, "converged": stopped_by in CONVERGED}


def snapshots(rows, keep: int = SNAPSHOT_ROWS) -> dict:
    """The learned feature of the training rows that carry one, thinned evenly to `keep` rows (first and last kept)."""
    rows = [r for r in rows if r.is_history and r.feature_sample and np.isfinite(r.feature_sample).all()]
    if not rows:
        return {}
    width = min(min(len(r.feature_sample) for r in rows), SNAPSHOT_POINTS)
    picks = np.unique(np.round(np.linspace(0, len(rows) - 1, min(keep, len(rows)))).astype(int))
    g = np.asarray([rows[i].feature_sample[:width] for i in picks], np.float32)
    return {"step": np.asarray([rows[i].step for i in picks], np.int64), "g": g}
