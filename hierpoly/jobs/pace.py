"""How long a run takes on this machine: the one estimator behind every time a page or a refusal states.

    seconds = STARTUP_S + a + b · T + c · T · n · (d·m1 + m2) + eigen-solves

T is the run's step cap (T1 + T2 layer-wise), so the figure is an upper bound for a run
a stopping rule ends early. ``a`` (compiling and the final evaluation), ``b`` (the host's
cost per step, which rules small runs) and ``c`` (the arithmetic) are the measured pace:
a non-negative least-squares fit of the stored runs' wall seconds against their steps
and work, per model (arch), or the three-layer network's fit for a model with too few
stored runs. Without stored runs the defaults below stand in, and say so (``runs`` = 0).
STARTUP_S is a fresh worker loading Python and JAX, which stored runs never time.
The layer-wise eigen-solves (``budget.eigen_flops``) are counted at FLOPS_PER_SECOND:
they do not run at the pace of the training steps. Importing this module does not import JAX.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hierpoly import settings
from hierpoly.config import RunConfig
from hierpoly.jobs.budget import eigen_flops

STARTUP_S = 10.0  # a fresh worker importing Python, JAX and XLA on a 2-core CPU (6–30 s under load)
FLOPS_PER_SECOND = 3e10  # this 2-core CPU's sustained rate, for what the fit cannot see
# Without stored runs: compiling and a 2^20-point evaluation, a host cost per step, 6 flops per unit of work.
DEFAULT_FIT = (8.0, 2e-3, 6.0 / FLOPS_PER_SECOND)
MIN_RUNS = 5  # stored runs of a model before its own fit is trusted


@dataclass(frozen=True)
class Pace:
    """Seconds per run, per step and per unit of work (steps · n · (d·m1 + m2)), and the runs they come from."""

    fixed: float
    per_step: float
    per_work: float
    runs: int  # 0: the defaults, nothing measured here yet

    def step_seconds(self, cfg: RunConfig) -> float:
        """Seconds one training step of cfg takes at this pace."""
        return self.per_step + self.per_work * cfg.n * (cfg.d * cfg.m1 + cfg.m2)


@dataclass(frozen=True)
class Estimate:
    """Wall seconds of a run, start to stored result, and the pace they come from."""

    seconds: float
    pace: Pace

    @property
    def runs(self) -> int:
        return self.pace.runs


def flops_per_second() -> float:
    """$HIERPOLY_FLOPS_PER_SECOND (hierpoly.settings), else FLOPS_PER_SECOND."""
    try:
        value = float(settings.text("HIERPOLY_FLOPS_PER_SECOND") or FLOPS_PER_SECOND)
    except ValueError:
        return FLOPS_PER_SECOND
    return value if value > 0 else FLOPS_PER_SECOND


_fits: dict[tuple, Pace] = {}  # (summaries' version stamp, arch) -> pace: a page rerun fits nothing anew


def measured(summaries, arch: str = "three_layer") -> Pace:
    """The pace of the stored runs of `arch` (``Store.summaries()``), else of the network's, else the defaults.

    Kept per version of the store (``attrs["version"]``), so a rerun with nothing new stored fits nothing.
    """
    stamp = None if summaries is None else summaries.attrs.get("version")
    if stamp is not None and (stamp, arch) in _fits:
        return _fits[(stamp, arch)]
    pace = next((fit for model in dict.fromkeys((arch, "three_layer")) if (fit := _fit(summaries, model)) is not None),
                Pace(*DEFAULT_FIT, runs=0))
    if stamp is not None:
        if len(_fits) > 64:
            _fits.clear()
        _fits[(stamp, arch)] = pace
    return pace


def _fit(summaries, arch: str) -> Pace | None:
    needed = {"arch", "d", "n", "m1", "m2", "steps_run", "seconds"}
    if summaries is None or len(summaries) == 0 or not needed <= set(summaries.columns):
        return None
    rows = summaries[summaries["arch"] == arch].dropna(subset=["steps_run", "seconds"])
    rows = rows[rows["seconds"] > 0]
    if len(rows) < MIN_RUNS:
        return None
    from scipy.optimize import nnls

    steps = rows["steps_run"].to_numpy(float)
    work = steps * rows["n"].to_numpy(float) * (rows["d"].to_numpy(float) * rows["m1"].to_numpy(float)
                                                 + rows["m2"].to_numpy(float))
    seconds = rows["seconds"].to_numpy(float)
    design = np.stack([np.ones_like(steps), steps, work], axis=1)
    scale = np.maximum(design.max(axis=0), 1e-30)  # columns of 1, 1e4 and 1e12: fit on a common scale
    # relative error: a 10 s run and a 1000 s run count alike
    coef, _ = nnls(design / scale / seconds[:, None], np.ones_like(seconds))
    fixed, per_step, per_work = coef / scale
    if not all(map(math.isfinite, (fixed, per_step, per_work))):
        return None
    return Pace(float(fixed), float(per_step), float(per_work), len(rows))


def estimate(cfg: RunConfig, summaries=None, pace: Pace | None = None) -> Estimate:
    """Wall seconds of cfg from launch to stored result, at most (every step up to the cap)."""
    pace = pace or measured(summaries, cfg.arch)
    steps = cfg.total_steps if cfg.arch != "kernel" else 0
    seconds = STARTUP_S + pace.fixed + steps * pace.step_seconds(cfg) + eigen_flops(cfg) / flops_per_second()
    return Estimate(seconds, pace)


def remaining(cfg: RunConfig, step: int, pace: Pace, run_step_seconds: float | None = None) -> float:
    """Seconds of training left at `step`: at this run's own pace when it has one, else at `pace`."""
    per_step = run_step_seconds if run_step_seconds is not None else pace.step_seconds(cfg)
    return max(cfg.total_steps - step, 0) * per_step


def format_seconds(seconds: float) -> str:
    """'under 1 s', '45 s', '3 min 5 s', '2 h 10 min': never '0 s', which no run takes."""
    seconds = float(seconds)
    if not seconds >= 1:
        return "under 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
