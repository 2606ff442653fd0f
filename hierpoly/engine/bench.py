"""`python -m hierpoly bench`: how fast training is, against the plain formulation a researcher would write.

Measured in one process, alternating the contenders and taking medians (other work on
the machine then hits both alike):

- the machine's float32 matmul peak (a large square matmul, in every round), GFLOP/s;
- per case (d, n), joint training, m1 = d^2, m2 = 1000, ms per full-batch Adam step of
  * the reference: the straightforward plain-JAX formulation at its best — the whole loss
    jitted inside a `lax.scan` of optax Adam steps, x Vᵀ + s, cube, the dense (n, m2) ReLU
    matrix, no chunking (`reference_steps`, written here independently of the engine);
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

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from hierpoly.config import RunConfig, first_block_by_pairs
from hierpoly.engine import loop, model, tensor, train
from hierpoly.engine.data import device_info, keys, make_data
from hierpoly.engine.metrics import mse
from hierpoly.engine.piecewise import relu_sum_fast

CPU_CASES = [(16, 16384), (20, 64000)]
LARGE_CASES = [(40, 512000)]  # production only, fewer rounds
PATH_CASES = [(3, 1024), (4, 2048), (6, 4096), (8, 8192), (12, 6912)]  # pairs vs direct first block
QUICK_CASES = [(6, 2048)]
REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to measure: cases and repetitions."""

    cases: list[tuple[int, int]]
    large_cases: list[tuple[int, int]]
    path_cases: list[tuple[int, int]]
    steps_per_call: int  # steps in one timed compiled chunk
    rounds: int  # alternations of reference and production; medians over them
    seed_cfg: RunConfig  # the cell of the seed-batching measurement
    seed_rounds: int
    quick: bool


def plan(quick: bool, backend: str) -> Plan:
    """The full benchmark, or a seconds-long variant (`--quick`, for tests)."""
    if quick:
        cell = RunConfig(d=4, n=512, m2=100, steps=40, tol=0.0, n_test=64, n_eval=4096)
        return Plan(QUICK_CASES, [], [(4, 512)], 2, 2, cell, 1, True)
    cell = RunConfig(d=8, n=4096, steps=300, tol=0.0, n_test=1024)  # tol = 0: every seed runs all steps
    return Plan(CPU_CASES, LARGE_CASES, PATH_CASES, 5, 5, cell, 3, False)


# ------------------------------------------------------------------ reference
def reference_loss(params, x, y):
    """The plain formulation of L̂(θ): x Vᵀ + s, cube, dense (n, m2) ReLU matrix, skip connection.

    Products and sums are einsums: XLA's CPU backend runs their gradients as matmuls, where the
    broadcasting form (`g[:, None] * a`, `... @ c`) leaves row and column reductions; measured
    about 1.3× faster at d = 16, n = 16384, so this is the reference at its best.
    """
    m1, m2 = params["u"].shape[0], params["c"].shape[0]
    pre = jnp.einsum("nd,md->nm", x, params["V"]) + params["s"]
    g = jnp.einsum("nm,m->n", pre**3, params["u"]) / m1
    relu = jax.nn.relu(jnp.einsum("n,j->nj", g, params["a"]) + params["b"])
    h = g + jnp.einsum("nj,j->n", relu, params["c"]) / m2
    return jnp.mean((h - y) ** 2)


@partial(jax.jit, static_argnames=("n_steps",))
def reference_steps(params, opt_state, x, y, lr, *, n_steps: int):
    """n_steps of full-batch optax Adam on `reference_loss`, one `lax.scan`; the losses before each step."""
    tx = optax.adam(lr)

    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(reference_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return jax.lax.scan(step, (params, opt_state), None, length=n_steps)


# ------------------------------------------------------------------ timing
def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _throughput_seconds(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of `calls` calls dispatched back to back: dispatch overlaps the work, as in a step."""
    t0 = time.perf_counter()
    jax.block_until_ready([fn() for _ in range(calls)])
    return (time.perf_counter() - t0) / calls


def matmul_peak_fn(size: int) -> Callable[[], float]:
    """A compiled float32 (size × size) @ (size × size); each call returns its GFLOP/s (the practical peak)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    jax.block_until_ready(mm(a))
    return lambda: 2 * size**3 / _median_seconds(lambda: mm(a), 3) / 1e9


def _warm(call: Callable[[], object]) -> Callable[[], object]:
    jax.block_until_ready(call())
    return call


CHUNKS = ("reference", "production", "production_direct", "rules")  # timed per step of a chunk of steps_per_call
PARTS = ("first_block", "second_block", "loss", "optimizer")  # timed alone, per step


def first_block_flops(cfg: RunConfig, by_pairs: bool) -> float:
    """Flops of the first block's forward + backward: 2·2·n·P·D by pair products (tensor.py), else 6·n·d·m1."""
    D = cfg.d + 1
    return 4.0 * cfg.n * D * (D + 1) // 2 * D if by_pairs else 6.0 * cfg.n * cfg.d * cfg.m1


def _production_chunk(cfg: RunConfig, forward: model.Forward, n_steps: int, seeds: int = 1) -> Callable[[], object]:
    """A warmed-up production chunk of n_steps from θ(0) (seeds > 1: the batched program of `train.run_seeds`)."""
    if seeds > 1:
        cfgs = [dataclasses.replace(cfg, seed=s) for s in range(seeds)]
        data, params = [make_data(c) for c in cfgs], [model.init(keys(c.seed)["init"], c) for c in cfgs]
        state = _stacked([loop.adam_state(p) for p in params])
        batch = _stacked([(forward.encode(d.x_train), d.y_train) for d in data])
        args = (state, loop.start_clock(seeds), batch, {"lr": jnp.float32(cfg.lr)}, loop.rules(2**30))
        return _warm(lambda: loop.chunk_seeds(*args, jnp.int32(n_steps), step=train.joint_step, forward=forward))
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    args = (loop.adam_state(params), loop.start_clock(), (forward.encode(data.x_train), data.y_train),
            {"lr": jnp.float32(cfg.lr)}, loop.rules(2**30))
    return _warm(lambda: loop.chunk(*args, jnp.int32(n_steps), step=train.joint_step, forward=forward))


def _unchanged_step(state, batch, hyper, forward: model.Forward):
    """A step that computes nothing: a chunk of it times the loop's own work per step (the stopping rules, the
    finiteness check, the choice between the new state and the old)."""
    return state, jnp.float32(1.0)


def _first_block(params, inputs, *, cotangent, forward: model.Forward):
    """The first block's forward and backward as the step computes them, under a fixed read-out of g:
    in sample blocks, each block's both passes together (`train.network_value_and_grad`), where it has them."""
    if not forward.by_pairs or inputs.shape[0] == 1:
        return jax.value_and_grad(lambda p: jnp.vdot(cotangent, forward.train_feature(p, inputs)))(params)
    value, d_params, _ = tensor.value_and_grad_by_blocks(
        lambda weights, _, pairs, read_out: jnp.vdot(read_out, tensor.feature_from_weights(weights, pairs)),
        params, {}, inputs, cotangent.reshape(inputs.shape[0], -1))
    return value, d_params


def contenders(cfg: RunConfig, n_steps: int, reference: bool = True) -> dict[str, Callable[[], object]]:
    """Compiled, warmed-up calls from θ(0): reference and production chunks, and the production step's parts."""
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    forward = model.training_forward(cfg)
    direct = dataclasses.replace(forward, by_pairs=False)
    state, lr = loop.adam_state(params), jnp.float32(cfg.lr)
    batch, rules = (forward.encode(data.x_train), data.y_train), loop.rules(cap=2**30)
    chunk = partial(loop.chunk, step=train.joint_step, forward=forward)
    # u = 1: away from the zero init, so no part is timed on a trivially zero gradient
    moved = {**params, "u": jnp.ones_like(params["u"]), "c": jnp.ones_like(params["c"])}
    g = forward.train_feature(moved, batch[0])
    relu = relu_sum_fast(g, moved["a"], moved["b"], moved["c"])
    grads = jax.grad(train.network_loss)(moved, batch, forward)
    cotangent = jax.random.normal(jax.random.PRNGKey(1), (cfg.n,))
    # value_and_grad: a plain grad of a linear read-out lets XLA drop the forward pass, which the step needs
    first_block = jax.jit(partial(_first_block, cotangent=cotangent, forward=forward))
    second_block = jax.jit(jax.value_and_grad(
        lambda z, p: jnp.vdot(cotangent, relu_sum_fast(z, p["a"], p["b"], p["c"])), (0, 1)))
    loss = jax.jit(jax.value_and_grad(lambda g, r, y: mse(g + r, y), (0, 1)))  # h = g + relu sum, (h - y)², their cotangents
    adam = jax.jit(lambda grads, state: optax.apply_updates(state[0], optax.adam(lr).update(grads, state[1], state[0])[0]))
    clock = loop.start_clock()
    calls = {
        "production": _warm(lambda: chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(n_steps))),
        "first_block": _warm(lambda: first_block(moved, batch[0])),
        "second_block": _warm(lambda: second_block(g, moved)),
        "loss": _warm(lambda: loss(g, relu, data.y_train)),
        "optimizer": _warm(lambda: adam(grads, state)),
        "round_trip": _warm(lambda: jax.device_get(chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(0))[1])),
        "rules": _warm(lambda: loop.chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(n_steps), step=_unchanged_step,
                                          forward=forward)),
    }
    if reference:
        calls["reference"] = _warm(lambda: reference_steps(params, state[1], data.x_train, data.y_train, lr, n_steps=n_steps))
    if forward.by_pairs and reference:
        calls["production_direct"] = _production_chunk(cfg, direct, n_steps)
    return calls


def measure_case(d: int, n: int, pl: Plan, peak_fn: Callable[[], float], log: Callable[[str], None],
                 reference: bool = True, rounds: int | None = None, steps_per_call: int | None = None) -> dict:
    """ms per step, reference vs production, alternately; the production step's breakdown."""
    cfg = RunConfig(d=d, n=n, n_test=16)
    rounds, per_call = rounds or pl.rounds, steps_per_call or pl.steps_per_call
    log(f"case d={d} n={n}: compiling")
    calls = contenders(cfg, per_call, reference)
    times: dict[str, list[float]] = {name: [] for name in calls}
    peaks = []
    for r in range(rounds):
        peaks.append(peak_fn())
        for name, call in calls.items():
            if name in CHUNKS:
                times[name].append(_median_seconds(call, 1) / per_call)
            elif name == "round_trip":
                times[name].append(_median_seconds(call, 1))
            else:
                times[name].append(_throughput_seconds(call, 3))
        ref = f"reference {times['reference'][-1] * 1e3:.1f} ms/step, " if reference else ""
        log(f"case d={d} n={n}: round {r + 1}/{rounds}: {ref}production {times['production'][-1] * 1e3:.1f} ms/step, "
            f"peak {peaks[-1]:.1f} GFLOP/s")
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    peak, step = statistics.median(peaks), ms["production"]
    by_pairs = first_block_by_pairs(cfg)
    fb_gflops = first_block_flops(cfg, by_pairs) / (ms["first_block"] / 1e3) / 1e9
    parts = {name: ms[name] for name in PARTS}
    parts["round_trip"] = ms["round_trip"] / per_call  # one per chunk
    parts["rules"] = max(ms["rules"] - parts["round_trip"], 0.0)  # that chunk's own round trip is counted above
    accounted = sum(parts.values())
    breakdown = {f"{name}_ms": v for name, v in parts.items()}
    breakdown.update({f"{name}_share": v / step for name, v in parts.items()})
    breakdown.update({
        "first_block_gflops": fb_gflops, "first_block_peak_fraction": fb_gflops / peak,
        "rest_ms": step - accounted, "accounted_share": accounted / step, "round_trip_per_chunk_ms": ms["round_trip"],
    })
    out = {"d": d, "n": n, "m1": cfg.m1, "m2": cfg.m2, "first_block": "pairs" if by_pairs else "direct",
           "ms_per_step": step, "matmul_peak_gflops": peak, "breakdown": breakdown,
           "ms_per_step_reference": ms.get("reference"), "speedup": ms["reference"] / step if reference else None}
    if "production_direct" in ms:
        out["ms_per_step_direct"] = ms["production_direct"]
        out["speedup_over_direct"] = ms["production_direct"] / step
    return out


def measure_paths(pl: Plan, log: Callable[[str], None]) -> list[dict]:
    """The production chunk on either first block, alternately, per small case: where pairs pay."""
    out = []
    for d, n in pl.path_cases:
        cfg = RunConfig(d=d, n=n, n_test=16)
        base = model.training_forward(cfg, by_pairs=False)
        calls = {"pairs": _production_chunk(cfg, dataclasses.replace(base, by_pairs=True), pl.steps_per_call),
                 "direct": _production_chunk(cfg, base, pl.steps_per_call)}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(pl.rounds):
            for name, call in calls.items():
                times[name].append(_median_seconds(call, 1) / pl.steps_per_call)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        out.append({"d": d, "n": n, "m1": cfg.m1, "ms_per_step_pairs": ms["pairs"], "ms_per_step_direct": ms["direct"],
                    "speedup": ms["direct"] / ms["pairs"], "rule_picks_pairs": first_block_by_pairs(cfg)})
        log(f"first block d={d} n={n}: pairs {ms['pairs']:.2f} ms/step, direct {ms['direct']:.2f} ms/step")
    return out


def measure_seed_batching(pl: Plan, log: Callable[[str], None]) -> dict:
    """Wall time of a 3-seed cell: `train.run_seeds` (one program) vs three `train.run`s."""
    cfgs = [dataclasses.replace(pl.seed_cfg, seed=s) for s in range(3)]
    batched = lambda: train.run_seeds(cfgs)  # noqa: E731
    sequential = lambda: [train.run(c) for c in cfgs]  # noqa: E731
    log(f"seed batching d={cfgs[0].d} n={cfgs[0].n}: compiling")
    batched(), sequential()  # compile both
    b_t, s_t = [], []
    for r in range(pl.seed_rounds):
        b_t.append(_median_seconds(batched, 1))
        s_t.append(_median_seconds(sequential, 1))
        log(f"seed batching: round {r + 1}/{pl.seed_rounds}: batched {b_t[-1]:.2f} s, sequential {s_t[-1]:.2f} s")
    b, s = statistics.median(b_t), statistics.median(s_t)
    return {
        "seeds": 3, "d": cfgs[0].d, "n": cfgs[0].n, "m1": cfgs[0].m1, "m2": cfgs[0].m2, "steps": cfgs[0].steps,
        "seconds_batched": b, "seconds_sequential": s, "speedup": s / b,
    }


# ------------------------------------------------------- the cpu preset, projected
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


def _stacked(trees):
    """Trees of seeds stacked on a leading axis, as `train.run_seeds` holds them."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


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
    empty = _production_chunk(cfgs[0], forward, 0, seeds=len(cfgs))
    chunk_ms = _median_seconds(lambda: jax.device_get(empty()[1]), 3) * 1e3 + _score_ms(cfgs[0], forward, len(cfgs))
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
    guess = _median_seconds(_production_chunk(cfg, forward, 8, seeds), 3) / 8
    steps = max(8, min(4096, int(TIMED_SECONDS / max(guess, 1e-6))))
    chunk = _production_chunk(cfg, forward, steps, seeds)  # the chunk length is an argument: nothing recompiles
    return _median_seconds(chunk, 3) / steps * 1e3


def _score_ms(cfg: RunConfig, forward: model.Forward, seeds: int) -> float:
    """One chunk's monitor scores for `seeds` batched seeds on cfg's n_test points."""
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    task = loop.Task(train.joint_step, train.score_network, forward, train.probe_network)
    state = _stacked([loop.adam_state(params)] * seeds)
    monitor = _stacked([(data.x_test, data.y_test, data.p_test)] * seeds)
    loop.scores(task, state, monitor, batched=True)
    return _median_seconds(lambda: loop.scores(task, state, monitor, batched=True), 3) * 1e3


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
