"""Convergence made visible: each cell's share of seeds whose stopping rule fired, from the shipped runs too."""
import math

import pandas as pd

from hierpoly.runs import analysis, bundles, sweeps
from hierpoly.runs.store import Store


def test_converged_fraction_counts_the_rule_not_the_cap():
    runs = pd.DataFrame({
        "arch": ["three_layer"] * 4 + ["kernel"], "d": [4] * 5, "n": [32, 32, 32, 64, 32], "k": [3] * 5,
        "seed": [0, 1, 2, 0, 0], "test_loss": [0.1] * 5, "feature_corr": [0.5] * 5,
        "stopped_by": ["plateau", "step cap", "plateau", "step cap", None],
    })
    cells = analysis.aggregate(runs).set_index(["arch", "n"])
    assert cells.loc[("three_layer", 32), "converged_fraction"] == 2 / 3
    assert cells.loc[("three_layer", 64), "converged_fraction"] == 0.0
    assert math.isnan(cells.loc[("kernel", 32), "converged_fraction"])  # no gradient steps: no rule to fire


def test_the_shipped_cpu_runs_say_how_they_stopped(tmp_path):
    store = Store(tmp_path / "store")
    bundles.import_bundle(store, (bundles.PRECOMPUTED / "cpu.zip").read_bytes())
    report, _ = sweeps.figure2_json(sweeps.preset("cpu"), store)
    fractions = [cell["converged_fraction"] for cell in report["cells"]]
    seeds = [cell["seeds"] for cell in report["cells"]]
    # 11 of the 84 network runs stopped on the plateau rule, the other 73 at the 4000-step cap
    assert round(sum(f * s for f, s in zip(fractions, seeds))) == 11 and sum(seeds) == 84
