"""Running a grid: only the configs whose key is not stored, through an executor, so a rerun is a no-op.

Importing this module does not import JAX.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hierpoly.jobs import executors
from hierpoly.jobs.executors import Executor, outcome
from hierpoly.study.specs import SweepSpec


@dataclass(frozen=True)
class SweepProgress:
    """What a sweep reports as it goes: configs finished (stored or not) out of the grid's total."""

    done: int
    total: int
    last: dict | None = None  # the row of the config that just finished
    running: str | None = None  # a short note on the job now running, e.g. "d=8 n=512 seed 0 kernel: step 300/4000"


def run_sweep(
    spec: SweepSpec,
    executor: str | Executor = "local",
    store=None,
    on_progress: Callable[[SweepProgress], None] | None = None,
) -> list[dict]:
    """Run the grid's configs that are not stored; a rerun is a no-op.

    Args:
        spec: the grid (a preset or ``custom``).
        executor: a name in EXECUTORS or an Executor.
        store: a ``store.Store`` (default: the project store, $HIERPOLY_CACHE_DIR).
        on_progress: called with a SweepProgress as configs finish and while jobs run.
    Returns:
        one row per config of the grid (``outcome``): stored ones with ``cached`` true,
        the others with the status their run ended in (done, failed, diverged, cancelled, refused).
    """
    from hierpoly.results.store import Store

    store = store if store is not None else Store()
    if isinstance(executor, str):
        executor = executors.get(executor)
    configs = spec.configs()
    todo = [cfg for cfg in configs if not store.has(cfg.key())]
    todo_keys = {cfg.key() for cfg in todo}
    rows = {cfg.key(): outcome(cfg, "done", "already in the store", store.get(cfg.key()), cached=True)
            for cfg in configs if cfg.key() not in todo_keys}
    state = {"done": len(rows)}

    def report(last=None, running=None):
        if on_progress is not None:
            on_progress(SweepProgress(state["done"], len(configs), last, running))

    def on_done(row):
        state["done"] += 1
        report(last=row)

    report()
    if todo:
        for row in executor.run(todo, store, on_done, lambda note: report(running=note)):
            rows[row["key"]] = row
    return [rows[cfg.key()] for cfg in configs if cfg.key() in rows]
