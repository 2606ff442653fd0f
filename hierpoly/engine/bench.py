"""`python -m hierpoly bench`: how fast training is, against the plain formulation a researcher would write.

Measured in one process, alternating the contenders and taking medians (other work on
the machine then hits both alike):

- the machine's float32 matmul peak (a large square matmul, in every round), GFLOP/s;
- per case (d, n), joint training, m1 = d^2, m2 = 1000, ms per full-batch Adam step of
  * the reference: the straightforward plain-JAX formulation at its best — the whole loss
    jitted inside a `lax.scan` of optax Adam steps, x Vᵀ + s, cube, the dense (n, m2) ReLU
    matrix, no chunking (`reference_steps`, written here independently of the engine);
  * production: the engine's compiled chunk (`loop.chunk` of `train.joint_step`, stopping
    rules included), sample blocks in the first layer and `piecewise.relu_sum_fast`;
  their ratio, and a breakdown of the production step: first block (forward + backward,
  its share of the step and GFLOP/s at 6·n·d·m1 flops against the peak), second block,
  the optimizer update, and one host round trip (an empty chunk: dispatch + sync);
- a 3-seed cell trained by `train.run_seeds` (one program) against 3 sequential `run`s;
- the demo run (d=6, n=864, m2=200, 1000 steps) through ``python -m hierpoly run --json`` in
  fresh processes: cold (empty store, empty compilation cache) and warm (another seed, same shapes);
- per Figure 2 cell of the shipped cpu preset: steps to the plateau rule (from the shipped
  results) × the measured ms/step = wall time to plateau.

Timings are after compilation. A benchmark, not a test: nothing here asserts a speed.
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

from hierpoly.config import RunConfig
from hierpoly.engine import loop, model, train
from hierpoly.engine.data import device_info, keys, make_data
from hierpoly.engine.piecewise import relu_sum_fast

CPU_CASES = [(16, 16384), (20, 64000)]
GPU_CASES = [(40, 512000)]
QUICK_CASES = [(6, 2048)]
REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to measure: cases and repetitions."""

    cases: list[tuple[int, int]]
    steps_per_call: int  # steps in one timed compiled chunk
    rounds: int  # alternations of reference and production; medians over them
    seed_cfg: RunConfig  # the cell of the seed-batching measurement
    seed_rounds: int
    quick: bool


def plan(quick: bool, backend: str) -> Plan:
    """The full benchmark, or a seconds-long variant (`--quick`, for tests)."""
    if quick:
        cell = RunConfig(d=4, n=512, m2=100, steps=40, tol=0.0, n_test=64, n_eval=4096)
        return Plan(QUICK_CASES, 2, 2, cell, 1, True)
    cell = RunConfig(d=8, n=4096, steps=300, tol=0.0, n_test=1024)  # tol = 0: every seed runs all steps
    return Plan(CPU_CASES + (GPU_CASES if backend == "gpu" else []), 5, 5, cell, 3, False)


# ------------------------------------------------------------------ reference
def reference_loss(params, x, y):
    """The plain formulation of L̂(θ): x Vᵀ + s, cube, dense (n, m2) ReLU matrix, skip connection."""
    m1, m2 = params["u"].shape[0], params["c"].shape[0]
    g = ((x @ params["V"].T + params["s"]) ** 3) @ params["u"] / m1
    h = g + jax.nn.relu(g[:, None] * params["a"] + params["b"]) @ params["c"] / m2
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


def matmul_peak_fn(size: int) -> Callable[[], float]:
    """A compiled float32 (size × size) @ (size × size); each call returns its GFLOP/s (the practical peak)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    jax.block_until_ready(mm(a))
    return lambda: 2 * size**3 / _median_seconds(lambda: mm(a), 3) / 1e9


def _warm(call: Callable[[], object]) -> Callable[[], object]:
    jax.block_until_ready(call())
    return call


def contenders(cfg: RunConfig, n_steps: int) -> dict[str, Callable[[], object]]:
    """Compiled, warmed-up calls from θ(0): reference and production chunks, and the production step's parts."""
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    state, lr, forward = loop.adam_state(params), jnp.float32(cfg.lr), model.Forward(cfg.sigma1)
    batch, rules = (data.x_train, data.y_train), loop.rules(cap=2**30)
    chunk = partial(loop.chunk, step=train.joint_step, forward=forward)
    g = forward.feature(params, data.x_train)
    grads = jax.grad(train.network_loss)(params, batch, forward)
    cotangent = jax.random.normal(jax.random.PRNGKey(1), (cfg.n,))
    ones_u = {**params, "u": jnp.ones_like(params["u"])}
    first_block = jax.jit(jax.grad(lambda p, x: jnp.vdot(cotangent, forward.feature(p, x))))
    second_block = jax.jit(jax.grad(lambda z, p: jnp.vdot(cotangent, relu_sum_fast(z, p["a"], p["b"], p["c"])), (0, 1)))
    adam = jax.jit(lambda grads, state: optax.adam(lr).update(grads, state[1], state[0]))
    clock = loop.start_clock()
    return {
        "reference": _warm(lambda: reference_steps(params, state[1], *batch, lr, n_steps=n_steps)),
        "production": _warm(lambda: chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(n_steps))),
        "first_block": _warm(lambda: first_block(ones_u, data.x_train)),
        "second_block": _warm(lambda: second_block(g, params)),
        "optimizer": _warm(lambda: adam(grads, state)),
        "round_trip": _warm(lambda: jax.device_get(chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(0))[1])),
    }


def measure_case(d: int, n: int, pl: Plan, peak_fn: Callable[[], float], log: Callable[[str], None]) -> dict:
    """ms per step, reference vs production, alternately; the production step's breakdown."""
    cfg = RunConfig(d=d, n=n, n_test=16)
    log(f"case d={d} n={n}: compiling")
    calls = contenders(cfg, pl.steps_per_call)
    times: dict[str, list[float]] = {name: [] for name in calls}
    peaks = []
    for r in range(pl.rounds):
        peaks.append(peak_fn())
        for name, call in calls.items():
            per = pl.steps_per_call if name in ("reference", "production") else 1
            times[name].append(_median_seconds(call, 1) / per)
        log(
            f"case d={d} n={n}: round {r + 1}/{pl.rounds}: reference {times['reference'][-1] * 1e3:.1f} ms/step, "
            f"production {times['production'][-1] * 1e3:.1f} ms/step, peak {peaks[-1]:.1f} GFLOP/s"
        )
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    peak = statistics.median(peaks)
    fb_gflops = 6 * n * d * cfg.m1 / (ms["first_block"] / 1e3) / 1e9
    return {
        "d": d, "n": n, "m1": cfg.m1, "m2": cfg.m2,
        "ms_per_step_reference": ms["reference"], "ms_per_step": ms["production"],
        "speedup": ms["reference"] / ms["production"], "matmul_peak_gflops": peak,
        "breakdown": {
            "first_block_ms": ms["first_block"], "first_block_share": ms["first_block"] / ms["production"],
            "first_block_gflops": fb_gflops, "first_block_peak_fraction": fb_gflops / peak,
            "second_block_ms": ms["second_block"], "second_block_share": ms["second_block"] / ms["production"],
            "optimizer_ms": ms["optimizer"], "optimizer_share": ms["optimizer"] / ms["production"],
            "round_trip_ms": ms["round_trip"],
        },
    }


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


def measure_figure2(log: Callable[[str], None], cells: dict[tuple[int, int], list[int]]) -> list[dict]:
    """Per three-layer cell (d, n) of the cpu preset: median steps to stop (from the shipped runs) × measured ms/step."""
    out = []
    for (d, n), steps in sorted(cells.items()):
        cfg = RunConfig(d=d, n=n, n_test=16)
        call = _production_chunk(cfg)
        ms = _median_seconds(call, 3) / 4 * 1e3
        out.append({"d": d, "n": n, "steps": statistics.median(steps), "ms_per_step": ms,
                    "seconds_to_stop": statistics.median(steps) * ms / 1e3})
        log(f"figure 2 cell d={d} n={n}: {out[-1]['steps']:.0f} steps × {ms:.2f} ms = {out[-1]['seconds_to_stop']:.1f} s")
    return out


def _production_chunk(cfg: RunConfig) -> Callable[[], object]:
    """A warmed-up production chunk of 4 steps from θ(0)."""
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    state, chunk = loop.adam_state(params), partial(loop.chunk, step=train.joint_step, forward=model.Forward(cfg.sigma1))
    args = (state, loop.start_clock(), (data.x_train, data.y_train), {"lr": jnp.float32(cfg.lr)}, loop.rules(2**30))
    return _warm(lambda: chunk(*args, jnp.int32(4)))


def run_bench(quick: bool = False, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
              figure2_steps: dict[tuple[int, int], list[int]] | None = None) -> dict:
    """Every measurement of the module docstring, as the JSON-ready dict `bench --json` prints.

    ``figure2_steps``: per cpu-preset cell (d, n), the steps its stored runs took (the CLI reads them
    from the shipped bundle); their cells are timed unless ``quick``.
    """
    pl = plan(quick, jax.default_backend())
    peak_fn = matmul_peak_fn(1024 if quick else 2048)
    cases = [measure_case(d, n, pl, peak_fn, log) for d, n in pl.cases]
    peak = statistics.median(c["matmul_peak_gflops"] for c in cases)
    log(f"matmul peak: {peak:.1f} GFLOP/s")
    return {
        "reference": "plain JAX: whole loss jitted in a lax.scan of optax Adam steps, x V^T + s, cube, "
                     "dense (n, m2) ReLU, no chunking",
        "matmul_peak_gflops": peak,
        "cases": cases,
        "seed_batching": measure_seed_batching(pl, log),
        "figure2_cells": [] if quick or not figure2_steps else measure_figure2(log, figure2_steps),
        "device": device_info(),
        "quick": quick,
    }


def format_report(out: dict) -> str:
    """The human-readable table of `bench` without --json."""
    lines = [f"matmul peak {out['matmul_peak_gflops']:.1f} GFLOP/s on {out['device']['device_kind']}",
             f"reference = {out['reference']}"]
    lines.append(f"{'d':>4} {'n':>8} {'reference ms':>13} {'ms/step':>9} {'speedup':>8} {'1st share':>9} {'1st of peak':>11}")
    for c in out["cases"]:
        b = c["breakdown"]
        lines.append(
            f"{c['d']:>4} {c['n']:>8} {c['ms_per_step_reference']:>13.1f} {c['ms_per_step']:>9.1f} {c['speedup']:>8.1f}"
            f" {b['first_block_share']:>9.0%} {b['first_block_peak_fraction']:>11.0%}"
        )
    sb, demo = out["seed_batching"], out.get("demo_run")
    lines.append(
        f"3 seeds (d={sb['d']}, n={sb['n']}, {sb['steps']} steps): batched {sb['seconds_batched']:.2f} s, "
        f"sequential {sb['seconds_sequential']:.2f} s, speedup {sb['speedup']:.2f}"
    )
    if demo:
        lines.append(f"demo run ({demo['args']}): cold {demo['seconds_cold']:.1f} s, warm {demo['seconds_warm']:.1f} s; "
                     f"first live point after {demo['first_point_cold']:.1f} s cold, {demo['first_point_warm']:.1f} s warm")
    for cell in out["figure2_cells"]:
        lines.append(f"figure 2 d={cell['d']} n={cell['n']}: {cell['seconds_to_stop']:.1f} s to stop")
    return "\n".join(lines)
