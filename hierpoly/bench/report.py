"""`python -m hierpoly bench`: how fast training is, against the plain formulation a researcher would write.

Measured in one process, alternating the contenders and taking medians (other work on
the machine then hits both alike):

- the machine's float32 matmul peak (a large square matmul, in every round), GFLOP/s;
- per case (d, n), joint training, m1 = d^2, m2 = 1000, ms per full-batch Adam step of
  * the reference: the straightforward plain-JAX formulation at its best — the whole loss
    jitted inside a `lax.scan` of optax Adam steps, x Vᵀ + s, cube, the dense (n, m2) ReLU
    matrix, no chunking (`engine.reference`, written independently of the engine's training code);
  * production: the engine's compiled chunk (`loop.chunk` of `train.joint_step`, stopping
    rules included) on the path `model.training_forward` picks (the first block by pair
    products, tensor.py, where `config.first_block_by_pairs` says so; `piecewise.relu_sum_fast`);
  * production on the direct first block (sample blocks of x Vᵀ + s), the path before;
  their ratios, and a breakdown of the production step into parts timed alone in the same
  rounds: first block (forward + backward, GFLOP/s against the peak), second block, the
  loss around them, the optimizer update, the chunk's host round trip per step, and the loop's
  own work per step (stopping rules, finiteness check, state selection: a chunk of steps that
  compute nothing); the rest is the step minus the parts, and `accounted_share` is the parts'
  sum over the step;
- the d = 40, n = 512000 step (production only: the dense reference would hold
  n·(m1 + m2) ≈ 1.3e9 floats per temporary);
- the two first-block paths side by side at small d (where `first_block_by_pairs` draws its line);
- a 3-seed cell trained by `train.run_seeds` (one program) against 3 sequential `run`s;
- the demo run (d=6, n=864, m2=200, 1000 steps) through ``python -m hierpoly run --json`` in
  fresh processes: cold (empty store, empty compilation cache) and warm (another seed, same shapes);
- `cpu_preset_projected_minutes`: the wall time of ``sweep --preset cpu --executor inline`` for
  the network runs (`project_cell` per cell, from the shipped runs' step counts: its seeds batched
  and one after another, both measured; the total under the plan the executor picks here), by d,
  and per cell beside the wall time the shipped runs recorded (the time to stop at the largest d);
- `paper_preset_projected_hours`: the paper preset's network runs on this machine, from each
  cell's measured ms/step and the steps the shipped runs took at the same n/d³.

Timings are after compilation unless said. A benchmark, not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

import jax

from hierpoly.bench.projections import project_cpu_preset, project_paper_preset
from hierpoly.bench.timing import matmul_peak_fn, measure_case, measure_paths, measure_seed_batching, plan
from hierpoly.config import RunConfig
from hierpoly.engine.data import device_info


def run_bench(quick: bool = False, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
              shipped_runs: dict[tuple[int, int], list[tuple[RunConfig, int, float]]] | None = None,
              paper_cells: list[tuple[RunConfig, int]] = ()) -> dict:
    """Every measurement of the module docstring, as the JSON-ready dict `bench --json` prints.

    ``shipped_runs``: per cpu-preset cell (d, n), each joint network run's config, the steps it took and its
    wall seconds (the CLI reads them from the shipped bundles); ``paper_cells``: the paper preset's cells,
    each as its seed-0 network config and its seeds. Both projected unless ``quick``.
    """
    pl = plan(quick, jax.default_backend())
    peak_fn = matmul_peak_fn(1024 if quick else 2048)
    cases = [measure_case(d, n, pl, peak_fn, log) for d, n in pl.cases]
    cases += [measure_case(d, n, pl, peak_fn, log, reference=False, rounds=3, steps_per_call=1) for d, n in pl.large_cases]
    peak = statistics.median(c["matmul_peak_gflops"] for c in cases)
    log(f"matmul peak: {peak:.1f} GFLOP/s")
    projection = None if quick or not shipped_runs else project_cpu_preset(shipped_runs, log)
    paper = None if quick or not shipped_runs or not paper_cells else project_paper_preset(paper_cells, shipped_runs, log)
    return {
        "reference": "plain JAX: whole loss jitted in a lax.scan of optax Adam steps, x V^T + s, cube, "
                     "dense (n, m2) ReLU, no chunking (einsums)",
        "matmul_peak_gflops": peak,
        "cases": cases,
        "first_block_paths": measure_paths(pl, log),
        "seed_batching": measure_seed_batching(pl, log),
        "cpu_preset_cells": [] if projection is None else projection["cells"],
        "cpu_preset_projected_minutes": None if projection is None else projection["minutes"],
        "cpu_preset_projected_minutes_by_plan": None if projection is None else projection["minutes_by_plan"],
        "cpu_preset_projected_minutes_by_d": None if projection is None else projection["minutes_by_d"],
        "paper_preset_cells": [] if paper is None else paper["cells"],
        "paper_preset_projected_hours": None if paper is None else paper["hours"],
        "paper_preset_projected_hours_by_d": None if paper is None else paper["hours_by_d"],
        "device": device_info(),
        "quick": quick,
    }


def format_report(out: dict) -> str:
    """The human-readable table of `bench` without --json."""
    lines = [f"matmul peak {out['matmul_peak_gflops']:.1f} GFLOP/s on {out['device']['device_kind']}",
             f"reference = {out['reference']}"]
    lines.append(f"{'d':>4} {'n':>8} {'path':>6} {'reference ms':>13} {'ms/step':>9} {'speedup':>8} {'1st share':>9}"
                 f" {'1st of peak':>11} {'accounted':>9}")
    for c in out["cases"]:
        b = c["breakdown"]
        ref = "-" if c["ms_per_step_reference"] is None else f"{c['ms_per_step_reference']:.1f}"
        speedup = "-" if c["speedup"] is None else f"{c['speedup']:.1f}"
        lines.append(
            f"{c['d']:>4} {c['n']:>8} {c['first_block']:>6} {ref:>13} {c['ms_per_step']:>9.1f} {speedup:>8}"
            f" {b['first_block_share']:>9.0%} {b['first_block_peak_fraction']:>11.0%} {b['accounted_share']:>9.0%}"
        )
    for p in out["first_block_paths"]:
        lines.append(f"first block d={p['d']} n={p['n']}: pairs {p['ms_per_step_pairs']:.2f} ms/step, "
                     f"direct {p['ms_per_step_direct']:.2f} ({p['speedup']:.2f}×; rule picks "
                     f"{'pairs' if p['rule_picks_pairs'] else 'direct'})")
    sb, demo = out["seed_batching"], out.get("demo_run")
    lines.append(
        f"3 seeds (d={sb['d']}, n={sb['n']}, {sb['steps']} steps): batched {sb['seconds_batched']:.2f} s, "
        f"sequential {sb['seconds_sequential']:.2f} s, speedup {sb['speedup']:.2f}"
    )
    if demo:
        lines.append(f"demo run ({demo['args']}): cold {demo['seconds_cold']:.1f} s, warm {demo['seconds_warm']:.1f} s; "
                     f"first live point after {demo['first_point_cold']:.1f} s cold, {demo['first_point_warm']:.1f} s warm")
    if out["cpu_preset_projected_minutes"] is not None:
        plans = out["cpu_preset_projected_minutes_by_plan"]
        lines.append(f"cpu preset, network runs, inline: {out['cpu_preset_projected_minutes']:.1f} min projected "
                     f"(seeds batched: {plans['batched']:.1f} min; one after another: {plans['sequential']:.1f} min)")
        lines.append("  by d: " + ", ".join(f"d = {d}: {m:.1f} min" for d, m in out["cpu_preset_projected_minutes_by_d"].items()))
        for c in (c for c in out["cpu_preset_cells"] if c["d"] == max(out["cpu_preset_projected_minutes_by_d"])):
            lines.append(f"  d = {c['d']}, n = {c['n']}: {c['projected_seconds'] / 60:.1f} min projected for {c['seeds']} "
                         f"runs of {min(c['steps'])}–{max(c['steps'])} steps; stored runs took "
                         f"{sum(c['seconds_stored']) / 60:.1f} min")
    if out.get("paper_preset_projected_hours") is not None:
        lines.append(f"paper preset, network runs on this machine: {out['paper_preset_projected_hours']:.1f} h projected ("
                     + ", ".join(f"d = {d}: {h:.1f} h" for d, h in out["paper_preset_projected_hours_by_d"].items()) + ")")
    return "\n".join(lines)

