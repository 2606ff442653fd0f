"""`python -m hierpoly bench`: how fast one training step is, against the plain formulation.

Measured in one process, alternating the contenders and taking medians (other work on
the machine then hits both alike):

- the machine's float32 matmul peak (a large square matmul, in every round), GFLOP/s;
- per case (d, n), joint training, m1 = d^2, m2 = 1000: ms per full-batch Adam step of
  the reference (the plain formulation: x V^T + s, cube, the dense (n, m2) ReLU matrix)
  and of the production path (`feature_chunked` + `piecewise.relu_sum_fast`), both the
  same jitted `train.joint_chunk` scan; their ratio; and the first block alone (forward
  and backward of the production feature), in GFLOP/s at 6·n·d·m1 flops per step and
  as a fraction of the matmul peak;
- a 3-seed cell trained by `train.run_seeds` (one program) against 3 sequential `run`s.

Timings are after compilation. A benchmark, not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

from hierpoly.config import RunConfig
from hierpoly.engine import model, train
from hierpoly.engine.piecewise import relu_sum_fast

CPU_CASES = [(16, 16384), (20, 64000)]
GPU_CASES = [(40, 512000)]
QUICK_CASES = [(6, 2048)]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to measure: cases and repetitions."""

    cases: list[tuple[int, int]]
    steps_per_call: int  # steps in one timed compiled chunk
    rounds: int  # alternations of reference and production; medians over them
    seed_cfg: RunConfig  # the cell of the seed-batching measurement
    seed_rounds: int


def plan(quick: bool, backend: str) -> Plan:
    """The full benchmark, or a seconds-long variant (`--quick`, for tests)."""
    if quick:
        cell = RunConfig(d=4, n=512, m2=100, steps=40, tol=0.0, n_test=64)
        return Plan(QUICK_CASES, 2, 2, cell, 1)
    cell = RunConfig(d=8, n=4096, steps=300, tol=0.0, n_test=1024)  # tol = 0: every seed runs all steps
    return Plan(CPU_CASES + (GPU_CASES if backend == "gpu" else []), 5, 5, cell, 3)


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


def _step_fn(cfg: RunConfig, relu_sum, sample_chunk, n_steps: int) -> Callable[[], object]:
    """A compiled, warmed-up call of `n_steps` joint Adam steps from θ(0)."""
    data = train.make_data(cfg)
    params = model.init(train.keys(cfg.seed)["init"], cfg)
    tx = train.joint_optimizer(cfg)
    opt_state = tx.init(params)

    def call():
        return train.joint_chunk(
            params, opt_state, data.x_train, data.y_train, tx=tx, sigma1=cfg.sigma1, n_steps=n_steps,
            relu_sum=relu_sum, sample_chunk=sample_chunk,
        )

    jax.block_until_ready(call())
    return call


def _first_block_fn(cfg: RunConfig) -> Callable[[], object]:
    """Forward and backward of the production first block, g = (1/m1) Σ u_i (v_i·x + s_i)^3."""
    data = train.make_data(cfg)
    params = model.init(train.keys(cfg.seed)["init"], cfg)
    params = {**params, "u": jnp.ones_like(params["u"])}
    cotangent = jax.random.normal(jax.random.PRNGKey(1), (cfg.n,))
    grad = jax.jit(jax.grad(lambda p, x: jnp.vdot(cotangent, model.feature_chunked(p, x, cfg.sigma1))))
    jax.block_until_ready(grad(params, data.x_train))
    return lambda: grad(params, data.x_train)


def measure_case(d: int, n: int, pl: Plan, peak_fn: Callable[[], float], log: Callable[[str], None]) -> dict:
    """ms per step, reference vs production, and the first block's GFLOP/s, for one (d, n).

    The matmul peak is measured in every round too, so the fraction compares like with like
    when other work shares the machine.
    """
    cfg = RunConfig(d=d, n=n, n_test=16)
    log(f"case d={d} n={n}: compiling")
    reference = _step_fn(cfg, model.relu_sum_dense, None, pl.steps_per_call)
    production = _step_fn(cfg, relu_sum_fast, model.SAMPLE_CHUNK, pl.steps_per_call)
    first_block = _first_block_fn(cfg)
    ref_t, prod_t, fb_t, peaks = [], [], [], []
    for r in range(pl.rounds):
        peaks.append(peak_fn())
        ref_t.append(_median_seconds(reference, 1) / pl.steps_per_call)
        prod_t.append(_median_seconds(production, 1) / pl.steps_per_call)
        fb_t.append(_median_seconds(first_block, 1))
        log(
            f"case d={d} n={n}: round {r + 1}/{pl.rounds}: reference {ref_t[-1] * 1e3:.1f} ms/step, "
            f"production {prod_t[-1] * 1e3:.1f} ms/step, first block {fb_t[-1] * 1e3:.1f} ms, peak {peaks[-1]:.1f} GFLOP/s"
        )
    ref, prod, fb = statistics.median(ref_t), statistics.median(prod_t), statistics.median(fb_t)
    fb_gflops, peak = 6 * n * d * cfg.m1 / fb / 1e9, statistics.median(peaks)
    return {
        "d": d, "n": n, "m1": cfg.m1, "m2": cfg.m2,
        "ms_per_step_reference": ref * 1e3, "ms_per_step": prod * 1e3, "speedup": ref / prod,
        "first_block_gflops": fb_gflops, "first_block_roofline_fraction": fb_gflops / peak,
        "matmul_peak_gflops": peak,
    }


def measure_seed_batching(pl: Plan, log: Callable[[str], None]) -> dict:
    """Wall time of a 3-seed cell: `train.run_seeds` (one program) vs three `train.run`s."""
    cfgs = [dataclasses.replace(pl.seed_cfg, seed=s) for s in range(3)]
    batched = lambda: train.run_seeds(cfgs)
    sequential = lambda: [train.run(c) for c in cfgs]
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


def run_bench(quick: bool = False, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict:
    """Every measurement of the module docstring, as the JSON-ready dict `bench --json` prints."""
    pl = plan(quick, jax.default_backend())
    peak_fn = matmul_peak_fn(1024 if quick else 2048)
    cases = [measure_case(d, n, pl, peak_fn, log) for d, n in pl.cases]
    peak = statistics.median(c["matmul_peak_gflops"] for c in cases)
    log(f"matmul peak: {peak:.1f} GFLOP/s")
    return {
        "matmul_peak_gflops": peak,
        "cases": cases,
        "seed_batching": measure_seed_batching(pl, log),
        "device": train.device_info(),
        "quick": quick,
    }


def format_report(out: dict) -> str:
    """The human-readable table of `bench` without --json."""
    lines = [f"matmul peak {out['matmul_peak_gflops']:.1f} GFLOP/s on {out['device']['device_kind']}"]
    lines.append(f"{'d':>4} {'n':>8} {'reference ms':>13} {'ms/step':>9} {'speedup':>8} {'1st GFLOP/s':>12} {'of peak':>8}")
    for c in out["cases"]:
        lines.append(
            f"{c['d']:>4} {c['n']:>8} {c['ms_per_step_reference']:>13.1f} {c['ms_per_step']:>9.1f} {c['speedup']:>8.1f}"
            f" {c['first_block_gflops']:>12.1f} {c['first_block_roofline_fraction']:>8.0%}"
        )
    sb = out["seed_batching"]
    lines.append(
        f"3 seeds (d={sb['d']}, n={sb['n']}, {sb['steps']} steps): batched {sb['seconds_batched']:.2f} s, "
        f"sequential {sb['seconds_sequential']:.2f} s, speedup {sb['speedup']:.2f}"
    )
    return "\n".join(lines)
