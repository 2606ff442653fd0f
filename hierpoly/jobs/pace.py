"""How long a run takes on this machine: the one estimator behind every time a page or a refusal states.

    seconds = STARTUP_S + a + b · T + c · T · n · (d·m1 + m2) + eigen-solves + scoring (+ a source's retraining)

T is the run's step cap (T1 + T2 layer-wise), so the figure is an upper bound for a run
a stopping rule ends early. ``a`` (compiling and the final evaluation), ``b`` (the host's
cost per step, which rules small runs) and ``c`` (the arithmetic) are the measured pace:
a non-negative least-squares fit of the stored runs' wall seconds against their steps
and work, per model (arch), or the three-layer network's fit for a model with too few
stored runs. Without stored runs the defaults below stand in, and say so (``runs`` = 0).
STARTUP_S is a fresh worker loading Python and JAX, which stored runs never time.
The layer-wise eigen-solves (``budget.eigen_flops``) are counted at FLOPS_PER_SECOND:
they do not run at the pace of the training steps. Scoring is counted apart from the fit, since
the stored runs' n_eval and n_test hardly vary: each point a forward pass, c/3 per unit of work,
the n_test monitor points at every report row and the n_eval points once. A transfer whose
source has no stored first block adds the source's own run. Importing this module does not import JAX.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hierpoly import settings
from hierpoly.config import RunConfig
from hierpoly.jobs.budget import DRAW_FLOPS_PER_COORDINATE, eigen_flops, point_work, report_rows

STARTUP_S = 10.0  # a fresh worker importing Python, JAX and XLA on a 2-core CPU (6–30 s under load)
FLOPS_PER_SECOND = 3e10  # this 2-core CPU's sustained rate, for what the fit cannot see
# Without stored runs: compiling and a 2^20-point evaluation, a host cost per step, 6 flops per unit of work.
DEFAULT_FIT = (8.0, 2e-3, 6.0 / FLOPS_PER_SECOND)
MIN_RUNS = 5  # stored runs of a model before its own fit is trusted
SPREAD_QUANTILES = (0.05, 0.5, 0.95)  # the range an estimate states covers 90% of the stored runs' spread


@dataclass(frozen=True)
class Pace:
    """Seconds per run, per step and per unit of work (steps · n · (d·m1 + m2)), and the runs they come from."""

    fixed: float
    per_step: float
    per_work: float
    runs: int  # 0: the defaults, nothing measured here yet
    # measured over predicted seconds of the stored runs (their own steps): low, median and high quantile
    spread: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # steps run over the step cap of the stored runs: low, median and high quantile (stopping rules end most early)
    stopped: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def step_seconds(self, cfg: RunConfig) -> float:
        """Seconds one training step of cfg takes at this pace."""
        return self.per_step + self.per_work * cfg.n * (cfg.d * cfg.m1 + cfg.m2)


@dataclass(frozen=True)
class Estimate:
    """Wall seconds of a run, start to stored result, and the pace they come from.

    ``seconds`` is the most it takes (every step to the cap, a fresh worker, the slow end of the
    stored runs' spread around the fit): what budgets count. ``median`` is the typical run: the
    median spread and the median share of the cap the stored runs ran. ``low`` and ``high`` hold
    90% of the stored runs: their 5% and 95% quantiles of spread and of share of the cap, ``low``
    with a warm worker, ``high`` with a fresh one.
    """

    seconds: float
    pace: Pace
    median: float = 0.0
    low: float = 0.0
    high: float = 0.0

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
    ratios = seconds / np.maximum(design @ np.array([fixed, per_step, per_work]), 1e-9)
    low, mid, high = (float(q) for q in np.quantile(ratios, SPREAD_QUANTILES))
    share = np.clip(steps / np.maximum(rows["steps"].to_numpy(float), 1.0), 0.0, 1.0) if "steps" in rows else None
    stopped = (1.0, 1.0, 1.0) if share is None else tuple(float(q) for q in np.quantile(share, SPREAD_QUANTILES))
    return Pace(float(fixed), float(per_step), float(per_work), len(rows), (low, mid, high), stopped)


def estimate(cfg: RunConfig, summaries=None, pace: Pace | None = None, source: RunConfig | None = None) -> Estimate:
    """Wall seconds of cfg from launch to stored result, at most (every step up to the cap).

    source: the config a transfer retrains first (``runner.retrained_source``): its own run, in the same worker.
    """
    pace = pace or measured(summaries, cfg.arch)
    steps = cfg.total_steps if cfg.arch != "kernel" else 0
    eigen = eigen_flops(cfg) / flops_per_second()
    extra = eigen + evaluation_seconds(cfg, pace, steps * pace.step_seconds(cfg))
    low, mid, high = pace.spread
    stopped = pace.stopped if cfg.arch == "three_layer" and cfg.mode == "joint" else (1.0, 1.0, 1.0)
    first = Estimate(0.0, pace, 0.0, 0.0, 0.0) if source is None else estimate(source, summaries)
    before = [max(t - STARTUP_S, 0.0) for t in (first.seconds, first.median, first.low, first.high)]

    def run(share: float) -> float:
        return pace.fixed + share * steps * pace.step_seconds(cfg)

    seconds = STARTUP_S + run(1.0) * max(high, 1.0) + extra + before[0]
    return Estimate(seconds, pace, median=STARTUP_S + run(stopped[1]) * mid + extra + before[1],
                    low=run(stopped[0]) * low + extra + before[2], high=STARTUP_S + run(stopped[2]) * high + extra + before[3])


def evaluation_seconds(cfg: RunConfig, pace: Pace, train_seconds: float) -> float:
    """Scoring the run (``budget.scoring_flops``): forward passes, a third of a step's work per point, at the
    measured pace (the rate the defaults assume where the fit put nothing on work)."""
    per_work = pace.per_work if pace.per_work > 0 else DEFAULT_FIT[2]
    points = cfg.n_eval + report_rows(cfg, train_seconds) * cfg.n_test
    draw = cfg.n_eval * cfg.d * DRAW_FLOPS_PER_COORDINATE / flops_per_second()
    return points * point_work(cfg) * per_work / 3.0 + draw


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
