"""Figure 2's cells from stored runs: per target and (d, n), the seed statistics of each metric.

Everything here is pure pandas/numpy over a runs table with at least the columns
``arch, d, n, k, seed, test_loss, feature_corr`` (``Store.summaries()`` has them)
and returns DataFrames; κ is read from these cells in ``kappa_fit`` (``crossings``: where a
score crosses a threshold; ``exponents``: the table over targets); plotting is in ``plots``.

Why the median leads: a seed that lands on a poor feature in a cell its siblings solve
moves that cell's mean by a fifth of the gap, and with it n*(d) and κ; the median moves
only when most seeds move (Nichani, Damian & Lee 2023 plot the median over 5 seeds with a
min–max band). The mean is kept beside it as a sensitivity figure.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hierpoly.config import SIGMA1_DEGREE
from hierpoly.targets import parse_link

METRICS = ("test_loss", "feature_corr")


THRESHOLD = 0.9


TARGET = ("k", "link", "sigma1", "mode", "arch")  # what one κ belongs to


STATISTICS = ("median", "mean")  # the seed statistic per cell: the median leads, the mean is the sensitivity figure


STATISTIC = "median"


_REQUIRED = ("arch", "d", "n", "k", "seed", "test_loss", "feature_corr")


class AnalysisError(ValueError):
    """A runs table that cannot be analysed, with a one-line reason."""


def check_runs(runs: pd.DataFrame) -> None:
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
    check_runs(runs)
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


def cell_score(cells: pd.DataFrame, criterion: str, statistic: str = STATISTIC) -> np.ndarray:
    """The seed statistic's score of aggregated cells: correlation, or 1 − test loss (its median or mean)."""
    # 1 − x is monotone, so the median of 1 − loss is 1 − the median loss
    if criterion == "feature_corr":
        return cells[f"feature_corr_{statistic}"].to_numpy(float)
    return 1.0 - cells[f"test_loss_{statistic}"].to_numpy(float)


def one_target(runs: pd.DataFrame) -> None:
    mixed = [c for c in TARGET if c in runs.columns and runs[c].nunique() > 1]
    if mixed:
        raise AnalysisError(f"runs mix targets (different {', '.join(mixed)}): fit one target at a time "
                            "(exponent_table groups them)")


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

