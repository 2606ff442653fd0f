"""Convergence made visible: each cell's share of seeds whose stopping rule fired; training on past the stop."""
import dataclasses
import math

import pandas as pd
import pytest

from hierpoly.results import bundles
from hierpoly.results.store import Store
from hierpoly.study import cell_stats, figure2, presets, specs, sweep

# how the shipped cpu bundle's network runs stopped (116 runs: 3 seeds, 5 in the crossing cells)
SHIPPED_STOPS = {"feature settled": 115, "plateau": 1}


def test_converged_fraction_counts_the_rule_not_the_cap():
    runs = pd.DataFrame({
        "arch": ["three_layer"] * 4 + ["kernel"], "d": [4] * 5, "n": [32, 32, 32, 64, 32], "k": [3] * 5,
        "seed": [0, 1, 2, 0, 0], "test_loss": [0.1] * 5, "feature_corr": [0.5] * 5,
        "stopped_by": ["plateau", "step cap", "plateau", "step cap", None],
    })
    cells = cell_stats.aggregate(runs).set_index(["arch", "n"])
    assert cells.loc[("three_layer", 32), "converged_fraction"] == 2 / 3
    assert cells.loc[("three_layer", 64), "converged_fraction"] == 0.0
    assert math.isnan(cells.loc[("kernel", 32), "converged_fraction"])  # no gradient steps: no rule to fire


def test_the_shipped_cpu_runs_say_how_they_stopped(tmp_path):
    store = Store(tmp_path / "store")
    bundles.import_bundle(store, (bundles.PRECOMPUTED / "cpu.zip").read_bytes())
    report, (grid,) = figure2.figure2_json(presets.preset("cpu"), store)
    network = grid.runs[grid.runs["arch"] == "three_layer"]
    assert network["stopped_by"].value_counts().to_dict() == SHIPPED_STOPS
    assert network["converged"].all() and (network["steps_run"] < network["steps"]).all()
    assert all(cell["converged_fraction"] == 1.0 for cell in report["cells"])
    kernel = grid.runs[grid.runs["arch"] == "kernel"]
    assert (kernel["stopped_by"] == "closed form").all()
    # the two-layer baseline stops where its holdout says; against predicting 0 on the same evaluation points
    # (mean h², which cancels their heavy-tail noise) it gains little, and more than 0.01 only at the largest n
    two_layer = grid.runs[grid.runs["arch"] == "two_layer"]
    assert len(two_layer) == 28 and (two_layer["stopped_by"] == "holdout").all() and two_layer["converged"].all()
    gain = two_layer["mean_h2"] - two_layer["test_loss"]
    assert gain.between(-0.006, 0.062).all(), gain.describe()
    learned = {(int(r.d), int(r.n)) for r in two_layer[gain > 0.01].itertuples()}
    assert learned == {(12, 13824), (16, 16384), (16, 32768), (20, 32000), (20, 64000)}


@pytest.mark.slow
def test_check_trains_each_crossing_run_on_and_resumes(tmp_path):
    from hierpoly.study import convergence

    spec = specs.custom((4,), multiples=(0.5, 2.0), seeds=2, baselines=False, steps=200, m2=50, n_test=256, n_eval=4096)
    store = Store(tmp_path / "store")
    sweep.run_sweep(spec, "inline", store)
    with pytest.raises(convergence.CheckError, match="names no crossing cells"):
        convergence.run_check(spec, store)
    notes = []
    rows = convergence.run_check(spec, store, multiples=(0.5,), on_progress=lambda i, total, note: notes.append(note))
    assert list(rows[["d", "n", "seed"]].itertuples(index=False, name=None)) == [(4, 32, 0), (4, 32, 1)]
    assert (rows["stopped_by"] == "step cap").all() and (rows["steps_2x"] == 400).all()
    for row in rows.itertuples(index=False):  # the longer run is the same run with the cap doubled
        cfg = spec.config(4, 32, seed=row.seed)
        longer = store.get(convergence.continued(cfg, 200).key())
        assert longer.config == dataclasses.replace(cfg, steps=400, feature_tol=0.0, lr_drops=cfg.lr_drops + 1)
        assert row.delta_corr == pytest.approx(longer.metrics["feature_corr"] - store.get(cfg.key()).metrics["feature_corr"])
    assert notes[0].startswith("d=4 n=32 seed 0: 200 → 400 steps") and notes[-1] == "done"
    size = len(store)
    again = convergence.run_check(spec, store, multiples=(0.5,))  # stored: nothing trains again
    assert len(store) == size and again.equals(rows)
    cells = convergence.by_cell(rows)
    assert cells.loc[0, "seeds"] == 2 and cells.loc[0, "delta_corr_mean"] == pytest.approx(rows["delta_corr"].mean())
    assert cells.loc[0, "converged_fraction"] == 0.0


@pytest.mark.parametrize("argv,message", [
    (["--preset", "exponents"], "is a family of grids"), (["--preset", "nope"], "unknown preset"),
])
def test_check_convergence_refuses_in_one_line(argv, message, capsys):
    from hierpoly import cli

    assert cli.main(["check-convergence", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
