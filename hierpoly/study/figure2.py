"""Figure 2 of a grid from the store: the table, κ and coverage the CLI's ``figure2`` prints and the page shows,
and that table and the exponent table as text.

Importing this module does not import JAX.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hierpoly.jsonvalue import jsonable
from hierpoly.study import cell_stats, exponents, kappa_fit
from hierpoly.study.specs import SweepFamily, SweepSpec, coverage_of_runs, grids, stored_runs
from hierpoly.targets import canonical_link


@dataclass(frozen=True)
class Figure2Report:
    """Figure 2 of one grid from the store: what the CLI's ``figure2`` prints and the page shows."""

    spec: SweepSpec
    threshold: float
    runs: pd.DataFrame  # the grid's stored runs, one row per run
    cells: pd.DataFrame  # cell_stats.aggregate: one row per (arch, d, n)
    table: pd.DataFrame  # cell_stats.figure2_cells: one row per (d, n), baselines beside the network
    kappa: dict  # kappa_fit.kappas: κ at `threshold`, by_threshold, collapse
    exponents: list[dict]  # exponents.exponent_table: this grid's target, with its κ (empty when nothing stored)
    coverage: pd.DataFrame  # one row per (arch, d, n): seeds stored and wanted

    @property
    def short(self) -> pd.DataFrame:
        """The (arch, d, n) cells with fewer seeds stored than wanted."""
        return self.coverage[self.coverage["stored"] < self.coverage["wanted"]]

    def to_json(self) -> dict:
        """Plain JSON (non-finite numbers become None): one grid of the CLI's ``figure2 --json``."""
        return {
            "name": self.spec.name, **self.spec.target, "seeds_wanted": self.spec.seeds,
            "cells": [jsonable(row) for row in self.table.to_dict("records")],
            "kappa": self.kappa,
            "missing": [jsonable(row) for row in self.short.to_dict("records")],
        }


_TARGET_FIELDS = ("k", "q", "link", "sigma1", "mode", "arch", "kernel_kq", "ds", "first_stage_signal")


def figure2_report(spec: SweepSpec, store, threshold: float = cell_stats.THRESHOLD,
                   summaries: pd.DataFrame | None = None, statistic: str = cell_stats.STATISTIC) -> Figure2Report:
    """The table, κ (every threshold, the collapse) and coverage of one grid from its stored runs.

    ``statistic``: the seed statistic κ is read from, ``median`` (the default) or ``mean``.
    """
    # a std: link is one target with a raw link per d: label the runs with the grid's link
    runs = stored_runs(spec, store, summaries)
    runs = runs.assign(link=canonical_link(spec.link)) if len(runs) else runs
    cells = cell_stats.aggregate(runs, threshold=threshold)
    entries = exponents.exponent_table(runs, threshold=threshold, statistic=statistic)
    criterion = cell_stats.criterion_for(spec.k, spec.link, spec.sigma1)
    kappa = entries[0] if entries else kappa_fit.kappas(runs, threshold=threshold, criterion=criterion,
                                                        statistic=statistic)
    kappa = {name: value for name, value in kappa.items() if name not in _TARGET_FIELDS}
    if not entries:  # no stored run: the family's table still lists the grid, with its reason
        entries = [{**spec.target, "arch": "three_layer", "kernel_kq": spec.k * spec.q,
                    "first_stage_signal": cell_stats.first_stage_signal(spec.link), "ds": list(spec.ds), **kappa}]
    entries = [{**entry, "diagnosis": exponents.diagnosis(entry, cells, statistic)} for entry in entries]
    return Figure2Report(spec, threshold, runs, cells, cell_stats.figure2_cells(cells), kappa, entries,
                         coverage_of_runs(spec, runs))


def figure2_json(spec: SweepSpec | SweepFamily, store, threshold: float = cell_stats.THRESHOLD,
                 statistic: str = cell_stats.STATISTIC) -> tuple[dict, list[Figure2Report]]:
    """``figure2 --json`` of a grid or a family, and each grid's report (the store is read once).

    One grid: its cells, ``kappa`` and ``exponents`` (one entry). A family (the exponents
    preset): ``exponents``, one entry per grid (k, q, link, estimate or reason, low, high, …),
    and ``grids``, each grid's own report.
    """
    summaries = store.summaries()
    reports = [figure2_report(grid, store, threshold, summaries, statistic) for grid in grids(spec)]
    head = {"preset": spec.name, "threshold": threshold, "statistic": statistic, "seeds_wanted": spec.seeds}
    entries = [entry for rep in reports for entry in rep.exponents]
    if isinstance(spec, SweepFamily):
        return {**head, "exponents": entries, "grids": [rep.to_json() for rep in reports]}, reports
    grid = reports[0].to_json()
    return {**head, **{name: grid[name] for name in ("k", "q", "link", "cells", "kappa", "missing")},
            "exponents": entries}, reports


# ------------------------------------------------------------ as text (the CLI's figure2)
def _pm(cell: dict, name: str) -> str:
    mean, std = cell.get(f"{name}_mean"), cell.get(f"{name}_std")
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def _num(cell: dict, name: str) -> str:
    return "-" if cell.get(name) is None else f"{cell[name]:.4f}"


def _spread(cell: dict, name: str) -> str:
    median, low, high = (cell.get(f"{name}_{s}") for s in ("median", "min", "max"))
    return "-" if median is None else f"{median:.3f} [{low:.3f}, {high:.3f}]"


def grid_text(report: dict, threshold: float) -> str:
    """One grid's Figure 2 table and κ, as text (``figure2_json``'s report, with the grid's name and seeds_wanted)."""
    lines = []
    lines.append(f"Figure 2, {report['name']} grid (k = {report['k']}, link {report['link']}): "
          f"median [min, max] over seeds, the mean ± std beside it, and the share of seeds past {threshold}")
    lines.append(f"{'d':>3} {'n':>7} {'n/d^k':>7} {'seeds':>5} {'corr(g, p) median':>24} {'corr mean':>17} {'past':>5} "
          f"{'test loss median':>24} {'kernel loss':>11} {'2-layer loss':>12}")
    for c in report["cells"]:
        past = "-" if c.get("success_fraction") is None else f"{c['success_fraction']:.0%}"
        lines.append(f"{c['d']:>3} {c['n']:>7} {c['n_over_dk']:>7.3g} {c['seeds']:>5} {_spread(c, 'corr'):>24} "
              f"{_pm(c, 'feature_corr'):>17} {past:>5} {_spread(c, 'test_loss'):>24} "
              f"{_num(c, 'kernel_test_loss_mean'):>11} {_num(c, 'two_layer_test_loss_mean'):>12}")
    kappa = report["kappa"]
    what = "corr" if kappa["criterion"] == "feature_corr" else "1 − test loss"
    if kappa["estimate"] is None:
        lines.append(f"κ: not estimated: {kappa['reason']}")
    else:
        lines.append(f"κ = {kappa_text(kappa)} (n* where the seed {kappa['statistic']} {what} crosses {threshold}; "
              f"theory: κ ≈ {report['k']})")
        lines.append("   " + "; ".join(f"at {b['threshold']}: {kappa_text(b)}" for b in kappa["by_threshold"])
              + f"; collapse fit: {kappa_text(kappa['collapse'])}  (95% intervals: seed bootstrap, seed noise only)")
        if kappa["local_slopes"]:
            lines.append("   local slope between successive d: " + "; ".join(
                f"{s['d_low']}→{s['d_high']}: {kappa_text({'estimate': s['slope'], **s})}" for s in kappa["local_slopes"]))
            trend = kappa_fit.slope_trend(kappa["local_slopes"], report["k"])
            if trend:
                lines.append("   " + trend)
        other = kappa["sensitivity"]
        lines.append(f"   with the seed {other['statistic']} instead: " + "; ".join(
            f"at {b['threshold']}: {kappa_text(b)}" for b in other["by_threshold"]))
    if report["missing"]:
        lines.append(f"{len(report['missing'])} (cell, arch) pairs have fewer seeds than {report['seeds_wanted']}: "
              "run python -m hierpoly sweep with the same grid")
    return "\n".join(lines)


def kappa_text(kappa: dict) -> str:
    if kappa["estimate"] is None:
        return "-"
    split = kappa.get("split")
    if split:  # two scenarios, not one interval
        return (f"{kappa['estimate']:.2f} (bootstrap split by seed {split['seed']}: "
                f"{split['without']['low']:.2f}–{split['without']['high']:.2f} without it, "
                f"{split['with']['low']:.2f}–{split['with']['high']:.2f} with it)")
    return f"{kappa['estimate']:.2f}" + (f" [{kappa['low']:.2f}, {kappa['high']:.2f}]" if kappa["low"] is not None else "")


def exponents_text(report: dict) -> str:
    """The exponent table, as text: κ per (k, q) beside the network's k and the kernel's kq."""
    lines = []
    lines.append(f"Exponent table ({report['preset']}): n*(d) ∝ d^κ, 95% seed-bootstrap intervals (seed noise only)")
    lines.append(f"{'k':>2} {'q':>2} {'link':>10} {'d':>14} {'criterion':>12} {'κ @ 0.8':>18} {'κ @ 0.9':>18} {'κ @ 0.95':>18} "
          f"{'collapse':>18} {'kq':>3}  E[g'(z)] ≠ 0")
    for e in report["exponents"]:
        at = {b["threshold"]: kappa_text(b) for b in e["by_threshold"]}
        lines.append(f"{e['k']:>2} {e['q']:>2} {e['link']:>10} {','.join(map(str, e['ds'])):>14} {e['criterion']:>12} "
              f"{at.get(0.8, '-'):>18} {at.get(0.9, '-'):>18} {at.get(0.95, '-'):>18} {kappa_text(e['collapse']):>18} "
              f"{e['kernel_kq']:>3}  {'yes' if e['first_stage_signal'] else 'no: even link, outside the theory'}")
    missing = sum(len(g["missing"]) for g in report["grids"])
    if missing:
        lines.append(f"{missing} (cell, arch) pairs have fewer seeds than wanted: run python -m hierpoly sweep --preset {report['preset']}")
    return "\n".join(lines)


