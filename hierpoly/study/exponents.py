"""The exponent table: κ per target (k, link, σ1, mode), and what the measurements say where a row
departs from the theory."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hierpoly.study.cell_stats import STATISTIC, THRESHOLD, cell_score, check_runs, criterion_for, first_stage_signal
from hierpoly.study.kappa_fit import N_BOOT, THRESHOLDS, kappas
from hierpoly.targets import parse_link


def exponent_table(runs: pd.DataFrame, threshold: float = THRESHOLD, thresholds: tuple[float, ...] = THRESHOLDS,
                   arch: str = "three_layer", n_boot: int = N_BOOT, seed: int = 0,
                   statistic: str = STATISTIC) -> list[dict]:
    """κ per target: one entry per (k, link, σ1, mode) of ``arch``'s runs; targets are never mixed in a fit.

    Returns:
        entries sorted by k then q, each the target (k, q, link, sigma1, mode, arch), ``kernel_kq``
        (k·q, the kernel's exponent), ``ds`` and ``kappas(...)`` with the criterion ``criterion_for`` picks.
    """
    check_runs(runs)
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
            score = cell_score(group, entry["criterion"], statistic)
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

