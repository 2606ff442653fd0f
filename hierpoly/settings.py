"""The HIERPOLY_* environment settings, each declared once: its name, its default and what it does.

Pure Python, no JAX. Modules read a setting's text here and keep their own rule for a
value they cannot use: the limits a mode enforces refuse it (a class must not silently get
the defaults), a machine's tuning falls back to the default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One environment setting, as the README's table lists it."""

    name: str
    default: str | None  # the text used when the variable is unset; None: computed (see help)
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("HIERPOLY_CACHE_DIR", None, "the store's folder (unset: cache/store in a checkout, else ~/.cache/hierpoly/store; "
                                        "see Installing)"),
    Setting("HIERPOLY_XLA_CACHE_DIR", None, "compiled programs' folder, shareable between stores (unset: xla in the "
                                            "store's folder)"),
    Setting("HIERPOLY_LOAD_PRECOMPUTED", "1", "0: a new store does not load the bundles of cache/precomputed/"),
    Setting("HIERPOLY_MODE", "local", "where the app runs: local, classroom or gallery"),
    Setting("HIERPOLY_CLASSROOM_SECONDS", "60", "classroom: estimated CPU seconds of one run a visitor may launch"),
    Setting("HIERPOLY_VISITOR_JOBS", "2", "classroom: runs queued or running per visitor (client address)"),
    Setting("HIERPOLY_QUEUE_LIMIT", "20", "classroom: runs queued or running in all"),
    Setting("HIERPOLY_CLASSROOM_MAX_WIDTH", "4096", "classroom: the largest m1 and m2 a visitor may run"),
    # the 2-core CPU this project develops on sustains about 3e10: 1e17 flops ≈ 900 hours
    Setting("HIERPOLY_FLOPS_PER_SECOND", "3e10", "classroom: the CPU rate a run's estimated seconds assume"),
    Setting("HIERPOLY_MAX_WORKERS", "1", "worker processes training at once"),
    Setting("HIERPOLY_WORKER_IDLE_S", "60", "seconds a worker waits for more work before it exits"),
    Setting("HIERPOLY_WARM", None, "1: the app keeps a worker with the default run compiled; 0: never "
                                   "(unset: in classroom mode only)"),
    Setting("HIERPOLY_MEMORY_BYTES", None, "memory one job may use (unset: MemAvailable of /proc/meminfo)"),
    Setting("HIERPOLY_MAX_FLOPS", "1e17", "work one job may take, in floating-point operations"),
    Setting("HIERPOLY_CHECKPOINT_S", "60", "seconds between saves of a training run's state, from which a stopped "
                                           "run resumes (0: after every chunk)"),
)
_BY_NAME = {setting.name: setting for setting in SETTINGS}


def text(name: str) -> str | None:
    """The setting's text from the environment, else its declared default."""
    return os.environ.get(name, _BY_NAME[name].default)
