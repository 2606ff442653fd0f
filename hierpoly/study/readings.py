"""Finite-d readings of n*(d): n* beside d^k and the polynomial counts, and predictions of n* at a larger d.

Theory says n* ∝ d^k as d → ∞. At finite d other normalisations are candidates: the number of
polynomials of degree ≤ k in d variables, C(d+k, k) (the features of the paper's first-stage kernel
regression), and of homogeneous degree k, C(d+k−1, k); both grow as d^k/k! only asymptotically.
Whether a ratio n*/N(d) is flat is measured, never assumed: the slope of log(n*/N) against log d,
with its interval.

Every interval here is the whole-seed percentile bootstrap of ``analysis`` (same draws, same seed, so
a reading's replicates are those behind the κ beside it). It covers seed noise only. An interval is
``marked`` when its replicates take fewer than MIN_DISTINCT distinct values (with three seeds a cell
has ten multisets, so its "95%" ends are two of ten values) or when the replicates' fits rest on
different sets of d.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.jsonvalue import jsonable
from hierpoly.study import analysis

MIN_DISTINCT = 30  # distinct replicate values below which an interval is marked, not read as a 95% interval
PREDICTION_THRESHOLD = 0.9
PREDICTION_FIT_DS = (8, 12, 16, 20, 24)  # the cpu grid's d the predictions are fitted on
PREDICTION_D = 32


def count(d: int, k: int) -> int:
    """C(d+k, k): polynomials of degree ≤ k in d variables."""
    return math.comb(d + k, k)


def homogeneous(d: int, k: int) -> int:
    """C(d+k−1, k): monomials of degree exactly k in d variables."""
    return math.comb(d + k - 1, k)


NORMALISATIONS = {  # name in the JSON: N(d, k)
    "dk": lambda d, k: float(d) ** k,
    "count": count,
    "homogeneous": homogeneous,
}


@dataclass(frozen=True)
class NStarDraws:
    """n*(d) of the seed statistic and of each whole-seed bootstrap replicate, with each d's seed count."""

    ds: np.ndarray  # (D,)
    point: np.ndarray  # (D,) NaN where a d does not cross
    replicates: np.ndarray  # (B, D)
    weights: np.ndarray  # (B, S): the draws
    threshold: float


def n_star_draws(runs: pd.DataFrame, threshold: float, criterion: str = "feature_corr",
                 statistic: str = analysis.STATISTIC, n_boot: int = analysis.N_BOOT, seed: int = 0,
                 arch: str = "three_layer") -> NStarDraws | None:
    """n*(d) and its bootstrap replicates, drawn exactly as ``analysis.kappas`` draws them; None without runs."""
    runs = runs[runs["arch"] == arch]
    if not len(runs):
        return None
    grid = analysis.SeedGrid.from_runs(runs, criterion)
    weights = grid.drawn(n_boot, seed)
    ds, point = grid.n_star(grid.statistic(np.ones((1, len(grid.seeds))), statistic), threshold)
    return NStarDraws(ds, point[0], grid.n_star(grid.statistic(weights, statistic), threshold)[1], weights, threshold)


def interval(point: float, replicates: np.ndarray, ci: float = analysis.CI, mixed: int = 0) -> dict:
    """A point with its percentile interval, the replicates behind it and whether the interval is marked.

    ``mixed``: replicates whose value rests on a different set of d than the point's.
    """
    finite = replicates[np.isfinite(replicates)]
    distinct = int(np.unique(np.round(finite, 10)).size)
    low, high = analysis._interval(finite, ci)
    reasons = []
    if distinct < MIN_DISTINCT:
        reasons.append(f"{distinct} distinct replicates (< {MIN_DISTINCT})")
    if mixed:
        reasons.append(f"{mixed} replicates rest on a different set of d")
    return jsonable({"estimate": float(point), "low": low, "high": high,
                     "replicates": int(finite.size), "distinct": distinct, "mixed_d_sets": int(mixed),
                     "marked": "; ".join(reasons) or None})


def _mixed(point: np.ndarray, replicates: np.ndarray) -> int:
    """Replicates whose crossed d differ from the point's (only where they give a value at all)."""
    return int((np.isfinite(replicates) != np.isfinite(point)[None, :]).any(axis=1).sum())


# ------------------------------------------------------------------ predictions before the runs
def _power_law(draws: NStarDraws, d: int) -> tuple[float, np.ndarray]:
    """n*(d) from the κ fit over every crossed d: exp(c) d^κ, for the point and each replicate."""
    kappa, c = analysis.fit_exponent(draws.ds, draws.point)
    reps = np.array([math.exp(cb + kb * math.log(d)) if math.isfinite(kb) else math.nan
                     for kb, cb in (analysis.fit_exponent(draws.ds, row) for row in draws.replicates)])
    return math.exp(c + kappa * math.log(d)), reps


def _flat_at_last(draws: NStarDraws, d: int, k: int) -> tuple[float, np.ndarray]:
    """n*/d^k held at the largest fitted d's value: n*(d_last) (d/d_last)^k."""
    factor = (d / draws.ds[-1]) ** k
    return float(draws.point[-1] * factor), draws.replicates[:, -1] * factor


def _flat_count(draws: NStarDraws, d: int, k: int, last_only: bool = False) -> tuple[float, np.ndarray]:
    """n*/C(d+k, k) held flat: its geometric mean over every crossed d (or the largest d's value) times C(d+k, k)."""
    counts = np.array([count(int(x), k) for x in draws.ds], float)
    ratios = np.vstack([draws.point, draws.replicates]) / counts
    if last_only:
        ratios = ratios[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        level = np.exp(np.nanmean(np.log(ratios), axis=1))
    out = level * count(d, k)
    return float(out[0]), out[1:]


def predictions(runs: pd.DataFrame, k: int = 3, criterion: str = "feature_corr", statistic: str = analysis.STATISTIC,
                fit_ds: tuple[int, ...] = PREDICTION_FIT_DS, d: int = PREDICTION_D,
                threshold: float = PREDICTION_THRESHOLD, n_boot: int = analysis.N_BOOT, seed: int = 0) -> dict | None:
    """n*(d) at ``threshold`` as three readings fitted on ``fit_ds`` only predict it, and the measured n*(d) when stored.

    The readings: the power law exp(c) d^κ; n*/d^k flat at the largest fitted d's value; n*/C(d+k, k)
    flat, its level the geometric mean over every fitted d (the reading's claim is that the ratio does
    not move with d, so every d measures the level; its value at the largest d alone is kept beside it
    as ``at_last_d``). The predictions read runs of ``fit_ds`` only, so runs at other d never move them.
    ``measured``: n*(d) of the stored runs at ``d`` (None until they cross), with the same bootstrap.
    """
    fitted = n_star_draws(runs[runs["d"].isin(fit_ds)], threshold, criterion, statistic, n_boot, seed)
    if fitted is None or not np.isfinite(fitted.point).all() or tuple(int(x) for x in fitted.ds) != tuple(fit_ds):
        return None
    mixed = _mixed(fitted.point, fitted.replicates)
    power, flat_dk, flat_count = _power_law(fitted, d), _flat_at_last(fitted, d, k), _flat_count(fitted, d, k)
    readings = {
        "power_law": {**interval(*power, mixed=mixed), "kappa": analysis.fit_exponent(fitted.ds, fitted.point)[0],
                      "reading": f"n* = exp(c) d^κ fitted on d = {_ds(fit_ds)}"},
        "flat_dk": {**interval(*flat_dk), "ratio": float(fitted.point[-1] / fit_ds[-1] ** k),
                    "reading": f"n*/d^{k} held at its d = {fit_ds[-1]} value"},
        "flat_count": {**interval(*flat_count, mixed=mixed),
                       "ratio": float(flat_count[0] / count(d, k)),
                       "at_last_d": interval(*_flat_count(fitted, d, k, last_only=True)),
                       "reading": f"n*/C(d+{k},{k}) flat: its geometric mean over d = {_ds(fit_ds)}"},
    }
    return {"d": d, "threshold": threshold, "fit_ds": list(fit_ds), "statistic": statistic, "readings": readings,
            "measured": _measured(runs, d, threshold, criterion, statistic, n_boot, seed)}


def _measured(runs: pd.DataFrame, d: int, threshold: float, criterion: str, statistic: str,
              n_boot: int, seed: int) -> dict | None:
    at_d = n_star_draws(runs[runs["d"] == d], threshold, criterion, statistic, n_boot, seed)
    if at_d is None or not np.isfinite(at_d.point).all():
        return None
    return interval(float(at_d.point[0]), at_d.replicates[:, 0])


def _ds(ds) -> str:
    return ", ".join(str(int(x)) for x in ds)
