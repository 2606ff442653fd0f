"""How fast a training step is: the production chunk against the plain formulation (``engine.reference``),
the production step's parts, the two first-block paths, and seed batching. Timings are after compilation;
contenders alternate and the medians are kept, so other work on the machine hits both alike."""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import optax

from hierpoly.config import RunConfig, first_block_by_pairs
from hierpoly.engine import loop, model, tensor, train
from hierpoly.engine.data import keys, make_data
from hierpoly.engine.metrics import mse
from hierpoly.engine.piecewise import relu_sum_fast
from hierpoly.engine.reference import reference_steps

CPU_CASES = [(16, 16384), (20, 64000)]


LARGE_CASES = [(40, 512000)]  # production only, fewer rounds


PATH_CASES = [(3, 1024), (4, 2048), (6, 4096), (8, 8192), (12, 6912)]  # pairs vs direct first block


QUICK_CASES = [(6, 2048)]


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


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
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
    return lambda: 2 * size**3 / median_seconds(lambda: mm(a), 3) / 1e9


def warm(call: Callable[[], object]) -> Callable[[], object]:
    jax.block_until_ready(call())
    return call


CHUNKS = ("reference", "production", "production_direct", "rules")  # timed per step of a chunk of steps_per_call


PARTS = ("first_block", "second_block", "loss", "optimizer")  # timed alone, per step


def first_block_flops(cfg: RunConfig, by_pairs: bool) -> float:
    """Flops of the first block's forward + backward: 2·2·n·P·D by pair products (tensor.py), else 6·n·d·m1."""
    D = cfg.d + 1
    return 4.0 * cfg.n * D * (D + 1) // 2 * D if by_pairs else 6.0 * cfg.n * cfg.d * cfg.m1


def production_chunk(cfg: RunConfig, forward: model.Forward, n_steps: int, seeds: int = 1) -> Callable[[], object]:
    """A warmed-up production chunk of n_steps from θ(0) (seeds > 1: the batched program of `train.run_seeds`)."""
    if seeds > 1:
        cfgs = [dataclasses.replace(cfg, seed=s) for s in range(seeds)]
        data, params = [make_data(c) for c in cfgs], [model.init(keys(c.seed)["init"], c) for c in cfgs]
        state = stacked([loop.adam_state(p) for p in params])
        batch = stacked([(forward.encode(d.x_train), d.y_train) for d in data])
        args = (state, loop.start_clock(seeds), batch, {"lr": jnp.float32(cfg.lr)}, loop.rules(2**30))
        return warm(lambda: loop.chunk_seeds(*args, jnp.int32(n_steps), step=train.joint_step, forward=forward))
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    args = (loop.adam_state(params), loop.start_clock(), (forward.encode(data.x_train), data.y_train),
            {"lr": jnp.float32(cfg.lr)}, loop.rules(2**30))
    return warm(lambda: loop.chunk(*args, jnp.int32(n_steps), step=train.joint_step, forward=forward))


def stacked(trees):
    """Trees of seeds stacked on a leading axis, as `train.run_seeds` holds them."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


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
        "production": warm(lambda: chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(n_steps))),
        "first_block": warm(lambda: first_block(moved, batch[0])),
        "second_block": warm(lambda: second_block(g, moved)),
        "loss": warm(lambda: loss(g, relu, data.y_train)),
        "optimizer": warm(lambda: adam(grads, state)),
        "round_trip": warm(lambda: jax.device_get(chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(0))[1])),
        "rules": warm(lambda: loop.chunk(state, clock, batch, {"lr": lr}, rules, jnp.int32(n_steps), step=_unchanged_step,
                                          forward=forward)),
    }
    if reference:
        calls["reference"] = warm(lambda: reference_steps(params, state[1], data.x_train, data.y_train, lr, n_steps=n_steps))
    if forward.by_pairs and reference:
        calls["production_direct"] = production_chunk(cfg, direct, n_steps)
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
                times[name].append(median_seconds(call, 1) / per_call)
            elif name == "round_trip":
                times[name].append(median_seconds(call, 1))
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
        calls = {"pairs": production_chunk(cfg, dataclasses.replace(base, by_pairs=True), pl.steps_per_call),
                 "direct": production_chunk(cfg, base, pl.steps_per_call)}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(pl.rounds):
            for name, call in calls.items():
                times[name].append(median_seconds(call, 1) / pl.steps_per_call)
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
        b_t.append(median_seconds(batched, 1))
        s_t.append(median_seconds(sequential, 1))
        log(f"seed batching: round {r + 1}/{pl.seed_rounds}: batched {b_t[-1]:.2f} s, sequential {s_t[-1]:.2f} s")
    b, s = statistics.median(b_t), statistics.median(s_t)
    return {
        "seeds": 3, "d": cfgs[0].d, "n": cfgs[0].n, "m1": cfgs[0].m1, "m2": cfgs[0].m2, "steps": cfgs[0].steps,
        "seconds_batched": b, "seconds_sequential": s, "speedup": s / b,
    }

