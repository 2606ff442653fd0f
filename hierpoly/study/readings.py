"""Finite-d readings of n*(d): n* beside d^k and the polynomial counts, and predictions of n* at a larger d.

Theory says n* ∝ d^k as d → ∞. At finite d other normalisations are candidates: the number of
polynomials of degree ≤ k in d variables, C(d+k, k) (the features of the paper's first-stage kernel
regression), and of homogeneous degree k, C(d+k−1, k); both grow as d^k/k! only asymptotically.
Whether a ratio n*/N(d) is flat is measured, never assumed: the slope of log(n*/N) against log d,
with its interval.

Every interval here is the whole-seed percentile bootstrap of ``kappa_fit`` (same draws, same seed, so
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
from hierpoly.study import cell_stats, crossings, exponents, kappa_fit

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
    """n*(d) of the seed statistic and of each whole-seed bootstrap replicate at one threshold."""

    ds: np.ndarray  # (D,)
    point: np.ndarray  # (D,) NaN where a d does not cross
    replicates: np.ndarray  # (B, D)
    threshold: float


def n_star_draws(runs: pd.DataFrame, threshold: float, criterion: str = "feature_corr",
                 statistic: str = cell_stats.STATISTIC, n_boot: int = kappa_fit.N_BOOT, seed: int = 0,
                 arch: str = "three_layer") -> NStarDraws | None:
    """n*(d) and its bootstrap replicates, drawn exactly as ``kappa_fit.kappas`` draws them; None without runs."""
    drawn = n_star_draws_at(runs, (threshold,), criterion, statistic, n_boot, seed, arch)
    return None if drawn is None else drawn[threshold]


def n_star_draws_at(runs: pd.DataFrame, thresholds: tuple[float, ...], criterion: str = "feature_corr",
                    statistic: str = cell_stats.STATISTIC, n_boot: int = kappa_fit.N_BOOT, seed: int = 0,
                    arch: str = "three_layer") -> dict[float, NStarDraws] | None:
    """``n_star_draws`` at several thresholds from one set of draws (one replicate is one draw at every threshold)."""
    runs = runs[runs["arch"] == arch]
    if not len(runs):
        return None
    grid = crossings.SeedGrid.from_runs(runs, criterion)
    point = grid.statistic(np.ones((1, len(grid.seeds))), statistic)
    replicates = grid.statistic(grid.drawn(n_boot, seed), statistic)
    out = {}
    for t in thresholds:
        ds, stars = grid.n_star(point, t)
        out[t] = NStarDraws(ds, stars[0], grid.n_star(replicates, t)[1], t)
    return out


def interval(point: float, replicates: np.ndarray, ci: float = kappa_fit.CI, mixed: int = 0) -> dict:
    """A point with its percentile interval, the replicates behind it and whether the interval is marked.

    ``mixed``: replicates whose value rests on a different set of d than the point's.
    """
    finite = replicates[np.isfinite(replicates)]
    distinct = int(np.unique(np.round(finite, 10)).size)
    low, high = kappa_fit._interval(finite, ci) if math.isfinite(point) else (None, None)
    reasons = []
    if low is not None and distinct < MIN_DISTINCT:
        reasons.append(f"{distinct} distinct replicate values (< {MIN_DISTINCT})")
    if low is not None and mixed:
        reasons.append(f"{mixed} of {replicates.size} replicates rest on another set of d")
    return jsonable({"estimate": float(point), "low": low, "high": high,
                     "replicates": int(finite.size), "distinct": distinct, "mixed_d_sets": int(mixed),
                     "marked": "; ".join(reasons) or None})


def _mixed(point: np.ndarray, replicates: np.ndarray) -> int:
    """Replicates whose crossed d differ from the point's (only where they give a value at all)."""
    return int((np.isfinite(replicates) != np.isfinite(point)[None, :]).any(axis=1).sum())


# ------------------------------------------------------------------ predictions before the runs
def _power_law(draws: NStarDraws, d: int) -> tuple[float, np.ndarray]:
    """n*(d) from the κ fit over every crossed d: exp(c) d^κ, for the point and each replicate."""
    kappa, c = crossings.fit_exponent(draws.ds, draws.point)
    reps = np.array([math.exp(cb + kb * math.log(d)) if math.isfinite(kb) else math.nan
                     for kb, cb in (crossings.fit_exponent(draws.ds, row) for row in draws.replicates)])
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


def predictions(runs: pd.DataFrame, k: int = 3, criterion: str = "feature_corr", statistic: str = cell_stats.STATISTIC,
                fit_ds: tuple[int, ...] = PREDICTION_FIT_DS, d: int = PREDICTION_D,
                threshold: float = PREDICTION_THRESHOLD, n_boot: int = kappa_fit.N_BOOT, seed: int = 0) -> dict | None:
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
        "power_law": {**interval(*power, mixed=mixed), "kappa": crossings.fit_exponent(fitted.ds, fitted.point)[0],
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


# ------------------------------------------------------------------ readings of one grid
WIDTH = (0.5, 0.95)  # the transition's width: n*(0.95)/n*(0.5)
KAPPA_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # κ by threshold: a shift moves them all, a sharpening spreads them


def _slope(ds: np.ndarray, point: np.ndarray, replicates: np.ndarray, ci: float) -> dict:
    """The least-squares slope of log(values) against log d, over the d with a value, with its interval."""
    slope = float(crossings.fit_exponents(ds.astype(float), point[None, :])[0][0])
    reps = crossings.fit_exponents(ds.astype(float), replicates)[0]
    out = interval(slope, reps, ci, mixed=_mixed(point, replicates))
    out["ds"] = [int(d) for d, v in zip(ds, point) if math.isfinite(v)]
    return out


def _flat(slope: dict) -> bool | None:
    """Flat within its interval: the slope's interval holds 0 (None: no interval)."""
    if slope["low"] is None or slope["estimate"] is None:
        return None
    return bool(slope["low"] <= 0.0 <= slope["high"])


def _ratios(draws: NStarDraws, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """n*/N(d) for each normalisation: (point (D,), replicates (B, D))."""
    out = {}
    for name, norm in NORMALISATIONS.items():
        scale = np.array([norm(int(d), k) for d in draws.ds], float)
        out[name] = (draws.point / scale, draws.replicates / scale)
    return out


def _width(draws: dict[float, NStarDraws]) -> tuple[np.ndarray, np.ndarray]:
    low, high = draws[WIDTH[0]], draws[WIDTH[1]]
    return high.point / low.point, high.replicates / low.replicates


def _per_d(draws: dict[float, NStarDraws], threshold: float, k: int, ci: float) -> list[dict]:
    main = draws[threshold]
    ratios, (width, width_reps) = _ratios(main, k), _width(draws)
    rows = []
    for i, d in enumerate(main.ds):
        row = {"d": int(d), "n_star": interval(float(main.point[i]), main.replicates[:, i], ci)}
        for name, (point, reps) in ratios.items():
            row[f"n_star_over_{name}"] = interval(float(point[i]), reps[:, i], ci)
        row["width_95_50"] = interval(float(width[i]), width_reps[:, i], ci)
        rows.append(jsonable(row))
    return rows


def _slopes_at(draws: NStarDraws, k: int, ci: float) -> dict:
    """At one threshold: each log ratio's slope against log d, and whether it is flat within its interval."""
    out = {"threshold": draws.threshold}
    for name, (point, reps) in _ratios(draws, k).items():
        slope = _slope(draws.ds, point, reps, ci)
        out[name] = {**slope, "flat": _flat(slope)}
    return out


def grid_readings(runs: pd.DataFrame, k: int, criterion: str = "feature_corr", statistic: str = cell_stats.STATISTIC,
                  threshold: float = cell_stats.THRESHOLD, thresholds: tuple[float, ...] = kappa_fit.THRESHOLDS,
                  n_boot: int = kappa_fit.N_BOOT, seed: int = 0, ci: float = kappa_fit.CI) -> dict | None:
    """One grid's finite-d readings, every interval from the κ bootstrap's draws; None without network runs.

    Returns:
        ``per_d``: for each d at ``threshold``, ``n_star`` and ``n_star_over_dk``, ``_count`` (C(d+k, k)) and
        ``_homogeneous`` (C(d+k−1, k)), and ``width_95_50`` (n*(0.95)/n*(0.5)), each an ``interval``;
        ``slopes``: at each of ``thresholds``, the slope of each log ratio against log d with its interval,
        the d it rests on and ``flat`` (its interval holds 0); ``width_slope``: the same for the width;
        ``kappa_by_threshold``: κ at each of KAPPA_THRESHOLDS with the d it rests on.
    """
    wanted = tuple(sorted({threshold, *thresholds, *WIDTH, *KAPPA_THRESHOLDS}))
    draws = n_star_draws_at(runs, wanted, criterion, statistic, n_boot, seed)
    if draws is None:
        return None
    width, width_reps = _width(draws)
    kappa = [{"threshold": t, **_slope(draws[t].ds, draws[t].point, draws[t].replicates, ci)} for t in KAPPA_THRESHOLDS]
    return {"threshold": threshold, "statistic": statistic, "k": k,
            "per_d": _per_d(draws, threshold, k, ci),
            "collapse": collapse_interval(runs, criterion, statistic, n_boot, seed, ci),
            "slopes": [_slopes_at(draws[t], k, ci) for t in thresholds],
            "width_slope": _slope(draws[threshold].ds, width, width_reps, ci),
            "kappa_by_threshold": kappa}


def collapse_interval(runs: pd.DataFrame, criterion: str = "feature_corr", statistic: str = cell_stats.STATISTIC,
                      n_boot: int = kappa_fit.N_BOOT, seed: int = 0, ci: float = kappa_fit.CI) -> dict | None:
    """The collapse fit's κ as an ``interval`` (how many distinct replicates it rests on), from the same draws."""
    runs = runs[runs["arch"] == "three_layer"]
    if not len(runs):
        return None
    grid = crossings.SeedGrid.from_runs(runs, criterion)
    point = grid.collapse_kappa(grid.statistic(np.ones((1, len(grid.seeds))), statistic))[0]
    return interval(float(point), grid.collapse_kappa(grid.statistic(grid.drawn(n_boot, seed), statistic)), ci)


def marked_kappa(kappa: dict, rd: dict | None) -> dict:
    """``kappa_fit.kappas``'s dict with each threshold's κ marked: the d it rests on (``fit_ds``), its distinct
    replicates, how many rest on another set of d, and ``marked`` (why the interval is not a plain 95% one)."""
    by = {b["threshold"]: b for b in rd["kappa_by_threshold"]} if rd else {}

    def mark(entry: dict) -> dict:
        m = by.get(entry["threshold"], {})
        return {**entry, "fit_ds": m.get("ds", []), **{name: m.get(name) for name in ("distinct", "mixed_d_sets", "marked")}}

    out = mark(kappa)
    out["by_threshold"] = [mark(b) for b in kappa["by_threshold"]]
    collapse = rd.get("collapse") if rd else None
    out["collapse"] = {**kappa["collapse"], **{name: (collapse or {}).get(name)
                                               for name in ("distinct", "mixed_d_sets", "marked")}}
    return out


# ------------------------------------------------------------------ what the readings say, in sentences
def ratio_name(name: str, k: int) -> str:
    """How a normalisation prints: n*/d^3, n*/C(d+3,3), n*/C(d+2,3)."""
    shifted = f"d+{k - 1}" if k > 1 else "d"
    return {"dk": f"n*/d^{k}", "count": f"n*/C(d+{k},{k})", "homogeneous": f"n*/C({shifted},{k})"}[name]


def interval_text(entry: dict) -> str:
    """'−0.07 [−0.28, 0.14]', the interval followed by † when it is marked (see ``marked``)."""
    if entry.get("estimate") is None:
        return "–"
    if entry.get("low") is None:
        return f"{entry['estimate']:.2f}"
    return f"{entry['estimate']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]" + ("†" if entry.get("marked") else "")


MARK_NOTE = ("† marks an interval from fewer than 30 distinct bootstrap replicate values or from replicates that "
             "rest on different sets of d: not a 95% interval.")


def _at(rd: dict, threshold: float) -> dict | None:
    return next((s for s in rd["slopes"] if s["threshold"] == threshold), None)


def _series(rd: dict, field: str) -> tuple[str, str]:
    rows = [(r["d"], r[field]["estimate"]) for r in rd["per_d"] if r[field]["estimate"] is not None]
    return ", ".join(f"{v:.2f}" for _, v in rows), ", ".join(str(d) for d, _ in rows)


def _direction(slope: dict, down: str, up: str, neither: str) -> str:
    if slope["low"] is None:
        return neither
    return down if slope["high"] < 0 else up if slope["low"] > 0 else neither


def shift_sentence(rd: dict) -> str:
    """Where the crossing sits in n/d^k per d, and whether that moves with d (the slope of log n*/d^k is κ − k)."""
    k, dk = rd["k"], (_at(rd, rd["threshold"]) or {}).get("dk")
    values, ds = _series(rd, "n_star_over_dk")
    if dk is None or dk["estimate"] is None:
        return ""
    where = _direction(dk, f"moves left in n/d^{k} as d grows", f"moves right in n/d^{k} as d grows",
                       f"does not move measurably in n/d^{k}")
    return (f"At {rd['threshold']}, n*/d^{k} is {values} for d = {ds} (the slope of its log against log d, "
            f"κ − k, is {interval_text(dk)}): the crossing {where}.")


def width_sentence(rd: dict) -> str:
    """The transition's width n*(0.95)/n*(0.5) per d and whether it narrows with d."""
    values, ds = _series(rd, "width_95_50")
    slope = rd["width_slope"]
    if slope["estimate"] is None:
        return ""
    trend = _direction(slope, "it narrows as d grows", "it widens as d grows", "it does not narrow measurably as d grows")
    return (f"The transition's width n*(0.95)/n*(0.5) is {values} for d = {ds} (slope against log d "
            f"{interval_text(slope)}): {trend}.")


def kappa_threshold_sentence(rd: dict) -> str:
    """κ at every threshold of KAPPA_THRESHOLDS that gives one: how far it moves with the threshold."""
    have = [e for e in rd["kappa_by_threshold"] if e["estimate"] is not None]
    if len(have) < 2:
        return ""
    low, high = min(e["estimate"] for e in have), max(e["estimate"] for e in have)
    ts = [e["threshold"] for e in have]
    missing = [e["threshold"] for e in rd["kappa_by_threshold"] if e["estimate"] is None]
    tail = f" that give one (none at {', '.join(map(str, missing))})" if missing else ""
    return f"κ is {low:.2f}–{high:.2f} at each of the {len(ts)} thresholds from {ts[0]} to {ts[-1]}{tail}."


def flatness_sentence(rd: dict, threshold: float) -> str:
    """Which ratio n*/N(d) is flat within its interval at ``threshold`` and which is not (measured, never assumed)."""
    at, k = _at(rd, threshold), rd["k"]
    if at is None:
        return ""
    parts = {True: [], False: [], None: []}
    for name in NORMALISATIONS:
        parts[at[name]["flat"]].append(f"{ratio_name(name, k)} ({interval_text(at[name])})")
    ds = next((at[name]["ds"] for name in NORMALISATIONS if at[name]["ds"]), [])
    if not ds:
        return f"At {threshold}, no ratio can be read: fewer than two d cross."
    text = [f"At {threshold} (slopes of the log ratio against log d over d = {', '.join(map(str, ds))}):"]
    if parts[True]:
        text.append(f"flat within its interval: {'; '.join(parts[True])}.")
    if parts[False]:
        text.append(f"{'N' if not parts[True] else 'n'}ot flat: {'; '.join(parts[False])}.")
    if parts[None]:
        text.append(f"No interval: {'; '.join(parts[None])}.")
    return " ".join([text[0], *(t[0].upper() + t[1:] for t in text[1:])])


def slope_caption(kappa: dict, k: int) -> str:
    """Where κ and the local slopes sit against k, said only as measured: the 'below k' reading only where it holds."""
    if kappa.get("estimate") is None:
        return ""
    slopes = [s for s in kappa.get("local_slopes", []) if s.get("slope") is not None]
    above = [s for s in slopes if s["slope"] > k]
    if kappa["estimate"] < k and not above:
        return (f"κ = {kappa['estimate']:.2f} and every local slope lie below the theory's k = {k}, "
                "its limit as d grows: at these d the slope has not reached it.")
    said = [f"κ = {kappa['estimate']:.2f} {'exceeds' if kappa['estimate'] > k else 'lies below'} k = {k}"]
    said += [f"the local slope {s['d_low']}→{s['d_high']} is {s['slope']:.2f}, above k" for s in above]
    return "; ".join(said) + "."


def why_below_k(rd: dict) -> list[str]:
    """The measured sentences that bear on κ < k: the shift in n/d^k, the width per d, κ by threshold."""
    return [s for s in (shift_sentence(rd), width_sentence(rd), kappa_threshold_sentence(rd)) if s]


def exponent_frame(entries: list[dict]) -> pd.DataFrame:
    """``exponents.exponent_frame`` with, per threshold, the d each κ rests on and why its interval is marked."""
    frame = exponents.exponent_frame(entries)
    for column in ("fit_ds", "marked"):
        frame[column] = [", ".join(map(str, e.get(column) or [])) if column == "fit_ds" else e.get(column)
                         for e in entries]
    for t in sorted({b["threshold"] for e in entries for b in e["by_threshold"]}):
        frame[f"marked@{t}"] = [next((b.get("marked") for b in e["by_threshold"] if b["threshold"] == t), None)
                                for e in entries]
    return frame


def per_d_frame(per_d: list[dict], k: int) -> pd.DataFrame:
    """The per-d readings as text, one row per d: n* and each ratio with its interval (†: marked), the width."""
    columns = {"n_star": "n*", **{f"n_star_over_{name}": ratio_name(name, k) for name in NORMALISATIONS},
               "width_95_50": "n*(0.95)/n*(0.5)"}
    rows = []
    for row in per_d:
        out = {"d": row["d"]}
        for field, label in columns.items():
            entry = row[field]
            digits = 0 if field == "n_star" else 2
            out[label] = "–" if entry["estimate"] is None else (
                f"{entry['estimate']:.{digits}f}" + ("" if entry["low"] is None else
                                                     f" [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]")
                + ("†" if entry["marked"] else ""))
        rows.append(out)
    return pd.DataFrame(rows, columns=["d", *columns.values()])


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table (the README's)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
