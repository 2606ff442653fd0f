"""n*(d): where a cell score first crosses a threshold going up the n grid, the fit of log n* on log d,
and one target's runs as a seed-by-cell matrix (``SeedGrid``) for the bootstrap in ``kappa_fit``."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.study.cell_stats import STATISTIC, THRESHOLD, cell_score

COLLAPSE_WINDOW = (0.05, 0.99)  # cells whose mean score lies here enter the collapse fit (logits stay finite)


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
        score = cell_score(group, criterion, statistic)
        rows.append({"d": int(d), "n_star": crossing(group["n"].to_numpy(), score, threshold)})
    return pd.DataFrame(rows, columns=["d", "n_star"]).astype({"d": int, "n_star": float})


def fit_exponent(d: np.ndarray, n_star: np.ndarray) -> tuple[float, float]:
    """Least squares log n* = κ log d + c over the finite n*; (κ, c), NaN when fewer than two d."""
    slope, intercept = fit_exponents(np.asarray(d, float), np.asarray(n_star, float)[None, :])
    return float(slope[0]), float(intercept[0])


def fit_exponents(d: np.ndarray, n_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

