"""Figure 2 of a grid from the store: the table, κ and coverage the CLI's ``figure2`` prints and the page shows.

Importing this module does not import JAX.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hierpoly.jsonvalue import jsonable
from hierpoly.study import analysis, readings
from hierpoly.study.specs import SweepFamily, SweepSpec, coverage_of_runs, grids, stored_runs
from hierpoly.targets import canonical_link


@dataclass(frozen=True)
class Figure2Report:
    """Figure 2 of one grid from the store: what the CLI's ``figure2`` prints and the page shows."""

    spec: SweepSpec
    threshold: float
    runs: pd.DataFrame  # the grid's stored runs, one row per run
    cells: pd.DataFrame  # analysis.aggregate: one row per (arch, d, n)
    table: pd.DataFrame  # analysis.figure2_cells: one row per (d, n), baselines beside the network
    kappa: dict  # analysis.kappas: κ at `threshold`, by_threshold, collapse
    exponents: list[dict]  # analysis.exponent_table: this grid's target, with its κ (empty when nothing stored)
    coverage: pd.DataFrame  # one row per (arch, d, n): seeds stored and wanted
    readings: dict | None = None  # readings.grid_readings: n* per d beside d^k and the counts, their slopes

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
            "per_d": self.readings["per_d"] if self.readings else [],
            "readings": {name: value for name, value in (self.readings or {}).items() if name != "per_d"} or None,
        }


_TARGET_FIELDS = ("k", "q", "link", "sigma1", "mode", "arch", "kernel_kq", "ds", "first_stage_signal")


def figure2_report(spec: SweepSpec, store, threshold: float = analysis.THRESHOLD,
                   summaries: pd.DataFrame | None = None, statistic: str = analysis.STATISTIC) -> Figure2Report:
    """The table, κ (every threshold, the collapse) and coverage of one grid from its stored runs.

    ``statistic``: the seed statistic κ is read from, ``median`` (the default) or ``mean``.
    """
    # a std: link is one target with a raw link per d: label the runs with the grid's link
    runs = stored_runs(spec, store, summaries)
    runs = runs.assign(link=canonical_link(spec.link)) if len(runs) else runs
    cells = analysis.aggregate(runs, threshold=threshold)
    entries = analysis.exponent_table(runs, threshold=threshold, statistic=statistic)
    criterion = analysis.criterion_for(spec.k, spec.link, spec.sigma1)
    kappa = entries[0] if entries else analysis.kappas(runs, threshold=threshold, criterion=criterion,
                                                        statistic=statistic)
    found = readings.grid_readings(runs, spec.k, criterion, statistic, threshold) if len(runs) else None
    kappa = readings.marked_kappa({name: value for name, value in kappa.items() if name not in _TARGET_FIELDS}, found)
    entries = [{**(entries[0] if entries else {**spec.target, "arch": "three_layer", "kernel_kq": spec.k * spec.q,
                                               "first_stage_signal": analysis.first_stage_signal(spec.link),
                                               "ds": list(spec.ds)}), **kappa}]  # no run: the grid, with its reason
    entries = [{**entry, "diagnosis": analysis.diagnosis(entry, cells, statistic)} for entry in entries]
    return Figure2Report(spec, threshold, runs, cells, analysis.figure2_cells(cells), kappa, entries,
                         coverage_of_runs(spec, runs), found)


def figure2_json(spec: SweepSpec | SweepFamily, store, threshold: float = analysis.THRESHOLD,
                 statistic: str = analysis.STATISTIC) -> tuple[dict, list[Figure2Report]]:
    """``figure2 --json`` of a grid or a family, and each grid's report (the store is read once).

    One grid: its cells, ``kappa``, ``exponents`` (one entry) and ``predictions`` (``readings.predictions``:
    n*(32) at 0.9 from the seed median of d = 8 … 24, fixed whatever the options, with the measured n*(32)
    once stored; None for a grid without those d). A family (the exponents
    preset): ``exponents``, one entry per grid (k, q, link, estimate or reason, low, high, …),
    and ``grids``, each grid's own report.
    """
    summaries = store.summaries()
    reports = [figure2_report(grid, store, threshold, summaries, statistic) for grid in grids(spec)]
    head = {"preset": spec.name, "threshold": threshold, "statistic": statistic, "seeds_wanted": spec.seeds}
    exponents = [entry for rep in reports for entry in rep.exponents]
    if isinstance(spec, SweepFamily):
        return {**head, "exponents": exponents, "grids": [rep.to_json() for rep in reports]}, reports
    grid, rep = reports[0].to_json(), reports[0]
    predictions = readings.predictions(rep.runs, spec.k, rep.kappa["criterion"]) if len(rep.runs) else None
    return {**head, **{name: grid[name] for name in ("k", "q", "link", "cells", "kappa", "missing", "per_d", "readings")},
            "exponents": exponents, "predictions": predictions}, reports
