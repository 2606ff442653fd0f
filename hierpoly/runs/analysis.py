"""Figure 2's numbers from stored runs: aggregation over seeds, the collapse, and the exponent κ.

Everything here is pure pandas/numpy over a runs table with at least the columns
``arch, d, n, k, seed, test_loss, feature_corr`` (``Store.summaries()`` has them)
and returns DataFrames or small frozen dataclasses; plotting is in ``plots``.

The exponent **[our procedure; the paper reports the d^k law, not a fit]**: for
each d, n*(d) is where the seed-mean score first crosses ``threshold`` going up
the n grid, interpolated linearly in log n between the last point below and the
first point at or above it. The score is the feature correlation (Figure 2's), or
the explained variance 1 − test loss where the correlation with p means nothing
(``criterion_for``). Then ``log n* = κ log d + c`` by least squares; theory says
κ ≈ k. κ is reported at thresholds 0.8, 0.9 and 0.95 and from a logistic fit of
the collapse (``collapse_exponent``), which uses every transition cell at once.

The interval is a percentile bootstrap over **whole seeds**: a replicate draws
seed indices with replacement and each drawn seed brings its whole grid, because
one seed's datasets are nested across n and d (its runs are not independent
draws per cell). It covers seed-to-seed noise only — not the choice of threshold,
the step cap, the d range or the finite-d bias of the slope. Replicates where
fewer than two d cross are dropped (and counted).

Runs are grouped by target (k, link, σ1, mode, arch); a fit never mixes targets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.config import SIGMA1_DEGREE
from hierpoly.targets import parse_link

METRICS = ("test_loss", "feature_corr")
THRESHOLD = 0.9
THRESHOLDS = (0.8, 0.9, 0.95)  # κ at each: how far it moves with the threshold is part of the answer
CRITERIA = ("feature_corr", "explained")  # explained: 1 − test loss (the MSE, in units of E[h²] = 1)
COLLAPSE_WINDOW = (0.05, 0.99)  # cells whose mean score lies here enter the collapse fit (logits stay finite)
TARGET = ("k", "link", "sigma1", "mode", "arch")  # what one κ belongs to
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
    """Mean, sample std (ddof 1; NaN for one seed), min and max over seeds per target and (d, n).

    Args:
        runs: one row per run (see module docstring); link, sigma1 and mode columns, when
            present, are part of the target, so cells of different targets never merge.
    Returns:
        one row per (arch, k, [link, sigma1, mode,] d, n) with seeds, n_over_dk (= n / d^k) and
        ``{metric}_{mean,std,min,max}`` for test_loss and feature_corr, sorted by target, d, n.
    """
    _check(runs)
    target = ["arch", "k"] + [c for c in TARGET if c in runs.columns and c not in ("arch", "k")]
    keys = ["arch", "d", "n", "k"] + target[2:]
    columns = keys + ["seeds", "n_over_dk"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "min", "max")]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    out = runs.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"),
        **{f"{m}_{s}": (m, s) for m in METRICS for s in ("mean", "std", "min", "max")},
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
               criterion: str = "feature_corr") -> pd.DataFrame:
    """n*(d) for each d from the seed means of one architecture: columns d, n_star (NaN: no crossing)."""
    rows = []
    for d, group in cells[cells["arch"] == arch].groupby("d", sort=True):
        mean = _cell_score(group, criterion)
        rows.append({"d": int(d), "n_star": crossing(group["n"].to_numpy(), mean, threshold)})
    return pd.DataFrame(rows, columns=["d", "n_star"]).astype({"d": int, "n_star": float})


def _cell_score(cells: pd.DataFrame, criterion: str) -> np.ndarray:
    """The seed-mean score of aggregated cells: mean correlation, or 1 − mean test loss."""
    if criterion == "feature_corr":
        return cells["feature_corr_mean"].to_numpy(float)
    return 1.0 - cells["test_loss_mean"].to_numpy(float)


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

    def resampled(self, n_boot: int, seed: int) -> np.ndarray:
        """Bootstrap over whole seeds: each replicate draws seed indices with replacement, and each
        drawn seed brings its whole grid (one seed's datasets are nested across n and d)."""
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.seeds), (n_boot, len(self.seeds)))
        weights = np.zeros((n_boot, len(self.seeds)))
        np.add.at(weights, (np.arange(n_boot)[:, None], picks), 1.0)
        return self.means(weights)

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
    low: float | None
    high: float | None
    intercept: float | None
    threshold: float | None  # None for the collapse fit
    n_star: pd.DataFrame  # d, n_star from the seed means (empty for the collapse fit)
    replicates: int  # bootstrap replicates that gave a κ
    reason: str | None = None
    criterion: str = "feature_corr"
    method: str = "threshold"  # threshold: fit of n*(d); collapse: logistic fit of the collapse

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate, "low": self.low, "high": self.high, "intercept": self.intercept,
            "threshold": self.threshold, "replicates": self.replicates, "reason": self.reason,
            "criterion": self.criterion, "method": self.method,
            "n_star": [{"d": int(r.d), "n_star": None if not np.isfinite(r.n_star) else float(r.n_star)}
                       for r in self.n_star.itertuples()],
        }

    def brief(self) -> dict:
        """threshold, estimate, low, high: one row of a by-threshold table."""
        return {"threshold": self.threshold, "estimate": self.estimate, "low": self.low, "high": self.high}


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


def _interval(values: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    low, high = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def _threshold_exponent(grid: SeedGrid | None, threshold: float, boots: np.ndarray, ci: float, criterion: str) -> Exponent:
    """κ from n*(d) at one threshold: the seed means' fit, and the same fit on each bootstrap row."""
    empty = pd.DataFrame({"d": pd.Series(dtype=int), "n_star": pd.Series(dtype=float)})
    if grid is None:
        return Exponent(None, None, None, None, threshold, empty, 0,
                        "need n*(d) for at least two d, have none: no run of this grid is stored", criterion)
    ds, stars = grid.n_star(grid.means(np.ones((1, len(grid.seeds)))), threshold)
    n_star = pd.DataFrame({"d": ds.astype(int), "n_star": stars[0]})
    kappa, c = (float(v[0]) for v in _fits(ds, stars))
    if not math.isfinite(kappa):
        crossed = int(np.isfinite(stars).sum())
        what = "mean correlation" if criterion == "feature_corr" else "explained variance 1 − test loss"
        reason = (f"need n*(d) for at least two d, have {crossed} of {len(ds)}: the {what} must rise "
                  f"through {threshold} inside each d's n grid")
        return Exponent(None, None, None, None, threshold, n_star, 0, reason, criterion)
    kappas = _fits(ds, grid.n_star(boots, threshold)[1])[0]
    low, high = _interval(kappas, ci)
    return Exponent(kappa, low, high, c, threshold, n_star, int(np.isfinite(kappas).sum()), None, criterion)


def _collapse_exponent(grid: SeedGrid | None, boots: np.ndarray, ci: float, criterion: str) -> Exponent:
    empty = pd.DataFrame({"d": pd.Series(dtype=int), "n_star": pd.Series(dtype=float)})
    kappa = math.nan if grid is None else float(grid.collapse_kappa(grid.means(np.ones((1, len(grid.seeds)))))[0])
    if not math.isfinite(kappa):
        reason = (f"the collapse fit needs at least two d whose mean score passes 0.5 inside the grid, "
                  f"with cells in {COLLAPSE_WINDOW} rising with n")
        return Exponent(None, None, None, None, None, empty, 0, reason, criterion, "collapse")
    kappas = grid.collapse_kappa(boots)
    low, high = _interval(kappas, ci)
    return Exponent(kappa, low, high, None, None, empty, int(np.isfinite(kappas).sum()), None, criterion, "collapse")


def exponent(
    runs: pd.DataFrame,
    threshold: float = THRESHOLD,
    arch: str = "three_layer",
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = 0,
    criterion: str = "feature_corr",
) -> Exponent:
    """κ in n*(d) ∝ d^κ with a percentile bootstrap CI over whole seeds (see module docstring).

    Args:
        runs: one row per run of one target; only rows of ``arch`` are used.
        threshold: the score that defines n*(d).
        n_boot: bootstrap replicates; ci: the interval's coverage.
        seed: the bootstrap's random seed (the answer is deterministic).
        criterion: the score, ``feature_corr`` or ``explained`` (1 − test loss); see ``criterion_for``.
    Returns:
        an Exponent; estimate None with a reason when fewer than two d cross the threshold.
    """
    grid = _seed_grid(runs, threshold, arch, criterion)
    boots = grid.resampled(n_boot, seed) if grid is not None else None
    return _threshold_exponent(grid, threshold, boots, ci, criterion)


def collapse_exponent(runs: pd.DataFrame, arch: str = "three_layer", n_boot: int = N_BOOT, ci: float = CI,
                      seed: int = 0, criterion: str = "feature_corr") -> Exponent:
    """κ from a fit of the collapse: logit(score) = a + b log n − bκ log d over the transition cells.

    If the curves are one curve of n/d^κ, a logistic in log(n/d^κ) fits them all; the least
    squares fit of the seed means' logits (cells with mean score in COLLAPSE_WINDOW) gives κ
    from every transition cell at once, not from one threshold. Interval: the seed bootstrap.
    """
    grid = _seed_grid(runs, THRESHOLD, arch, criterion)
    boots = grid.resampled(n_boot, seed) if grid is not None else None
    return _collapse_exponent(grid, boots, ci, criterion)


def kappas(runs: pd.DataFrame, threshold: float = THRESHOLD, thresholds: tuple[float, ...] = THRESHOLDS,
           arch: str = "three_layer", n_boot: int = N_BOOT, ci: float = CI, seed: int = 0,
           criterion: str = "feature_corr") -> dict:
    """κ of one target every way at once, on one set of bootstrap replicates.

    Returns:
        ``exponent(...).to_dict()`` at ``threshold``, plus ``by_threshold`` (a list of
        threshold, estimate, low, high for each of ``thresholds``) and ``collapse``.
    """
    grid = _seed_grid(runs, threshold, arch, criterion)
    for t in thresholds:
        if not 0 < t < 1:
            raise AnalysisError(f"threshold must be in (0, 1), got {t}")
    boots = grid.resampled(n_boot, seed) if grid is not None else None
    out = _threshold_exponent(grid, threshold, boots, ci, criterion).to_dict()
    out["by_threshold"] = [_threshold_exponent(grid, t, boots, ci, criterion).brief() for t in thresholds]
    collapsed = _collapse_exponent(grid, boots, ci, criterion)
    out["collapse"] = {k: v for k, v in collapsed.to_dict().items() if k not in ("n_star", "threshold", "intercept")}
    return out


def exponent_table(runs: pd.DataFrame, threshold: float = THRESHOLD, thresholds: tuple[float, ...] = THRESHOLDS,
                   arch: str = "three_layer", n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
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
        entries.append({**head, **kappas(group, threshold, thresholds, arch, n_boot, seed=seed, criterion=criterion)})
    return sorted(entries, key=lambda e: (e["k"], e["q"], e["link"], e["sigma1"], e["mode"]))


def exponent_frame(entries: list[dict]) -> pd.DataFrame:
    """The exponent table flat, for display and plots: one row per target, κ and interval per threshold."""
    rows = []
    for e in entries:
        row = {c: e[c] for c in ("k", "q", "link", "sigma1", "mode", "criterion", "kernel_kq", "first_stage_signal")}
        row.update(d=", ".join(map(str, e["ds"])), kappa=e["estimate"], low=e["low"], high=e["high"])
        for b in e["by_threshold"]:
            row.update({f"kappa@{b['threshold']}": b["estimate"], f"low@{b['threshold']}": b["low"],
                        f"high@{b['threshold']}": b["high"]})
        c = e["collapse"]
        row.update(kappa_collapse=c["estimate"], low_collapse=c["low"], high_collapse=c["high"])
        rows.append(row)
    return pd.DataFrame(rows)


def figure2_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (d, n) of the network with the baselines' means beside it.

    Columns: d, n, n_over_dk, seeds, the network's test_loss/feature_corr mean, std, min, max,
    test_loss_se and converged_fraction when the runs have them, and for each baseline arch
    ``{arch}_test_loss_mean``, ``{arch}_test_loss_std``, ``{arch}_test_loss_se``,
    ``{arch}_feature_corr_mean``, ``{arch}_seeds`` (NaN where that baseline is not stored).
    """
    mixed = [c for c in TARGET[:-1] if c in cells.columns and cells[c].nunique() > 1]
    if mixed:
        raise AnalysisError(f"cells mix targets (different {', '.join(mixed)}): one grid's table at a time")
    net = cells[cells["arch"] == "three_layer"].drop(columns=["arch"])
    out = net.reset_index(drop=True)
    for arch in ("kernel", "two_layer"):
        names = [c for c in ("test_loss_mean", "test_loss_std", "test_loss_se", "feature_corr_mean", "seeds") if c in cells]
        base = cells[cells["arch"] == arch][["d", "n", *names]].rename(columns={c: f"{arch}_{c}" for c in names})
        out = out.merge(base, on=["d", "n"], how="outer")
    # baseline-only cells have no network row: fill their grid coordinates
    k = cells["k"].iloc[0] if len(cells) else 3
    out["n_over_dk"] = out["n"] / out["d"].astype(float) ** k
    out["seeds"] = out["seeds"].fillna(0).astype(int)
    return out.sort_values(["d", "n"]).reset_index(drop=True)
