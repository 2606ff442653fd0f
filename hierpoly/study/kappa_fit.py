"""The exponent κ of n*(d) ∝ d^κ for one target, with its seed-bootstrap interval.

The exponent **[our procedure; the paper reports the d^k law, not a fit]**: for
each d, n*(d) is where the seed-median score (``statistic``; the mean on request)
first crosses ``threshold`` going up
the n grid, interpolated linearly in log n between the last point below and the
first point at or above it. The score is the feature correlation (Figure 2's), or
the explained variance 1 − test loss where the correlation with p means nothing
(``criterion_for``). Then ``log n* = κ log d + c`` by least squares; theory says
κ ≈ k. κ is reported at thresholds 0.8, 0.9 and 0.95 and from a logistic fit of
the collapse (``collapse_exponent``), which uses every transition cell at once, with the
local slope log(n*_2/n*_1)/log(d_2/d_1) between successive d (finite d pulls it below k).

The interval is a percentile bootstrap over **whole seeds**: a replicate draws
seed indices with replacement and each drawn seed brings its whole grid, because
one seed's datasets are nested across n and d (its runs are not independent
draws per cell). It covers seed-to-seed noise only — not the choice of threshold,
the step cap, the d range or the finite-d bias of the slope. Replicates where
fewer than two d cross are dropped (and counted). When one seed splits the replicates
into two groups whose 90% ranges do not overlap (those that draw it and those that do
not), the interval would be the union of two scenarios: it is withheld and ``split``
names the seed and each group's range (``bootstrap_split``).

Runs are grouped by target (k, link, σ1, mode, arch); a fit never mixes targets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.jsonvalue import jsonable
from hierpoly.study.cell_stats import STATISTIC, STATISTICS, THRESHOLD, AnalysisError, check_runs, one_target
from hierpoly.study.crossings import COLLAPSE_WINDOW, SeedGrid, fit_exponents

THRESHOLDS = (0.8, 0.9, 0.95)  # κ at each: how far it moves with the threshold is part of the answer


CRITERIA = ("feature_corr", "explained")  # explained: 1 − test loss (the MSE, in units of E[h²] = 1)


N_BOOT = 1000


CI = 0.95


SPLIT_RANGE = 0.90  # a seed splits the bootstrap when the two groups' central ranges of this coverage are disjoint


@dataclass(frozen=True)
class Exponent:
    """κ of n*(d) ∝ d^κ with its bootstrap interval; estimate is None with a reason when it cannot be had."""

    estimate: float | None
    low: float | None  # None when there is no estimate or the bootstrap splits (see ``split``)
    high: float | None
    intercept: float | None
    threshold: float | None  # None for the collapse fit
    n_star: pd.DataFrame  # d, n_star from the seed statistic (empty for the collapse fit)
    replicates: int  # bootstrap replicates that gave a κ
    reason: str | None = None
    criterion: str = "feature_corr"
    method: str = "threshold"  # threshold: fit of n*(d); collapse: logistic fit of the collapse
    statistic: str = STATISTIC  # the seed statistic per cell: median or mean
    split: dict | None = None  # bootstrap_split: the seed whose draw splits the replicates in two groups
    local_slopes: tuple[dict, ...] = ()  # slope of log n* between successive d, with its bootstrap interval

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate, "low": self.low, "high": self.high, "intercept": self.intercept,
            "threshold": self.threshold, "replicates": self.replicates, "reason": self.reason,
            "criterion": self.criterion, "method": self.method, "statistic": self.statistic, "split": self.split,
            "n_star": jsonable(self.n_star[["d", "n_star"]].to_dict("records")),
            "local_slopes": list(self.local_slopes),
        }

    def brief(self) -> dict:
        """threshold, estimate, low, high, split: one row of a by-threshold table."""
        return {"threshold": self.threshold, "estimate": self.estimate, "low": self.low, "high": self.high,
                "split": self.split}


def _seed_grid(runs: pd.DataFrame, threshold: float, arch: str, criterion: str) -> SeedGrid | None:
    check_runs(runs)
    if not 0 < threshold < 1:
        raise AnalysisError(f"threshold must be in (0, 1), got {threshold}")
    if criterion not in CRITERIA:
        raise AnalysisError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    runs = runs[runs["arch"] == arch]
    one_target(runs)
    return SeedGrid.from_runs(runs, criterion) if len(runs) else None


@dataclass(frozen=True)
class _Bootstrap:
    """One seed statistic of a grid: the point values (1, C) and each replicate's (B, C), with the draws (B, S)."""

    grid: SeedGrid
    statistic: str
    weights: np.ndarray
    point: np.ndarray
    replicates: np.ndarray

    @classmethod
    def of(cls, grid: SeedGrid, statistic: str, n_boot: int, seed: int) -> _Bootstrap:
        if statistic not in STATISTICS:
            raise AnalysisError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
        weights = grid.drawn(n_boot, seed)
        return cls(grid, statistic, weights, grid.statistic(np.ones((1, len(grid.seeds))), statistic),
                   grid.statistic(weights, statistic))


def _interval(values: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    low, high = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def bootstrap_split(kappas: np.ndarray, weights: np.ndarray, seeds: tuple[int, ...],
                    coverage: float = SPLIT_RANGE, min_share: float = 0.05) -> dict | None:
    """The seed whose draw splits the bootstrap into two separate groups, or None.

    For each seed, the replicates that draw it and those that do not are two groups; when
    both hold at least ``min_share`` of the replicates with a κ and their central ranges
    (``coverage``) do not overlap, the replicates are two scenarios, not one distribution,
    and a percentile interval over both would cover neither. Of such seeds the one with
    the widest gap is named.

    Returns:
        None, or {"seed", "gap", "with": {share, low, high, median}, "without": {...}}.
    """
    ok = np.isfinite(kappas)
    best = None
    for j, seed in enumerate(seeds):
        groups = {"with": kappas[ok & (weights[:, j] > 0)], "without": kappas[ok & (weights[:, j] == 0)]}
        if min(g.size for g in groups.values()) < min_share * max(int(ok.sum()), 1):
            continue
        tails = ((1 - coverage) / 2, (1 + coverage) / 2)
        ranges = {name: np.quantile(g, tails) for name, g in groups.items()}
        gap = max(ranges["with"][0] - ranges["without"][1], ranges["without"][0] - ranges["with"][1])
        if gap > 0 and (best is None or gap > best["gap"]):
            best = {"seed": int(seed), "gap": float(gap), **{
                name: {"share": g.size / int(ok.sum()), "low": float(ranges[name][0]), "high": float(ranges[name][1]),
                       "median": float(np.median(g))} for name, g in groups.items()}}
    return best


def _estimate(point: float, kappas: np.ndarray, boot: _Bootstrap, ci: float) -> tuple[float | None, float | None, dict | None]:
    """The interval of a κ from its replicates, or no interval and the split when the replicates split."""
    split = bootstrap_split(kappas, boot.weights, boot.grid.seeds)
    low, high = (None, None) if split is not None else _interval(kappas, ci)
    return low, high, split


def _local_slopes(ds: np.ndarray, point: np.ndarray, replicates: np.ndarray, ci: float) -> tuple[dict, ...]:
    """Slope of log n* between each pair of successive d (both crossed): log(n*₂/n*₁) / log(d₂/d₁), with an interval."""
    out = []
    for i in range(len(ds) - 1):
        step = math.log(ds[i + 1] / ds[i])
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = float(np.log(point[i + 1] / point[i]) / step)
            slopes = np.log(replicates[:, i + 1] / replicates[:, i]) / step
        if not math.isfinite(slope):
            continue
        low, high = _interval(slopes, ci)
        out.append({"d_low": int(ds[i]), "d_high": int(ds[i + 1]), "slope": slope, "low": low, "high": high})
    return tuple(out)


_EMPTY_N_STAR = pd.DataFrame({"d": pd.Series(dtype=int), "n_star": pd.Series(dtype=float)})


def slope_trend(slopes: list[dict], k: int) -> str:
    """What the local slopes of log n*(d) do as d grows, in one sentence ("" with fewer than two).

    Whether they rise or fall at every step in d or neither, whether all lie below k, and whether the
    last one's interval holds k: a reading of the finite-d bias, not a test of the limit.
    """
    values = [s["slope"] for s in slopes if s.get("slope") is not None]
    if len(values) < 2:
        return ""
    steps = np.diff(values)
    shape = "rise at every step in d" if (steps > 0).all() else "fall at every step in d" if (steps < 0).all() \
        else "do not move steadily with d"
    below = f", all below k = {k}" if max(values) < k else ""
    last = slopes[-1]
    if last.get("low") is None or last.get("high") is None:
        holds = "has no interval"
    else:
        holds = f"{'holds' if last['low'] <= k <= last['high'] else 'does not hold'} k in its 95% interval " \
                f"[{last['low']:.2f}, {last['high']:.2f}]"
    return (f"The local slopes {shape} ({' → '.join(f'{v:.2f}' for v in values)}){below}; the last, "
            f"{last['d_low']}→{last['d_high']}, {holds}.")


def _threshold_exponent(boot: _Bootstrap | None, threshold: float, ci: float, criterion: str,
                        statistic: str = STATISTIC) -> Exponent:
    """κ from n*(d) at one threshold: the seed statistic's fit, and the same fit on each bootstrap row."""
    if boot is None:
        return Exponent(None, None, None, None, threshold, _EMPTY_N_STAR, 0,
                        "need n*(d) for at least two d, have none: no run of this grid is stored", criterion,
                        statistic=statistic)
    grid = boot.grid
    ds, stars = grid.n_star(boot.point, threshold)
    n_star = pd.DataFrame({"d": ds.astype(int), "n_star": stars[0]})
    kappa, c = (float(v[0]) for v in fit_exponents(ds, stars))
    if not math.isfinite(kappa):
        crossed = int(np.isfinite(stars).sum())
        what = {"feature_corr": "correlation", "explained": "explained variance 1 − test loss"}[criterion]
        reason = (f"need n*(d) for at least two d, have {crossed} of {len(ds)}: the seed {statistic} {what} must rise "
                  f"through {threshold} inside each d's n grid")
        return Exponent(None, None, None, None, threshold, n_star, 0, reason, criterion, statistic=statistic)
    boot_stars = grid.n_star(boot.replicates, threshold)[1]
    kappas = fit_exponents(ds, boot_stars)[0]
    low, high, split = _estimate(kappa, kappas, boot, ci)
    return Exponent(kappa, low, high, c, threshold, n_star, int(np.isfinite(kappas).sum()), None, criterion,
                    statistic=boot.statistic, split=split, local_slopes=_local_slopes(ds, stars[0], boot_stars, ci))


def _collapse_exponent(boot: _Bootstrap | None, ci: float, criterion: str, statistic: str = STATISTIC) -> Exponent:
    kappa = math.nan if boot is None else float(boot.grid.collapse_kappa(boot.point)[0])
    if not math.isfinite(kappa):
        reason = (f"the collapse fit needs at least two d whose seed {statistic} score passes 0.5 inside the grid, "
                  f"with cells in {COLLAPSE_WINDOW} rising with n")
        return Exponent(None, None, None, None, None, _EMPTY_N_STAR, 0, reason, criterion, "collapse", statistic)
    kappas = boot.grid.collapse_kappa(boot.replicates)
    low, high, split = _estimate(kappa, kappas, boot, ci)
    return Exponent(kappa, low, high, None, None, _EMPTY_N_STAR, int(np.isfinite(kappas).sum()), None, criterion,
                    "collapse", boot.statistic, split)


def _bootstrap(runs: pd.DataFrame, threshold: float, arch: str, criterion: str, statistic: str,
               n_boot: int, seed: int) -> _Bootstrap | None:
    grid = _seed_grid(runs, threshold, arch, criterion)
    return None if grid is None else _Bootstrap.of(grid, statistic, n_boot, seed)


def exponent(
    runs: pd.DataFrame,
    threshold: float = THRESHOLD,
    arch: str = "three_layer",
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = 0,
    criterion: str = "feature_corr",
    statistic: str = STATISTIC,
) -> Exponent:
    """κ in n*(d) ∝ d^κ with a percentile bootstrap CI over whole seeds (see module docstring).

    Args:
        runs: one row per run of one target; only rows of ``arch`` are used.
        threshold: the score that defines n*(d).
        n_boot: bootstrap replicates; ci: the interval's coverage.
        seed: the bootstrap's random seed (the answer is deterministic).
        criterion: the score, ``feature_corr`` or ``explained`` (1 − test loss); see ``criterion_for``.
        statistic: the seed statistic per cell, ``median`` or ``mean``.
    Returns:
        an Exponent; estimate None with a reason when fewer than two d cross the threshold.
    """
    boot = _bootstrap(runs, threshold, arch, criterion, statistic, n_boot, seed)
    return _threshold_exponent(boot, threshold, ci, criterion, statistic)


def collapse_exponent(runs: pd.DataFrame, arch: str = "three_layer", n_boot: int = N_BOOT, ci: float = CI,
                      seed: int = 0, criterion: str = "feature_corr", statistic: str = STATISTIC) -> Exponent:
    """κ from a fit of the collapse: logit(score) = a + b log n − bκ log d over the transition cells.

    If the curves are one curve of n/d^κ, a logistic in log(n/d^κ) fits them all; the least
    squares fit of the seed statistic's logits (cells with score in COLLAPSE_WINDOW) gives κ
    from every transition cell at once, not from one threshold. Interval: the seed bootstrap.
    """
    boot = _bootstrap(runs, THRESHOLD, arch, criterion, statistic, n_boot, seed)
    return _collapse_exponent(boot, ci, criterion, statistic)


def kappas(runs: pd.DataFrame, threshold: float = THRESHOLD, thresholds: tuple[float, ...] = THRESHOLDS,
           arch: str = "three_layer", n_boot: int = N_BOOT, ci: float = CI, seed: int = 0,
           criterion: str = "feature_corr", statistic: str = STATISTIC) -> dict:
    """κ of one target every way at once, on one set of bootstrap draws.

    Returns:
        ``exponent(...).to_dict()`` at ``threshold`` (with ``statistic``, ``split`` and
        ``local_slopes``), plus ``by_threshold`` (threshold, estimate, low, high, split for each
        of ``thresholds``), ``collapse``, and ``sensitivity``: the same by_threshold and collapse
        estimates from the other seed statistic (the mean beside the median, or the reverse).
    """
    for t in thresholds:
        if not 0 < t < 1:
            raise AnalysisError(f"threshold must be in (0, 1), got {t}")
    other = next(s for s in STATISTICS if s != statistic) if statistic in STATISTICS else STATISTIC
    boots = {stat: _bootstrap(runs, threshold, arch, criterion, stat, n_boot, seed) for stat in (statistic, other)}

    def summary(stat: str) -> dict:
        boot = boots[stat]
        out = _threshold_exponent(boot, threshold, ci, criterion, stat).to_dict()
        out["by_threshold"] = [_threshold_exponent(boot, t, ci, criterion, stat).brief() for t in thresholds]
        collapsed = _collapse_exponent(boot, ci, criterion, stat)
        out["collapse"] = {k: v for k, v in collapsed.to_dict().items()
                           if k not in ("n_star", "threshold", "intercept", "local_slopes")}
        return out

    out, sensitivity = summary(statistic), summary(other)
    out["sensitivity"] = {"statistic": other, "estimate": sensitivity["estimate"], "low": sensitivity["low"],
                          "high": sensitivity["high"], "split": sensitivity["split"],
                          "by_threshold": sensitivity["by_threshold"],
                          "collapse": {k: sensitivity["collapse"][k] for k in ("estimate", "low", "high", "split")}}
    return out

