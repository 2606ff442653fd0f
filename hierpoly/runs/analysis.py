"""Figure 2's numbers from stored runs: aggregation over seeds, the collapse, and the exponent κ.

Everything here is pure pandas/numpy over a runs table with at least the columns
``arch, d, n, k, seed, test_loss, feature_corr`` (``Store.summaries()`` has them)
and returns DataFrames or small frozen dataclasses; plotting is in ``plots``.

The exponent **[our procedure; the paper reports the d^k law, not a fit]**: for
each d, n*(d) is where the seed-mean feature correlation first crosses
``threshold`` (0.9 by default) going up the n grid, interpolated linearly in
log n between the last point below and the first point at or above it. Then
``log n* = κ log d + c`` by least squares; theory says κ ≈ k. The confidence
interval is a percentile bootstrap over seeds: each replicate resamples, within
every (d, n) cell, that cell's seeds with replacement, recomputes the means,
n*(d) and κ; replicates where fewer than two d cross are dropped (and counted).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS = ("test_loss", "feature_corr")
THRESHOLD = 0.9
N_BOOT = 1000
CI = 0.95
_REQUIRED = ("arch", "d", "n", "k", "seed", "test_loss", "feature_corr")


class AnalysisError(ValueError):
    """A runs table that cannot be analysed, with a one-line reason."""


def _check(runs: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in runs.columns]
    if missing:
        raise AnalysisError(f"runs table lacks the columns {', '.join(missing)}")


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof 1; NaN for one seed), min and max over seeds per (arch, d, n).

    Args:
        runs: one row per run (see module docstring).
    Returns:
        one row per (arch, d, n) with k, seeds, n_over_dk (= n / d^k) and
        ``{metric}_{mean,std,min,max}`` for test_loss and feature_corr, sorted by arch, d, n.
    """
    _check(runs)
    columns = ["arch", "d", "n", "k", "seeds", "n_over_dk"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "min", "max")]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    if runs.groupby(["arch", "d", "n"])["k"].nunique().max() > 1:
        raise AnalysisError("runs of one (arch, d, n) cell mix feature degrees k")
    grouped = runs.groupby(["arch", "d", "n"], sort=True)
    out = grouped.agg(
        k=("k", "first"),
        seeds=("seed", "nunique"),
        **{f"{m}_{s}": (m, s) for m in METRICS for s in ("mean", "std", "min", "max")},
    ).reset_index()
    out["n_over_dk"] = out["n"] / out["d"].astype(float) ** out["k"]
    return out[columns].reset_index(drop=True)


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
    above = np.flatnonzero(corr >= threshold)
    if above.size == 0 or above[0] == 0:
        return math.nan
    j = int(above[0])
    x0, x1, y0, y1 = math.log(n[j - 1]), math.log(n[j]), corr[j - 1], corr[j]
    return math.exp(x0 + (threshold - y0) / (y1 - y0) * (x1 - x0))


def thresholds(cells: pd.DataFrame, threshold: float = THRESHOLD, arch: str = "three_layer") -> pd.DataFrame:
    """n*(d) for each d from the mean correlations of one architecture: columns d, n_star (NaN: no crossing)."""
    rows = []
    for d, group in cells[cells["arch"] == arch].groupby("d", sort=True):
        rows.append({"d": int(d), "n_star": crossing(group["n"].to_numpy(), group["feature_corr_mean"].to_numpy(), threshold)})
    return pd.DataFrame(rows, columns=["d", "n_star"]).astype({"d": int, "n_star": float})


def fit_exponent(d: np.ndarray, n_star: np.ndarray) -> tuple[float, float]:
    """Least squares log n* = κ log d + c over the finite n*; (κ, c), NaN when fewer than two d."""
    d, n_star = np.asarray(d, float), np.asarray(n_star, float)
    ok = np.isfinite(n_star) & (n_star > 0)
    if np.unique(d[ok]).size < 2:
        return math.nan, math.nan
    kappa, c = np.polyfit(np.log(d[ok]), np.log(n_star[ok]), 1)
    return float(kappa), float(c)


@dataclass(frozen=True)
class Exponent:
    """κ of n*(d) ∝ d^κ with its bootstrap interval; estimate is None with a reason when it cannot be had."""

    estimate: float | None
    low: float | None
    high: float | None
    intercept: float | None
    threshold: float
    n_star: pd.DataFrame  # d, n_star from the seed means
    replicates: int  # bootstrap replicates that gave a κ
    reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate, "low": self.low, "high": self.high, "intercept": self.intercept,
            "threshold": self.threshold, "replicates": self.replicates, "reason": self.reason,
            "n_star": [{"d": int(r.d), "n_star": None if not np.isfinite(r.n_star) else float(r.n_star)}
                       for r in self.n_star.itertuples()],
        }


def exponent(
    runs: pd.DataFrame,
    threshold: float = THRESHOLD,
    arch: str = "three_layer",
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = 0,
) -> Exponent:
    """κ in n*(d) ∝ d^κ with a percentile bootstrap CI over seeds (see module docstring).

    Args:
        runs: one row per run; only rows of ``arch`` are used.
        threshold: the feature correlation that defines n*(d).
        n_boot: bootstrap replicates; ci: the interval's coverage.
        seed: the bootstrap's random seed (the answer is deterministic).
    Returns:
        an Exponent; estimate None with a reason when fewer than two d cross the threshold.
    """
    _check(runs)
    if not 0 < threshold < 1:
        raise AnalysisError(f"threshold must be in (0, 1), got {threshold}")
    runs = runs[runs["arch"] == arch]
    cells = aggregate(runs)
    n_star = thresholds(cells, threshold, arch)
    kappa, c = fit_exponent(n_star["d"].to_numpy(), n_star["n_star"].to_numpy())
    if not math.isfinite(kappa):
        crossed = int(np.isfinite(n_star["n_star"]).sum())
        reason = (
            f"need n*(d) for at least two d, have {crossed} of {len(n_star)}: the mean correlation must rise "
            f"through {threshold} inside each d's n grid"
        )
        return Exponent(None, None, None, None, threshold, n_star, 0, reason)
    boots = _bootstrap(runs, threshold, n_boot, seed)
    low = high = None
    if boots.size:
        low, high = (float(v) for v in np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2]))
    return Exponent(kappa, low, high, c, threshold, n_star, int(boots.size))


def _bootstrap(runs: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> np.ndarray:
    """κ of each replicate that has two or more crossings: seeds resampled within each (d, n) cell."""
    rng = np.random.default_rng(seed)
    cells = [(int(d), float(n), g["feature_corr"].to_numpy(float)) for (d, n), g in runs.groupby(["d", "n"], sort=True)]
    ds = sorted({d for d, _, _ in cells})
    out = []
    for _ in range(n_boot):
        means = {(d, n): v[rng.integers(0, v.size, v.size)].mean() for d, n, v in cells}
        stars = []
        for d in ds:
            ns = np.array([n for dd, n in means if dd == d])
            stars.append(crossing(ns, np.array([means[(d, n)] for n in ns]), threshold))
        kappa, _ = fit_exponent(np.array(ds), np.array(stars))
        if math.isfinite(kappa):
            out.append(kappa)
    return np.asarray(out)


def figure2_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (d, n) of the network with the baselines' means beside it.

    Columns: d, n, n_over_dk, seeds, the network's test_loss/feature_corr mean, std, min, max,
    and for each baseline arch ``{arch}_test_loss_mean``, ``{arch}_test_loss_std``,
    ``{arch}_feature_corr_mean``, ``{arch}_seeds`` (NaN where that baseline is not stored).
    """
    net = cells[cells["arch"] == "three_layer"].drop(columns=["arch"])
    out = net.reset_index(drop=True)
    for arch in ("kernel", "two_layer"):
        base = cells[cells["arch"] == arch][["d", "n", "test_loss_mean", "test_loss_std", "feature_corr_mean", "seeds"]]
        base = base.rename(columns={c: f"{arch}_{c}" for c in ("test_loss_mean", "test_loss_std", "feature_corr_mean", "seeds")})
        out = out.merge(base, on=["d", "n"], how="outer")
    # baseline-only cells have no network row: fill their grid coordinates
    k = cells["k"].iloc[0] if len(cells) else 3
    out["n_over_dk"] = out["n"] / out["d"].astype(float) ** k
    out["seeds"] = out["seeds"].fillna(0).astype(int)
    return out.sort_values(["d", "n"]).reset_index(drop=True)
