"""The one runner: execute any ``RunConfig`` and turn the training result into a stored ``Result``.

The local worker, the inline executor and Ray tasks all call ``execute`` (or
``execute_seeds`` for a cell's seeds batched into one program). This is the only
module of ``runs`` that reaches the JAX engine, and only when called.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hierpoly.config import RunConfig
from hierpoly.runs.codec import HISTORY_COLUMNS, METRICS, SAMPLE_COLUMNS, Result, _jsonable


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
        on_progress: called with each ``engine.train.Progress`` row between chunks.
        should_stop: polled between chunks; True cancels the run.
    Returns:
        the Outcome, with the stored-format Result when the run is done.
    """
    from hierpoly.engine import baselines, train

    t0 = time.perf_counter()
    trainer = train.run if cfg.arch == "three_layer" else baselines.run
    trained = trainer(cfg, on_progress=on_progress, should_stop=should_stop)
    return _outcome(cfg, trained, time.perf_counter() - t0)


def execute_seeds(cfgs: list[RunConfig], on_progress: Callable | None = None) -> list[Outcome]:
    """Configs that differ only in their seed, trained as one program where possible (``train.run_seeds``)."""
    from hierpoly.engine import train

    if not train.seeds_batchable(cfgs):
        return [execute(c, None if on_progress is None else _bind(on_progress, i)) for i, c in enumerate(cfgs)]
    trained = train.run_seeds(cfgs, on_progress=on_progress)
    return [_outcome(c, t, t.seconds) for c, t in zip(cfgs, trained)]


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
        "extra": _jsonable(trained.extra),
    }
    metrics = {name: float(trained.metrics[name]) for name in METRICS if name in trained.metrics}
    return Result(cfg, trained.status, trained.message, metrics, history, samples, meta)
