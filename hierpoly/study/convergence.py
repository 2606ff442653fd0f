"""Does more training move Figure 2? Each stored network run, trained again past where it stopped.

A run that converged stopped on a rule before its cap, so doubling the cap changes nothing
about it by construction. The question that matters is whether training on would: here each
stored joint network run of the chosen cells is trained again with the cap at twice the
steps it took, the feature rule off and one more learning-rate drop allowed, so it follows
the stored run step for step up to where that one stopped, then keeps going (where the
plateau rule stopped it, it drops the rate once more instead). A capped run gets the
literal test: the same run with the cap doubled. The check runs are ordinary stored runs
(their own keys), so a check stopped half way resumes.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pandas as pd

from hierpoly.config import RunConfig
from hierpoly.jobs import runner
from hierpoly.study import specs

COLUMNS = ["d", "n", "seed", "stopped_by", "steps", "feature_corr", "test_loss", "steps_2x", "feature_corr_2x",
           "test_loss_2x", "delta_corr"]


class CheckError(ValueError):
    """A check that cannot run, with a one-line reason."""


def continued(cfg: RunConfig, steps_run: int) -> RunConfig:
    """The run trained on: cap at twice the steps it took, the feature rule off, one more rate drop allowed
    (where the plateau rule stopped it, it drops the rate once more instead), everything else equal."""
    return dataclasses.replace(cfg, steps=max(2 * int(steps_run), 1), feature_tol=0.0, lr_drops=min(cfg.lr_drops + 1, 10))


def checked_runs(spec: specs.SweepSpec, store, multiples=None, seeds=None) -> pd.DataFrame:
    """The stored joint network runs of the cells n = multiple · d^k (default: the spec's crossing cells)."""
    multiples = tuple(multiples or spec.crossing_multiples or ())
    if not multiples:
        raise CheckError(f"grid {spec.name!r} names no crossing cells: give the multiples of d^{spec.k} to check")
    runs = specs.stored_runs(spec, store)
    if runs.empty:
        return runs
    cells = {(d, specs.n_for(m, d, spec.k)) for d in spec.ds for m in multiples}
    keep = runs["arch"].eq("three_layer") & runs["mode"].eq("joint")
    keep &= pd.Series([(int(d), int(n)) in cells for d, n in zip(runs["d"], runs["n"])], index=runs.index)
    if seeds is not None:
        keep &= runs["seed"].isin(list(seeds))
    return runs[keep].sort_values(["d", "n", "seed"]).reset_index(drop=True)


def run_check(spec: specs.SweepSpec, store, multiples=None, seeds=None,
              on_progress: Callable[[int, int, str], None] | None = None) -> pd.DataFrame:
    """Train each checked run on (stored ones are reused) and return one row per run (COLUMNS)."""
    runs, rows = checked_runs(spec, store, multiples, seeds), []
    for i, run in enumerate(runs.itertuples(index=False)):
        cfg = store.get(run.key).config
        longer = continued(cfg, run.steps_run)
        if on_progress is not None:
            on_progress(i, len(runs), f"d={cfg.d} n={cfg.n} seed {cfg.seed}: {run.steps_run} → {longer.steps} steps")
        result = store.get(longer.key())
        if result is None:
            outcome = runner.execute(longer, results=store)  # a stopped check resumes the run it was in
            if outcome.result is None:
                raise CheckError(f"d={cfg.d} n={cfg.n} seed {cfg.seed}: the longer run ended {outcome.status}: {outcome.message}")
            runner.keep(store, outcome)
            result = outcome.result
        rows.append({
            "d": cfg.d, "n": cfg.n, "seed": cfg.seed, "stopped_by": run.stopped_by, "steps": int(run.steps_run),
            "feature_corr": run.feature_corr, "test_loss": run.test_loss, "steps_2x": int(result.meta["steps"]),
            "feature_corr_2x": result.metrics["feature_corr"], "test_loss_2x": result.metrics["test_loss"],
            "delta_corr": result.metrics["feature_corr"] - run.feature_corr,
        })
    if on_progress is not None:
        on_progress(len(runs), len(runs), "done")
    return pd.DataFrame(rows, columns=COLUMNS)


def by_cell(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell: seeds, the mean correlation change and its standard error over seeds (NaN for one seed)."""
    if rows.empty:
        return pd.DataFrame(columns=["d", "n", "seeds", "delta_corr_mean", "delta_corr_se", "converged_fraction"])
    out = rows.groupby(["d", "n"]).agg(
        seeds=("seed", "nunique"), delta_corr_mean=("delta_corr", "mean"), delta_corr_std=("delta_corr", "std"),
        converged_fraction=("stopped_by", lambda s: float(s.isin(runner.CONVERGED).mean())),
    ).reset_index()
    out["delta_corr_se"] = out["delta_corr_std"] / out["seeds"].map(math.sqrt)
    return out.drop(columns="delta_corr_std")
