"""The one runner: execute any ``RunConfig`` and turn the training result into a stored ``Result``.

The local worker, the inline executor and Ray tasks all call ``execute`` (or
``execute_seeds`` for a cell's seeds, batched into one program where that pays). This is the only
module of ``jobs`` that reaches the JAX engine, and only when called.

A transfer (arch transfer, engine/transfer.py) needs its source run's trained first
block (u, s, V). Results stored before transfers existed (the shipped bundles among
them) keep metrics, curves and samples but not parameters, so ``source_first_block``
takes the first block from, in order:
1. the source result's own ``first_block.npz`` (three-layer results store it from now on);
2. a stored transfer from the same source (each keeps the frozen block it used), so a
   store retrains a source at most once, and a bundle's transfers carry the block they used;
3. the source retrained from its config, alone (``train.run``): training is a function of
   the config (one seed draws λ, the init and the data; where chunks end never changes a
   result), so within one build it is the same run, bit for bit (tests check it). It is not
   bit-identical to the shipped runs: they were trained with their seeds batched (vmap), on
   another machine's CPU, and a long Adam run amplifies float-reduction differences. As the
   shipped transfers record it: d = 8, n = 4d³, seed 0: test loss 0.4107 retrained vs 0.4204
   stored, corr 0.99871 vs 0.99837; d = 12: 0.1778 vs 0.1762, corr 0.99854 vs 0.99863.
   Same config, same rules, a sibling
   feature of the same quality, so the transfer records both the stored and the retrained
   numbers in its meta (``extra.source``) rather than claiming the stored run's block.
Storing the block in new results rather than always retraining keeps a transfer cheap
(a d = 20 source trains for about 18 CPU minutes); retraining rather than refusing keeps
the shipped runs usable as sources. Retrained blocks are kept per process, too, so the
seeds and links of one sweep share one retraining.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hierpoly import settings
from hierpoly.config import TRANSFER, ConfigError, RunConfig, source_problem
from hierpoly.failure import first_line
from hierpoly.jsonvalue import jsonable
from hierpoly.results import checkpoints, store
from hierpoly.results.codec import (
    FIRST_BLOCK,
    HISTORY_COLUMNS,
    METRICS,
    SAMPLE_COLUMNS,
    SHARE_METRICS,
    SNAPSHOT_POINTS,
    Result,
    StoreError,
)

CONVERGED = ("plateau", "feature settled", "holdout")  # the endings where a stopping rule fired (engine/loop.py)
SNAPSHOT_ROWS = 48  # feature snapshots kept per stored run, evenly thinned: ~50 kB, so a 250-run bundle stays small
_compilation_cache: list[Path] = []  # the directory set up in this process, once
_retrained: dict[str, tuple[dict, dict]] = {}  # source key -> (first block, how it was obtained): this process's retrainings


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
    results: store.Store | None = None,
) -> Outcome:
    """Train `cfg` (three-layer joint or layer-wise, kernel or two-layer baseline, transfer) to completion.

    A three-layer run and the two-layer baseline save their state in the store's checkpoints as they train
    and resume from them (`checkpointing`); the caller stores a done result with `keep`, which deletes them.

    Changes a process-wide setting: JAX's persistent compilation cache is pointed at the store's folder of
    compiled programs (``use_compilation_cache``). Workers want that; a notebook calls ``hierpoly.run``, which
    trains in a worker and leaves the notebook's JAX alone.

    Args:
        cfg: the run.
        on_progress: called with each ``hierpoly.progress.Progress`` row (phases and training rows).
        should_stop: polled between chunks; True cancels the run.
        results: the store a transfer's source is read from and checkpoints are kept in (None: the default store).
    Returns:
        the Outcome, with the stored-format Result when the run is done.
    """
    use_compilation_cache()
    from hierpoly.engine import baselines, train

    t0 = time.perf_counter()
    if cfg.arch == TRANSFER:
        return _execute_transfer(cfg, on_progress, should_stop, results or store.Store(), t0)
    directory, key = _store_dir(results), cfg.key()
    if cfg.arch == "three_layer":
        trained = train.run(cfg, on_progress=on_progress, should_stop=should_stop,
                            checkpoint=checkpointing(directory, key))
    else:  # the two-layer baseline: one checkpoint per loop (its tuning trials, its final run)
        trained = baselines.run(cfg, on_progress=on_progress, should_stop=should_stop,
                                checkpoint=lambda part: checkpointing(directory, checkpoints.part_name(key, part)))
    if trained.status == "diverged":  # a rerun would diverge again from the saved state: nothing to resume
        checkpoints.discard(directory, key)
    before = (trained.extra.get("checkpoints") or {}).get("seconds_before", 0.0)  # a resumed run: its earlier part
    return _outcome(cfg, trained, time.perf_counter() - t0 + before)


def _store_dir(results: store.Store | None) -> Path:
    return results.directory if results is not None else store.default_dir()


def checkpoint_seconds() -> float:
    """$HIERPOLY_CHECKPOINT_S: seconds between checkpoints (default 60; a value that is not a number: 60)."""
    try:
        return max(0.0, float(settings.text("HIERPOLY_CHECKPOINT_S")))
    except ValueError:
        return 60.0


def checkpointing(directory: Path, name: str):
    """The engine's `loop.Checkpointing` for the run `name` in the store at `directory`.

    A damaged checkpoint is set aside with a warning on stderr (the run starts over); a save the disk
    cannot hold is skipped with a warning (training goes on; the previous checkpoint stays).
    """
    from hierpoly.engine import loop
    from hierpoly.jobs.processes import process_start

    writer = {"pid": os.getpid(), "start": process_start(os.getpid())}

    def load():
        try:
            return checkpoints.load(directory, name)
        except StoreError as err:
            print(f"warning: checkpoint {name[:16]} cannot be resumed ({err}); the run starts over", file=sys.stderr)
            checkpoints.discard(directory, name)
            return None

    def save(arrays, doc):
        try:
            checkpoints.save(directory, name, arrays, {**doc, "writer": writer, "saved": time.time()})
        except OSError as err:
            print(f"warning: checkpoint {name[:16]} not saved ({first_line(err)}); training goes on", file=sys.stderr)

    return loop.Checkpointing(load, save, checkpoint_seconds())


def keep(results: store.Store, outcome: Outcome) -> None:
    """Store a done run's result, then delete its checkpoint (only then: a stop in between resumes, not restarts)."""
    if outcome.result is not None:
        results.put(outcome.result)
        checkpoints.discard(results.directory, outcome.config.key())


def transfer_source(cfg: RunConfig, results: store.Store) -> Result:
    """The stored source run of a transfer; ConfigError (one line) when it is missing or cannot lend its block."""
    source = results.get(cfg.source)
    if source is None:
        raise ConfigError(f"no stored run with key {cfg.source[:16]}: a transfer's source must be in the store")
    problem = source_problem(source.config)
    if problem is not None:
        raise ConfigError(problem)
    return source


def stored_first_block(source: Result, results: store.Store) -> tuple[dict, dict] | None:
    """The source's first block and where it was stored (steps 1 and 2 of the module docstring), else None."""
    if source.first_block:
        return source.first_block, {"first_block": "stored with the source"}
    table = results.summaries()
    for other in table.key[(table.arch == TRANSFER) & (table.source == source.key)] if len(table) else ():
        stored = results.get(other)
        if stored is not None and stored.first_block:
            return stored.first_block, {"first_block": f"stored with transfer {other[:16]}"}
    return None


def retrained_source(cfg: RunConfig, results: store.Store) -> RunConfig | None:
    """The source config a transfer retrains before its own run (no first block stored for it), else None.

    The budget counts that retraining: it is the source's whole run. A missing or unfit
    source gives None here: the run itself is refused in one line.
    """
    if cfg.arch != TRANSFER or cfg.source is None:
        return None
    try:
        source = transfer_source(cfg, results)
        return None if stored_first_block(source, results) is not None else source.config
    except (ConfigError, StoreError):
        return None


def source_first_block(source: Result, results: store.Store, on_progress: Callable | None = None,
                       should_stop: Callable[[], bool] | None = None) -> tuple[dict | None, dict]:
    """The source's trained (u, s, V) and how it was obtained (module docstring); None when retraining was cancelled."""
    key = source.key
    stored = stored_first_block(source, results)
    if stored is not None:
        return stored
    if key in _retrained:
        return _retrained[key]
    from hierpoly.engine import train

    trained = train.run(source.config, on_progress=on_progress, should_stop=should_stop)
    if trained.status != "done":
        return None, {"first_block": f"retraining the source ended {trained.status}: {trained.message}"}
    how = {
        "first_block": "retrained from the source's config",
        **{f"stored_{m}": source.metrics[m] for m in ("test_loss", "feature_corr")},
        **{f"retrained_{m}": float(trained.metrics[m]) for m in ("test_loss", "feature_corr")},
        "retrained_steps": int(trained.steps),
    }
    _retrained[key] = ({name: np.asarray(trained.params[name], np.float32) for name in FIRST_BLOCK}, how)
    return _retrained[key]


def forget_retrained() -> None:
    """Drop the first blocks this process retrained: the next transfer looks in the store again."""
    _retrained.clear()


def _execute_transfer(cfg: RunConfig, on_progress, should_stop, results: store.Store, t0: float) -> Outcome:
    from hierpoly.engine import transfer
    from hierpoly.progress import Progress

    source = transfer_source(cfg, results)
    if on_progress is not None:
        on_progress(Progress(0, np.nan, np.nan, np.nan, 0.0, phase="starting"))
    block, how = source_first_block(source, results, None, should_stop)
    if block is None:
        return Outcome(cfg, "cancelled", how["first_block"], None)
    trained = transfer.run(cfg, source.config, block, on_progress=on_progress, should_stop=should_stop)
    trained.extra = {**trained.extra, "source": how}
    return _outcome(cfg, trained, time.perf_counter() - t0)


def execute_seeds(cfgs: list[RunConfig], on_progress: Callable | None = None,
                  results: store.Store | None = None) -> Iterator[Outcome]:
    """Configs that differ only in their seed: each outcome as soon as it is known.

    One program for all (``train.run_seeds``) where that pays (``train.seeds_batch_pays``), the outcomes
    then all at the end; else one run after another, each yielded as it ends (a stopped sweep keeps it).
    `on_progress(i, row)` receives the rows of `cfgs[i]`.
    """
    use_compilation_cache()
    from hierpoly.engine import train

    if not train.seeds_batch_pays(cfgs):
        for i, c in enumerate(cfgs):
            yield execute(c, None if on_progress is None else _bind(on_progress, i), results=results)
        return
    directory, name = _store_dir(results), checkpoints.checkpoint_name([c.key() for c in cfgs])
    trained = train.run_seeds(cfgs, on_progress=on_progress, checkpoint=checkpointing(directory, name))
    yield from (_outcome(c, t, t.seconds) for c, t in zip(cfgs, trained))
    if all(t.status != "cancelled" for t in trained):  # the caller stored each as it came (`keep`)
        checkpoints.discard(directory, name)


def use_compilation_cache(directory: Path | None = None) -> Path:
    """JAX's persistent compilation cache ($HIERPOLY_XLA_CACHE_DIR, else `<store>/xla`), set up once per process
    (later calls keep the first).

    A fresh worker whose shapes were compiled before loads the programs from disk instead of compiling. This sets
    JAX's global config (jax_compilation_cache_dir and two thresholds) for the whole process: only processes that
    train here (workers, the inline executor, Ray tasks) call it.
    """
    if not _compilation_cache:
        import jax

        shared = settings.text("HIERPOLY_XLA_CACHE_DIR")
        path = Path(directory or shared or store.default_dir() / "xla").expanduser()
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
    metrics = {name: float(trained.metrics[name]) for name in METRICS + SHARE_METRICS if name in trained.metrics}
    block = {}
    if cfg.arch in ("three_layer", TRANSFER) and all(name in trained.params for name in FIRST_BLOCK):
        block = {name: np.asarray(trained.params[name], np.float32) for name in FIRST_BLOCK}  # what a transfer freezes
    return Result(cfg, trained.status, trained.message, metrics, history, samples, meta, snapshots(rows), block)


def stopping(cfg: RunConfig, extra: dict) -> dict:
    """Why a run stopped, and whether that means it converged.

    plateau, feature settled, holdout (the two-layer baseline's chosen step): a stopping rule fired (converged);
    step cap: not converged; closed form: the kernel's exact ridge fit (converged); fixed steps: layer-wise
    training runs its T1 + T2 steps by design (converged: None, not judged).
    """
    if cfg.arch == "kernel":
        return {"stopped_by": "closed form", "converged": True}
    if cfg.mode == "layerwise" and cfg.arch in ("three_layer", TRANSFER):
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
