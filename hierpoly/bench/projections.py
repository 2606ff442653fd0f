"""What the presets would take on this machine: the cpu preset's cells measured and projected from the
steps the shipped runs took, and the paper preset's network runs from each cell's measured ms/step."""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import jax

from hierpoly.bench.timing import median_seconds, production_chunk, stacked
from hierpoly.config import RunConfig
from hierpoly.engine import loop, model, train
from hierpoly.engine.data import keys, make_data

TIMED_SECONDS = 0.5  # wall time of one timed chunk in the projection


PROBE_STEPS = 200  # steps of the measured short run of each cell (4-step chunks: 50 chunks, as a real run's minimum)


def chunk_count(steps: int, cap: int, ms_per_step: float) -> int:
    """Chunks a run of `steps` takes at `ms_per_step`, sized by the loop's own rule (`loop.ChunkSizes`)."""
    sizes, done, chunks = loop.ChunkSizes(cap), 0, 0
    while done < steps:
        size = min(sizes.next(), steps - done)
        sizes.observe(size, size * ms_per_step / 1e3)
        done, chunks = done + size, chunks + 1
    return chunks


def project_cell(cfgs: list[RunConfig], steps: list[int], log: Callable[[str], None]) -> dict:
    """Wall seconds of one cpu-preset cell as ``sweep --executor inline`` trains it, under both plans.

    Batched (`train.run_seeds`, one program): a cold run of PROBE_STEPS steps (compilation, data, pair
    products, every seed's 2^20-point evaluation, 50 chunks with their monitor scores), then the slowest
    seed's remaining steps (the batch steps until its last seed stops) and their extra chunks.
    Sequential (`train.run` per seed, each stopping on its own): the same cold probe for one seed, a warm
    probe for each further seed, then each seed's own remaining steps and chunks.
    Measured per plan: the cold and warm probes, the chunk's ms/step and one chunk's host cost (round trip
    + scores). ``plan`` is what `train.seeds_batch_pays` picks here, and ``projected_seconds`` its time.
    """
    forward, cfg, seeds = model.training_forward(cfgs[0]), cfgs[0], len(cfgs)
    out = {"d": cfg.d, "n": cfg.n, "seeds": seeds, "steps": list(steps), "steps_slowest": max(steps),
           "first_block": "pairs" if forward.by_pairs else "direct"}
    for plan, width in (("batched", seeds), ("sequential", 1)):
        m = _measure_plan(cfgs[:width], forward)

        def remaining(n_steps: int, m=m) -> float:
            extra_chunks = chunk_count(n_steps, cfg.steps, m["ms_per_step"]) - chunk_count(PROBE_STEPS, PROBE_STEPS, m["ms_per_step"])
            return (n_steps - PROBE_STEPS) * m["ms_per_step"] / 1e3 + max(extra_chunks, 0) * m["chunk_overhead_ms"] / 1e3

        cold, warm = m["seconds_probe_cold"], m["seconds_probe_warm"]
        seconds = cold + remaining(max(steps)) if plan == "batched" else cold + (seeds - 1) * warm + sum(map(remaining, steps))
        out[plan] = {**m, "per_run_seconds": (warm - PROBE_STEPS * m["ms_per_step"] / 1e3) / width,
                     "projected_seconds": seconds}
    out["plan"] = "batched" if train.seeds_batch_pays(cfgs) else "sequential"
    out["projected_seconds"] = out[out["plan"]]["projected_seconds"]
    b, q = out["batched"], out["sequential"]
    log(f"cpu preset d={cfg.d} n={cfg.n} ({seeds} seeds, {min(steps)}–{max(steps)} steps): batched "
        f"{b['ms_per_step']:.2f} ms/step, {b['projected_seconds']:.0f} s; one by one {q['ms_per_step']:.2f} ms/step, "
        f"{q['projected_seconds']:.0f} s; {out['plan']}")
    return out


def _measure_plan(cfgs: list[RunConfig], forward: model.Forward) -> dict:
    """A plan's cold and warm probe runs, its chunk's ms/step and one chunk's host cost (round trip + scores)."""
    probe = [dataclasses.replace(c, steps=PROBE_STEPS, tol=0.0, feature_tol=0.0) for c in cfgs]
    cold, warm = _probe_seconds(probe), _probe_seconds(probe)
    empty = production_chunk(cfgs[0], forward, 0, seeds=len(cfgs))
    chunk_ms = median_seconds(lambda: jax.device_get(empty()[1]), 3) * 1e3 + _score_ms(cfgs[0], forward, len(cfgs))
    return {"ms_per_step": _batched_ms_per_step(cfgs[0], forward, len(cfgs)), "chunk_overhead_ms": chunk_ms,
            "seconds_probe_cold": cold, "seconds_probe_warm": warm, "compile_seconds": cold - warm}


def _probe_seconds(probe: list[RunConfig]) -> float:
    """Wall seconds of the probe runs as the plan trains them: one program for several, `run` for one."""
    t0 = time.perf_counter()
    train.run_seeds(probe) if len(probe) > 1 else train.run(probe[0])
    return time.perf_counter() - t0


def _batched_ms_per_step(cfg: RunConfig, forward: model.Forward, seeds: int) -> float:
    """ms per step of the batched chunk, timed over chunks of about TIMED_SECONDS (a few steps alone
    would time the scheduler of a busy machine more than the step)."""
    guess = median_seconds(production_chunk(cfg, forward, 8, seeds), 3) / 8
    steps = max(8, min(4096, int(TIMED_SECONDS / max(guess, 1e-6))))
    chunk = production_chunk(cfg, forward, steps, seeds)  # the chunk length is an argument: nothing recompiles
    return median_seconds(chunk, 3) / steps * 1e3


def _score_ms(cfg: RunConfig, forward: model.Forward, seeds: int) -> float:
    """One chunk's monitor scores for `seeds` batched seeds on cfg's n_test points."""
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    task = loop.Task(train.joint_step, train.score_network, forward, train.probe_network)
    state = stacked([loop.adam_state(params)] * seeds)
    monitor = stacked([(data.x_test, data.y_test, data.p_test)] * seeds)
    loop.scores(task, state, monitor, batched=True)
    return median_seconds(lambda: loop.scores(task, state, monitor, batched=True), 3) * 1e3


def project_cpu_preset(shipped: dict[tuple[int, int], list[tuple[RunConfig, int, float]]], log: Callable[[str], None]) -> dict:
    """`project_cell` over every network cell of the shipped cpu preset, and their sums in minutes
    (``minutes``: each cell under the plan the executor picks; the two plans' sums beside it; ``minutes_by_d``).
    Each cell also carries the shipped runs' own wall seconds (``seconds_stored``, as each run recorded
    it, on the machine and under the load it ran with)."""
    cells = []
    for _, runs in sorted(shipped.items()):
        cell = project_cell([c for c, _, _ in runs], [s for _, s, _ in runs], log)
        cells.append({**cell, "seconds_stored": [t for _, _, t in runs]})
    total = {plan: sum(c[plan]["projected_seconds"] for c in cells) / 60 for plan in ("batched", "sequential")}
    by_d = {d: sum(c["projected_seconds"] for c in cells if c["d"] == d) / 60 for d in sorted({c["d"] for c in cells})}
    return {"cells": cells, "runs": sum(c["seeds"] for c in cells),
            "minutes": sum(c["projected_seconds"] for c in cells) / 60, "minutes_by_plan": total, "minutes_by_d": by_d}


def steps_by_multiple(shipped: dict[tuple[int, int], list[tuple[RunConfig, int, float]]]) -> dict[float, float]:
    """Per multiple n/d³ of the shipped cpu runs: the median steps a run took there, at the largest d that has it."""
    out: dict[float, tuple[int, float]] = {}
    for (d, n), runs in shipped.items():
        multiple = n / d**3
        if multiple not in out or d > out[multiple][0]:
            out[multiple] = (d, statistics.median(s for _, s, _ in runs))
    return {m: steps for m, (_, steps) in sorted(out.items())}


def project_paper_preset(cells: list[tuple[RunConfig, int]], shipped: dict[tuple[int, int], list[tuple[RunConfig, int, float]]],
                         log: Callable[[str], None]) -> dict:
    """The network runs of ``sweep --preset paper`` on this machine, one after another: per cell (its seed-0
    config and its seeds), the seeds × the steps a run takes at its multiple n/d³ (`steps_by_multiple`:
    measured at smaller d, an extrapolation) × the single run's measured ms/step. Compilation, data and
    evaluation are left out: seconds per run, against the hours of steps at d ≥ 32."""
    steps, out = steps_by_multiple(shipped), []
    for cfg, runs in cells:
        ms = _batched_ms_per_step(cfg, model.training_forward(cfg), 1)
        per_run = steps[cfg.n / cfg.d**3]
        hours = runs * per_run * ms / 3.6e6
        out.append({"d": cfg.d, "n": cfg.n, "seeds": runs, "steps_per_run": per_run, "ms_per_step": ms, "hours": hours})
        log(f"paper preset d={cfg.d} n={cfg.n}: {ms:.1f} ms/step, {runs} × {per_run:.0f} steps: {hours:.2f} h")
    return {"cells": out, "hours": sum(c["hours"] for c in out),
            "hours_by_d": {d: sum(c["hours"] for c in out if c["d"] == d) for d in sorted({c["d"] for c in out})}}


def shipped_runs() -> dict:
    """Per cell (d, n) of the cpu preset, each shipped joint network run's config, steps and share of the
    wall seconds (a batched run's: the batch's over its seeds, so a cell's shares sum to its wall time)."""
    from hierpoly.results import bundles
    from hierpoly.study import presets

    wanted = {cfg.key() for cfg in presets.cpu().configs() if cfg.arch == "three_layer"}
    cells: dict = {}
    for path in sorted(bundles.PRECOMPUTED.glob("*.zip")):
        for key, result in bundles.read_bundle(path.read_bytes()).items():
            if key in wanted:
                batch = int(result.meta.get("extra", {}).get("batched_seeds", 1))  # a batch records its wall time per seed
                cells.setdefault((result.config.d, result.config.n), {})[key] = (
                    result.config, int(result.meta["steps"]), float(result.meta["seconds"]) / batch)
    return {cell: list(runs.values()) for cell, runs in cells.items()}
