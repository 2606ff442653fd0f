"""Executors: where a sweep's missing configs run. Each makes every config end in the
store through the validated ``Store.put`` path, or reports why it did not, as one
row per config (``outcome``).

    local   every config a background job (``local.py``)
    inline  in this process, the seeds of a cell batched into one program (``inline.py``)
    ray     each config a Ray task on a cluster (``cluster.py``; Ray is optional)

Importing this module imports neither JAX nor Ray.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from hierpoly.config import RunConfig


class SweepError(ValueError):
    """A sweep that cannot be run (bad grid, unknown executor, Ray missing or unreachable), with a one-line reason."""


class Executor(Protocol):
    """Makes each config end in the store through ``Store.put``, or reports why it did not."""

    name: str

    def run(self, configs: list[RunConfig], store, on_done: Callable[[dict], None], on_note: Callable[[str], None]) -> list[dict]:
        """One row per config (see ``outcome``), calling on_done(row) as each finishes."""
        ...


def outcome(cfg: RunConfig, status: str, message: str, result=None, cached: bool = False) -> dict:
    """The row of one config: its grid coordinates, status and, for a done one, its result's metrics.

    result: the run's Result as the caller holds it (just trained, or read from the store once).
    """
    row = {
        "key": cfg.key(), "d": cfg.d, "n": cfg.n, "k": cfg.k, "seed": cfg.seed, "arch": cfg.arch, "mode": cfg.mode,
        "status": status, "message": message, "cached": cached,
        "test_loss": None, "feature_corr": None, "train_loss": None, "seconds": None,
    }
    if result is not None and status == "done":
        row.update({name: result.metrics.get(name) for name in ("test_loss", "feature_corr", "train_loss")})
        row["seconds"] = result.meta.get("seconds")
    return row


# name -> (module, class): imported when asked for, so naming an executor loads only its own module
EXECUTORS: dict[str, tuple[str, str]] = {
    "local": ("hierpoly.jobs.local", "LocalExecutor"),
    "inline": ("hierpoly.jobs.inline", "InlineExecutor"),
    "ray": ("hierpoly.jobs.cluster", "RayExecutor"),
}


def get(name: str) -> Executor:
    """A new executor by name."""
    if name not in EXECUTORS:
        raise SweepError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}")
    module, cls = EXECUTORS[name]
    return getattr(importlib.import_module(module), cls)()
