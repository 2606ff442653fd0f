"""Figure 2's numbers from stored runs: aggregation over seeds, the collapse, and the exponent κ.

Everything here is pure pandas/numpy over a runs table with at least the columns
``arch, d, n, k, seed, test_loss, feature_corr`` (``Store.summaries()`` has them)
and returns DataFrames or small frozen dataclasses; plotting is in ``plots``.

The exponent **[our procedure; the paper reports the d^k law, not a fit]**: for
each d, n*(d) is where the seed-median score (``statistic``; the mean on request)
first crosses ``threshold`` going up
the n grid, interpolated linearly in log n between the last point below and the
first point at or above it. The score is the feature correlation (Figure 2's), or
the explained variance 1 − test loss where the correlation with p means nothing
(``criterion_for``). Then ``log n* = κ log d + c`` by least squares; theory says
κ ≈ k. κ is reported at thresholds 0.8, 0.9 and 0.95 and from a logistic fit of
the collapse (``collapse_exponent``), which uses every transition cell at once, with the
local slope log(n*_2/n*_1)/log(d_2/d_1) between successive d (``readings`` measures how n* moves with d).

Why the median leads: a seed that lands on a poor feature in a cell its siblings solve
moves that cell's mean by a fifth of the gap, and with it n*(d) and κ; the median moves
only when most seeds move (Nichani, Damian & Lee 2023 plot the median over 5 seeds with a
min–max band). The mean is kept beside it as a sensitivity figure.

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

from hierpoly.config import SIGMA1_DEGREE
from hierpoly.jsonvalue import jsonable
from hierpoly.targets import parse_link

METRICS = ("test_loss", "feature_corr")
THRESHOLD = 0.9
THRESHOLDS = (0.8, 0.9, 0.95)  # κ at each: how far it moves with the threshold is part of the answer
CRITERIA = ("feature_corr", "explained")  # explained: 1 − test loss (the MSE, in units of E[h²] = 1)
COLLAPSE_WINDOW = (0.05, 0.99)  # cells whose mean score lies here enter the collapse fit (logits stay finite)
TARGET = ("k", "link", "sigma1", "mode", "arch")  # what one κ belongs to
STATISTICS = ("median", "mean")  # the seed statistic per cell: the median leads, the mean is the sensitivity figure
STATISTIC = "median"
N_BOOT = 1000
CI = 0.95
SPLIT_RANGE = 0.90  # a seed splits the bootstrap when the two groups' central ranges of this coverage are disjoint
_REQUIRED = ("arch", "d", "n", "k", "seed", "test_loss", "feature_corr")


class AnalysisError(ValueError):
    """A runs table that cannot be analysed, with a one-line reason."""


def _check(runs: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in runs.columns]
    if missing:
        raise AnalysisError(f"runs table lacks the columns {', '.join(missing)}")


AGGREGATES = ("median", "mean", "std", "min", "max")


def aggregate(runs: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Median, mean, sample std (ddof 1; NaN for one seed), min and max over seeds per target and (d, n).

    Args:
        runs: one row per run (see module docstring); link, sigma1 and mode columns, when
            present, are part of the target, so cells of different targets never merge.
        threshold: the score a seed must reach to count in ``success_fraction``.
    Returns:
        one row per (arch, k, [link, sigma1, mode,] d, n) with seeds, n_over_dk (= n / d^k),
        ``{metric}_{median,mean,std,min,max}`` for test_loss and feature_corr, and
        ``success_fraction``: the share of seeds whose score (``criterion_for`` the target)
        reaches ``threshold`` (NaN when no seed has a score), sorted by target, d, n.
    """
    _check(runs)
    target = ["arch", "k"] + [c for c in TARGET if c in runs.columns and c not in ("arch", "k")]
    keys = ["arch", "d", "n", "k"] + target[2:]
    columns = keys + ["seeds", "n_over_dk"] + [f"{m}_{s}" for m in METRICS for s in AGGREGATES] + ["success_fraction"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = runs.assign(_success=_successes(runs, threshold))
    out = runs.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"),
        **{f"{m}_{s}": (m, s) for m in METRICS for s in AGGREGATES},
        success_fraction=("_success", "mean"),
    ).reset_index()
    out["n_over_dk"] = out["n"] / out["d"].astype(float) ** out["k"]
    if "test_loss_se" in runs.columns:
        out = out.merge(_loss_errors(runs, keys), on=keys, how="left")
        columns = columns + ["test_loss_se", "test_loss_eval_se"]
    if "converged" in runs.columns or "stopped_by" in runs.columns:
        flags = runs[keys].assign(converged_fraction=_converged(runs))
        fractions = flags.groupby(keys, sort=False)["converged_fraction"].mean().reset_index()
        out = out.merge(fractions, on=keys, how="left")
        columns = columns + ["converged_fraction"]
    return out[columns].sort_values(target + ["d", "n"]).reset_index(drop=True)


def _successes(runs: pd.DataFrame, threshold: float) -> pd.Series:
    """Per run: 1.0 when its score reaches ``threshold``, 0.0 when not, NaN when it has no score."""
    links = runs["link"] if "link" in runs.columns else pd.Series("cubic", index=runs.index)
    sigma1 = runs["sigma1"] if "sigma1" in runs.columns else pd.Series("cube", index=runs.index)
    explained = np.array([criterion_for(int(k), link, s1) == "explained" for k, link, s1 in zip(runs["k"], links, sigma1)],
                         dtype=bool)
    score = np.where(explained, 1.0 - runs["test_loss"].to_numpy(float), runs["feature_corr"].to_numpy(float))
    return pd.Series(np.where(np.isfinite(score), (score >= threshold).astype(float), np.nan), index=runs.index)


def _loss_errors(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per cell: the standard error of the seed-mean test loss, and the part due to the evaluation alone.

    test_loss_se = std over seeds / √seeds (the spread between seeds already holds each run's evaluation
    noise; NaN for one seed: one run says nothing of the spread between seeds).
    test_loss_eval_se = √(Σ se_i²) / seeds, the evaluation's part alone. Runs without a loss do not count.
    """
    def errors(group: pd.DataFrame) -> pd.Series:
        group = group[np.isfinite(group["test_loss"].astype(float))]
        count, se = len(group), group["test_loss_se"].astype(float)
        between = group["test_loss"].astype(float).std(ddof=1) / math.sqrt(count) if count > 1 else math.nan
        evaluation = math.sqrt(float((se**2).sum())) / count if count else math.nan
        return pd.Series({"test_loss_se": between, "test_loss_eval_se": evaluation})

    return runs.groupby(keys, sort=False)[["test_loss", "test_loss_se"]].apply(errors).reset_index()


def _converged(runs: pd.DataFrame) -> pd.Series:
    """1.0 where the stopping rule fired, 0.0 where the cap stopped the run, NaN where there is no rule."""
    if "converged" in runs.columns:
        flag = runs["converged"].map({True: 1.0, False: 0.0})
    else:
        flag = pd.Series(np.nan, index=runs.index)
    if "stopped_by" in runs.columns:  # results without the flag: judge by how they stopped
        rules = {"plateau": 1.0, "feature settled": 1.0, "holdout": 1.0, "step cap": 0.0}  # runner.CONVERGED
        flag = flag.fillna(runs["stopped_by"].map(rules))
    return flag.astype(float).rename("converged_fraction")


def collapse(cells: pd.DataFrame) -> pd.DataFrame:
    """The collapse: the aggregated curves against x = n / d^k (log2 x too), sorted by d then x.

    If n*(d) ∝ d^k the feature-correlation curves of all d coincide on this axis.
    """
    out = cells.assign(log2_n_over_dk=np.log2(cells["n_over_dk"].astype(float)))
    return out.sort_values(["arch", "d", "n_over_dk"]).reset_index(drop=True)


def crossing(n: np.ndarray, corr: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Where corr first reaches threshold going up in n, linearly interpolated in log n; NaN if never,
    or if it already holds at the smallest n (no bracket: the crossing is below the grid)."""
    order = np.argsort(n)
    n, corr = np.asarray(n, float)[order], np.asarray(corr, float)[order]
    return float(_crossings(n, corr[None, :], threshold)[0])


def _crossings(n: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """``crossing`` for many curves at once: n (m,) ascending, scores (B, m) → n* (B,); NaN scores never count."""
    above = scores >= threshold  # NaN compares False
    first = np.argmax(above, axis=1)
    bracketed = above.any(axis=1) & (first > 0)
    j = np.where(bracketed, first, 1) if n.size > 1 else np.zeros_like(first)
    rows = np.arange(scores.shape[0])
    if n.size < 2:
        return np.full(scores.shape[0], math.nan)
    x0, x1 = np.log(n[j - 1]), np.log(n[j])
    y0, y1 = scores[rows, j - 1], scores[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.exp(x0 + (threshold - y0) / (y1 - y0) * (x1 - x0))
    return np.where(bracketed & np.isfinite(y0), out, math.nan)


def thresholds(cells: pd.DataFrame, threshold: float = THRESHOLD, arch: str = "three_layer",
               criterion: str = "feature_corr", statistic: str = STATISTIC) -> pd.DataFrame:
    """n*(d) for each d from the seed statistic of one architecture: columns d, n_star (NaN: no crossing)."""
    rows = []
    for d, group in cells[cells["arch"] == arch].groupby("d", sort=True):
        score = _cell_score(group, criterion, statistic)
        rows.append({"d": int(d), "n_star": crossing(group["n"].to_numpy(), score, threshold)})
    return pd.DataFrame(rows, columns=["d", "n_star"]).astype({"d": int, "n_star": float})


def _cell_score(cells: pd.DataFrame, criterion: str, statistic: str = STATISTIC) -> np.ndarray:
    """The seed statistic's score of aggregated cells: correlation, or 1 − test loss (its median or mean)."""
    # 1 − x is monotone, so the median of 1 − loss is 1 − the median loss
    if criterion == "feature_corr":
        return cells[f"feature_corr_{statistic}"].to_numpy(float)
    return 1.0 - cells[f"test_loss_{statistic}"].to_numpy(float)


def fit_exponent(d: np.ndarray, n_star: np.ndarray) -> tuple[float, float]:
    """Least squares log n* = κ log d + c over the finite n*; (κ, c), NaN when fewer than two d."""
    slope, intercept = _fits(np.asarray(d, float), np.asarray(n_star, float)[None, :])
    return float(slope[0]), float(intercept[0])


def _fits(d: np.ndarray, n_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fit_exponent`` for many rows at once: d (m,), n_star (B, m) → κ (B,), c (B,)."""
    x = np.log(d)[None, :]
    ok = np.isfinite(n_star) & (n_star > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(ok, np.log(np.where(ok, n_star, 1.0)), 0.0)
        count = ok.sum(axis=1)
        x_mean = (x * ok).sum(axis=1) / count
        y_mean = y.sum(axis=1) / count
        dx = np.where(ok, x - x_mean[:, None], 0.0)
        sxx = (dx**2).sum(axis=1)
        slope = (dx * (y - y_mean[:, None])).sum(axis=1) / sxx
    enough = np.array([np.unique(x[0][row]).size >= 2 for row in ok])
    slope = np.where(enough, slope, math.nan)
    return slope, np.where(enough, y_mean - slope * x_mean, math.nan)


# ------------------------------------------------------------------ κ from seeds
@dataclass(frozen=True)
class SeedGrid:
    """One target's runs as a matrix: scores[s, c] of seed s in cell c = (ds[c], ns[c]); NaN where not stored."""

    ds: np.ndarray  # (C,)
    ns: np.ndarray  # (C,)
    scores: np.ndarray  # (S, C)
    seeds: tuple[int, ...]

    @classmethod
    def from_runs(cls, runs: pd.DataFrame, criterion: str) -> SeedGrid:
        score = runs["feature_corr"] if criterion == "feature_corr" else 1.0 - runs["test_loss"]
        wide = runs.assign(score=score.astype(float)).pivot_table(index="seed", columns=["d", "n"], values="score")
        cols = wide.columns.to_frame(index=False)
        return cls(cols["d"].to_numpy(int), cols["n"].to_numpy(float), wide.to_numpy(float), tuple(int(s) for s in wide.index))

    def means(self, weights: np.ndarray) -> np.ndarray:
        """Seed-weighted mean score per cell: weights (B, S) → (B, C); a cell no drawn seed has is NaN."""
        have = np.isfinite(self.scores)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ np.where(have, self.scores, 0.0)) / (weights @ have)

    def medians(self, weights: np.ndarray) -> np.ndarray:
        """Median score per cell of the multiset of seeds that ``weights`` (B, S) counts → (B, C).

        A replicate's multiset has W = Σ weights over the seeds with a score; sorted, its median
        is the mean of the elements at 0-based positions ⌊(W−1)/2⌋ and ⌊W/2⌋ (np.median's rule),
        and the element at position p is the first sorted seed whose cumulative weight exceeds p.
        """
        order = np.argsort(self.scores, axis=0)  # NaN (no run stored) sorts last
        ranked = np.take_along_axis(self.scores, order, axis=0)  # (S, C)
        have = np.isfinite(ranked)
        counts = weights[:, order] * have[None]  # (B, S, C): each cell's seeds in score order
        cumulative = np.cumsum(counts, axis=1)
        total = cumulative[:, -1, :]  # (B, C)
        lower, upper = np.floor((total - 1) / 2), np.floor(total / 2)
        pick_lower = np.argmax(cumulative > lower[:, None, :], axis=1)
        pick_upper = np.argmax(cumulative > upper[:, None, :], axis=1)
        values = np.where(have, ranked, 0.0)
        cells = np.arange(self.scores.shape[1])[None, :]
        median = (values[pick_lower, cells] + values[pick_upper, cells]) / 2
        return np.where(total > 0, median, math.nan)

    def statistic(self, weights: np.ndarray, statistic: str) -> np.ndarray:
        """``medians`` or ``means`` of the seeds ``weights`` (B, S) counts → (B, C)."""
        return self.medians(weights) if statistic == "median" else self.means(weights)

    def drawn(self, n_boot: int, seed: int) -> np.ndarray:
        """Bootstrap over whole seeds: (n_boot, S) counts of each seed in each replicate.

        Each replicate draws seed indices with replacement, and each drawn seed brings its
        whole grid (one seed's datasets are nested across n and d).
        """
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.seeds), (n_boot, len(self.seeds)))
        weights = np.zeros((n_boot, len(self.seeds)))
        np.add.at(weights, (np.arange(n_boot)[:, None], picks), 1.0)
        return weights

    def resampled(self, n_boot: int, seed: int, statistic: str = "mean") -> np.ndarray:
        """The per-cell statistic of each bootstrap replicate of ``drawn``: (n_boot, C)."""
        return self.statistic(self.drawn(n_boot, seed), statistic)

    def n_star(self, means: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """The d values and n*(d) of each row of means: (D,), (B, D)."""
        ds = np.unique(self.ds)
        stars = []
        for d in ds:
            cols = np.flatnonzero(self.ds == d)
            cols = cols[np.argsort(self.ns[cols])]
            stars.append(_crossings(self.ns[cols], means[:, cols], threshold))
        return ds, np.stack(stars, axis=1)

    def collapse_kappa(self, means: np.ndarray) -> np.ndarray:
        """κ of each row of means from the collapse fit (see ``collapse_exponent``)."""
        x = np.stack([np.ones_like(self.ns), np.log(self.ns), np.log(self.ds)], axis=1)
        out = np.full(means.shape[0], math.nan)
        for b, row in enumerate(means):
            # only the d whose curve passes mid-transition (0.5) inside its n grid: a flat or
            # noisy curve would let the fit read a slope into noise
            crossing_ds = [d for d in np.unique(self.ds) if np.nanmin(row[self.ds == d], initial=np.inf) < 0.5
                           < np.nanmax(row[self.ds == d], initial=-np.inf)]
            inside = np.isin(self.ds, crossing_ds) & (row > COLLAPSE_WINDOW[0]) & (row < COLLAPSE_WINDOW[1])
            if np.unique(self.ds[inside]).size < 2 or inside.sum() < 4:
                continue
            coef = np.linalg.lstsq(x[inside], np.log(row[inside] / (1 - row[inside])), rcond=None)[0]
            if coef[1] > 0:  # a score rising with n; otherwise there is no collapse to fit
                out[b] = -coef[2] / coef[1]
        return out


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


def criterion_for(k: int, link: str, sigma1: str = "cube") -> str:
    """What marks a target as learned: ``feature_corr`` (Figure 2's), or ``explained`` = 1 − test loss.

    The correlation of g with p means something only when the network cannot do without p:
    when σ1's polynomial features can represent h itself (degree kq) or p² (degree 2k), the
    first layer may learn those instead (k = 1: g = p³ has corr 0.77 with p, g = p² has 0).
    Then the sample size that matters is the one that makes h learned: explained variance.
    """
    degree, q = SIGMA1_DEGREE.get(sigma1), len(parse_link(link)) - 1
    if degree is not None and (k * q <= degree or 2 * k <= degree):
        return "explained"
    return "feature_corr"


def first_stage_signal(link: str) -> bool:
    """Whether E[g'(z)] ≠ 0 for Gaussian z: the theory's condition for h's degree-k part to point at p.

    p/√d is close to Gaussian, so by Stein's lemma P_k h ≈ E[g'(z)]·p to leading order in d;
    that projection is what the first stage finds, and the d^k rate rests on it. Odd powers
    z^j give E[j z^(j-1)] > 0, even powers 0: an even link (z², z⁴) leaves only lower-order
    terms, which do not point at p (for k = 2, P_2 p² ∝ Σ_i h_2(x_i), whatever the signs λ;
    for k = 1, exactly 0). Then nothing in the theory promises d^k. (A link whose odd
    powers cancel in E[g'] at p's scale reads True here; the presets have none. A mixed
    link on the raw p reads True but its odd part's share fades as d grows; a ``std:``
    link, on p/√d, keeps it.)
    """
    return any(c != 0.0 for j, c in enumerate(parse_link(link)) if j % 2 == 1)


def _one_target(runs: pd.DataFrame) -> None:
    mixed = [c for c in TARGET if c in runs.columns and runs[c].nunique() > 1]
    if mixed:
        raise AnalysisError(f"runs mix targets (different {', '.join(mixed)}): fit one target at a time "
                            "(exponent_table groups them)")


def _seed_grid(runs: pd.DataFrame, threshold: float, arch: str, criterion: str) -> SeedGrid | None:
    _check(runs)
    if not 0 < threshold < 1:
        raise AnalysisError(f"threshold must be in (0, 1), got {threshold}")
    if criterion not in CRITERIA:
        raise AnalysisError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    runs = runs[runs["arch"] == arch]
    _one_target(runs)
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
    kappa, c = (float(v[0]) for v in _fits(ds, stars))
    if not math.isfinite(kappa):
        crossed = int(np.isfinite(stars).sum())
        what = {"feature_corr": "correlation", "explained": "explained variance 1 − test loss"}[criterion]
        reason = (f"need n*(d) for at least two d, have {crossed} of {len(ds)}: the seed {statistic} {what} must rise "
                  f"through {threshold} inside each d's n grid")
        return Exponent(None, None, None, None, threshold, n_star, 0, reason, criterion, statistic=statistic)
    boot_stars = grid.n_star(boot.replicates, threshold)[1]
    kappas = _fits(ds, boot_stars)[0]
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


def exponent_table(runs: pd.DataFrame, threshold: float = THRESHOLD, thresholds: tuple[float, ...] = THRESHOLDS,
                   arch: str = "three_layer", n_boot: int = N_BOOT, seed: int = 0,
                   statistic: str = STATISTIC) -> list[dict]:
    """κ per target: one entry per (k, link, σ1, mode) of ``arch``'s runs; targets are never mixed in a fit.

    Returns:
        entries sorted by k then q, each the target (k, q, link, sigma1, mode, arch), ``kernel_kq``
        (k·q, the kernel's exponent), ``ds`` and ``kappas(...)`` with the criterion ``criterion_for`` picks.
    """
    _check(runs)
    runs = runs[runs["arch"] == arch]
    for column, default in (("link", "cubic"), ("sigma1", "cube"), ("mode", "joint")):
        if column not in runs.columns:
            runs = runs.assign(**{column: default})
    entries = []
    for (k, link, sigma1, mode), group in runs.groupby(["k", "link", "sigma1", "mode"], sort=True):
        q = len(parse_link(link)) - 1
        criterion = criterion_for(int(k), link, sigma1)
        head = {"k": int(k), "q": q, "link": link, "sigma1": sigma1, "mode": mode, "arch": arch, "kernel_kq": int(k) * q,
                "first_stage_signal": first_stage_signal(link), "ds": sorted(int(d) for d in group["d"].unique())}
        entries.append({**head, **kappas(group, threshold, thresholds, arch, n_boot, seed=seed, criterion=criterion,
                                         statistic=statistic)})
    return sorted(entries, key=lambda e: (e["k"], e["q"], e["link"], e["sigma1"], e["mode"]))


DEVIATION = 0.5  # |κ − k| beyond which a row of the exponent table says, in numbers, what the data show


def diagnosis(entry: dict, cells: pd.DataFrame, statistic: str = STATISTIC) -> str | None:
    """What the measurements say where a row departs from the theory: κ off k by more than DEVIATION, or no κ.

    No κ: each d's best seed-statistic score on its grid and where it was reached, and the score at
    the largest n (a score that falls again at the largest n is said). κ off k: n*/d^k and n*/d^kq
    for each d, so the reader sees which law n* follows. None when the row agrees with the theory.
    """
    net = cells[cells["arch"] == "three_layer"] if "arch" in cells else cells
    if entry["estimate"] is not None and abs(entry["estimate"] - entry["k"]) <= DEVIATION:
        return None
    if net.empty:
        return None
    k, kq, threshold = entry["k"], entry["kernel_kq"], entry.get("threshold") or THRESHOLD
    name = "corr(g, p)" if entry["criterion"] == "feature_corr" else "1 − test loss"
    if entry["estimate"] is None:
        parts = []
        for d, group in net.sort_values("n").groupby("d", sort=True):
            score = _cell_score(group, entry["criterion"], statistic)
            best = int(np.nanargmax(score))
            parts.append(f"d = {d}: best {score[best]:.2f} at n = {int(group['n'].iloc[best])}, "
                         f"{score[-1]:.2f} at the largest n = {int(group['n'].iloc[-1])}")
        return (f"the seed-{statistic} {name} never reaches {threshold} on the grid ({'; '.join(parts)})")
    stars = [(p["d"], p["n_star"]) for p in entry["n_star"] if p["n_star"] is not None]
    per_k = ", ".join(f"{n / d**k:.3g}" for d, n in stars)
    per_kq = ", ".join(f"{n / d**kq:.3g}" for d, n in stars)
    ds = ", ".join(str(d) for d, _ in stars)
    return (f"κ = {entry['estimate']:.2f} against k = {k}: for d = {ds}, n*/d^{k} = {per_k} and "
            f"n*/d^{kq} = {per_kq} (the kernel's exponent kq = {kq})")


def exponent_frame(entries: list[dict]) -> pd.DataFrame:
    """The exponent table flat, for display and plots: one row per target, κ and interval per threshold."""
    rows = []
    for e in entries:
        row = {c: e[c] for c in ("k", "q", "link", "sigma1", "mode", "criterion", "statistic", "kernel_kq",
                                 "first_stage_signal")}
        row.update(d=", ".join(map(str, e["ds"])), kappa=e["estimate"], low=e["low"], high=e["high"],
                   split_seed=e["split"]["seed"] if e["split"] else None, reason=e.get("reason"),
                   diagnosis=e.get("diagnosis"))
        for b in e["by_threshold"]:
            row.update({f"kappa@{b['threshold']}": b["estimate"], f"low@{b['threshold']}": b["low"],
                        f"high@{b['threshold']}": b["high"]})
        c = e["collapse"]
        row.update(kappa_collapse=c["estimate"], low_collapse=c["low"], high_collapse=c["high"])
        rows.append(row)
    return pd.DataFrame(rows)


def figure2_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (d, n) of the network with the baselines' means beside it.

    Columns: d, n, n_over_dk, seeds, the network's test_loss median, mean, std, min, max, its
    feature_corr_mean and _std, corr_median, corr_min, corr_max (the correlation's), success_fraction,
    test_loss_se and converged_fraction when the runs have them, and for each baseline arch
    ``{arch}_test_loss_mean``, ``{arch}_test_loss_std``, ``{arch}_test_loss_se``,
    ``{arch}_feature_corr_mean``, ``{arch}_seeds`` (NaN where that baseline is not stored).
    """
    mixed = [c for c in TARGET[:-1] if c in cells.columns and cells[c].nunique() > 1]
    if mixed:
        raise AnalysisError(f"cells mix targets (different {', '.join(mixed)}): one grid's table at a time")
    net = cells[cells["arch"] == "three_layer"].drop(columns=["arch"])
    out = net.reset_index(drop=True)
    out = out.rename(columns={f"feature_corr_{s}": f"corr_{s}" for s in ("median", "min", "max")})
    for arch in ("kernel", "two_layer"):
        names = [c for c in ("test_loss_mean", "test_loss_std", "test_loss_se", "feature_corr_mean", "seeds") if c in cells]
        base = cells[cells["arch"] == arch][["d", "n", *names]].rename(columns={c: f"{arch}_{c}" for c in names})
        out = out.merge(base, on=["d", "n"], how="outer")
    # baseline-only cells have no network row: fill their grid coordinates
    k = cells["k"].iloc[0] if len(cells) else 3
    out["n_over_dk"] = out["n"] / out["d"].astype(float) ** k
    out["seeds"] = out["seeds"].fillna(0).astype(int)
    return out.sort_values(["d", "n"]).reset_index(drop=True)
