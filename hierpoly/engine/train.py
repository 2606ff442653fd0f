"""Joint (Figure 2) and layer-wise (Algorithm 1) training of the three-layer network.

Both run through the one training loop (loop.py): compiled chunks of steps with the
stopping rules inside, progress and cancellation between chunks. Nothing here knows
about Streamlit or the store.

Training losses are mean squared errors, L̂(θ) = (1/n) Σ (h_θ(x) - y)^2. A finished run's
test loss is the same on `n_eval` = 2^20 fresh points with its standard error, streamed
(`evaluation.population_metrics`, `metrics.from_sums`); feature correlation is Pearson's
between g and p there. Progress rows measure both on the `n_test` monitor points (8192),
the loss as a ratio to their mean y^2 (`metrics.relative_test_loss`: a stable live curve,
biased low by h's heavy tail).

Joint: all of (u, s, V, a, b, c) with Adam at one base rate (µP, model.py), full
batch. The training loss takes its inputs encoded once per run by the path
`model.training_forward` picks: the pair products of tensor.py for the cubic first block
where `config.first_block_by_pairs` says it is cheaper, else x; results do not depend on it. Convergence rules (loop.py): the plateau rule on the train loss (it lowers the rate
`lr_drops` times before it stops the run), the feature rule (g on the first training inputs
moved by less than `feature_tol` over `patience` steps), and the step cap.

Layer-wise **[reconstructed split]**: n is split in half, D1 = first ⌊n/2⌋
samples, D2 = the rest. Stage 1: T1 = `steps` steps of GD on u over L̂_{D1} with
weight decay ξ1, u ← u - η1 (∇L̂_{D1}(u) + ξ1 u), with c = 0 so h_θ = g. Stage 2:
T2 = `steps2` steps of GD on c over L̂_{D2} at rate η2 = `lr2` with ξ2 = `weight_decay2`,
likewise. a, b, s, V stay fixed. Each stage is a ridge regression whose minimiser is
`ridge_solution`. A rate of None means η = 1/L with L the largest eigenvalue of that
stage's Hessian (the largest stable step).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly.config import RunConfig
from hierpoly.engine import evaluation, loop, model, tensor
from hierpoly.engine.data import Data, device_info, keys, make_data, target_fn  # noqa: F401  (the run's data)
from hierpoly.engine.loop import TrainResult
from hierpoly.engine.metrics import mse
from hierpoly.engine.piecewise import relu_sum_fast
from hierpoly.progress import Progress


# ------------------------------------------------------------------------ joint
def network_loss(params, batch, forward: model.Forward):
    """L̂(θ) on batch = (inputs, y), the inputs encoded by `forward.encode` (x itself on the direct path)."""
    inputs, y = batch
    return mse(forward.link_out(params, forward.train_feature(params, inputs)), y)


def joint_loss(params, x, y, sigma1: str, relu_sum=relu_sum_fast, sample_chunk: int | None = model.SAMPLE_CHUNK,
               by_pairs: bool = False):
    """L̂(θ) on raw x. relu_sum=model.relu_sum_dense, sample_chunk=None is the reference; by_pairs: tensor.py."""
    forward = model.Forward(sigma1, relu_sum, sample_chunk, by_pairs)
    return network_loss(params, (forward.encode(x), y), forward)


def network_value_and_grad(params, batch, forward: model.Forward):
    """(L̂(θ), ∇L̂(θ)) on batch, as `jax.value_and_grad(network_loss)`; on the pair-product path block by block
    (`tensor.value_and_grad_by_blocks`: L̂ is a mean over points, so its gradient sums the blocks'). One block
    is the plain value_and_grad."""
    inputs, y = batch
    if not forward.by_pairs or inputs.shape[0] == 1:
        return jax.value_and_grad(network_loss)(params, batch, forward)
    blocks, _, size = inputs.shape

    def block_sse(weights, second, pairs, target):
        return jnp.sum((forward.link_out(second, tensor.feature_from_weights(weights, pairs)) - target) ** 2)

    second = {name: params[name] for name in ("a", "b", "c")}
    sse, d_params, d_second = tensor.value_and_grad_by_blocks(block_sse, params, second, inputs, y.reshape(blocks, size))
    n = blocks * size
    return sse / n, jax.tree_util.tree_map(lambda g: g / n, {**d_params, **d_second})


def joint_step(state, batch, hyper, forward: model.Forward):
    """One full-batch Adam step on all of θ."""
    return loop.adam_update(network_value_and_grad, state, batch, hyper, forward)


def probe_network(state, batch, forward: model.Forward):
    """The learned feature g on the first training inputs: what the feature rule watches (loop.py)."""
    return forward.train_feature(state[0], forward.first_points(batch[0], loop.PROBE_POINTS))


def score_network(state, monitor, forward: model.Forward):
    """Monitor scores of the joint state (params, Adam state)."""
    return evaluation.monitor_scores(state[0], *monitor, predict=evaluation.network_output, forward=forward)


_train_loss = jax.jit(network_loss, static_argnames=("forward",))


# -------------------------------------------------------------------- layer-wise
def ridge_solution(phi: jax.Array, y: jax.Array, xi: float) -> jax.Array:
    """argmin_w (1/n)||phi w - y||^2 + (ξ/2)||w||^2, the fixed point of the GD above."""
    n, m = phi.shape
    H = 2.0 * phi.T @ phi / n + xi * jnp.eye(m, dtype=phi.dtype)
    return jnp.linalg.solve(H, 2.0 * phi.T @ y / n)


def largest_stable_lr(phi: jax.Array, xi: float) -> float:
    """1/L with L = λ_max(2 phiᵀphi/n) + ξ, the smoothness of the ridge objective."""
    H = 2.0 * phi.T @ phi / phi.shape[0]
    return float(1.0 / (jnp.linalg.eigvalsh(H.astype(jnp.float32))[-1] + xi))


def ridge_step(w, batch, hyper, forward=None):
    """w ← w - lr (∇(1/n)||phi w - y||^2 + ξ w) on batch = (phi, y); the loss before the step."""
    phi, y = batch
    r = phi @ w - y
    grad = 2.0 * phi.T @ r / phi.shape[0] + hyper["xi"] * w
    return w - hyper["lr"] * grad, jnp.mean(r**2)


def score_first_stage(u, monitor, forward: model.Forward):
    """Monitor scores with u trained and the rest of θ fixed (monitor = (params, x, y, p))."""
    params, x, y, p = monitor
    return evaluation.monitor_scores({**params, "u": u}, x, y, p, predict=evaluation.network_output, forward=forward)


def score_second_stage(c, monitor, forward: model.Forward):
    """Monitor scores with c trained and the rest of θ fixed."""
    params, x, y, p = monitor
    return evaluation.monitor_scores({**params, "c": c}, x, y, p, predict=evaluation.network_output, forward=forward)


# --------------------------------------------------------------------------- run
def run(
    cfg: RunConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int | None = None,
    relu_sum=relu_sum_fast,
    by_pairs: bool | None = None,
    checkpoint: loop.Checkpointing | None = None,
) -> TrainResult:
    """Train one config to completion; see the module docstring for the rules.

    Args:
        on_progress: receives every `Progress` row (phases and training rows).
        should_stop: polled between chunks; True cancels the run.
        chunk: steps per compiled chunk; None sizes chunks by time (loop.ChunkSizes). Never changes results.
        relu_sum, by_pairs: how a step is computed (`model.training_forward`); never changes results
            beyond float rounding.
        checkpoint: where joint training saves its state and resumes from (loop.Checkpointing); layer-wise
            training's two fixed-length ridge stages are not saved (they take seconds where joint takes hours).
    """
    if cfg.arch != "three_layer":
        raise ValueError(f"train.run trains the three-layer network; arch {cfg.arch!r} is a baseline (baselines.run)")
    reporter = loop.Reporter(1, None if on_progress is None else lambda _, row: on_progress(row))
    data = make_data(cfg)
    params = model.init(keys(cfg.seed)["init"], cfg)
    forward = model.training_forward(cfg, relu_sum, by_pairs)
    reporter.start([data.p_test])
    joint = loop.Task(joint_step, score_network, forward, probe_network)
    loop.report_start(joint, loop.adam_state(params), _monitor(data), _zero_loss(data), reporter)
    trainer = _run_joint if cfg.mode == "joint" else _run_layerwise
    params, status, message, steps, extra = trainer(cfg, data, params, forward, reporter, should_stop, chunk,
                                                    checkpoint)
    return _result(cfg, data, params, (status, message, steps, extra), reporter, 0, joint)


def _monitor(data: Data) -> tuple:
    return data.x_test, data.y_test, data.p_test


def _batch(data: Data, forward: model.Forward) -> tuple:
    """The training batch (inputs, y), the inputs encoded once for the run (pair products on that path)."""
    return forward.encode(data.x_train), data.y_train


def _zero_loss(data: Data) -> float:
    """The train loss at init, where the network outputs exactly 0: mean(y²)."""
    return float(np.mean(np.square(np.asarray(data.y_train, np.float32)), dtype=np.float32))


def _run_joint(cfg: RunConfig, data: Data, params, forward, reporter, should_stop, chunk, checkpoint):
    end = loop.run_loop(
        loop.Task(joint_step, score_network, forward, probe_network), loop.adam_state(params), _batch(data, forward),
        _monitor(data), {"lr": jnp.float32(cfg.lr)}, loop.rules_for(cfg), reporter, should_stop, chunk_steps=chunk,
        checkpoint=checkpoint,
    )
    status, message, extra = loop.outcome(end.endings[0], end.steps[0], cfg.steps, end.drops[0])
    return end.state[0], status, message, end.steps[0], {**extra, **_saving(end)}


def _saving(end: loop.End) -> dict:
    """What checkpointing did in a run (its extra's ``checkpoints``): saves, their seconds, the step resumed from."""
    return {"checkpoints": end.saving} if end.saving else {}


def _run_layerwise(cfg: RunConfig, data: Data, params, forward, reporter, should_stop, chunk, checkpoint=None):
    half = cfg.n // 2
    monitor = (params, data.x_test, data.y_test, data.p_test)
    stage = partial(loop.run_loop, reporter=reporter, should_stop=should_stop, chunk_steps=chunk)
    # Stage 1: T1 steps of ridge GD in u over D1 with c = 0 (h_θ = g).
    phi1 = model.first_features(params, data.x_train[:half], cfg.sigma1) / cfg.m1
    lr1 = cfg.lr or largest_stable_lr(phi1, cfg.weight_decay)
    extra = {"lr1": lr1, "xi1": cfg.weight_decay, "T1": cfg.steps, "xi2": cfg.weight_decay2, "T2": cfg.steps2}
    end = stage(loop.Task(ridge_step, score_first_stage, forward), params["u"], (phi1, data.y_train[:half]), monitor,
                _ridge_hyper(lr1, cfg.weight_decay), rule=loop.rules(cfg.steps))
    params, done = {**params, "u": end.state}, end.steps[0]
    if end.endings[0] != "step cap":
        return (params, *_stage_outcome(end.endings[0], 1, done, 0, extra))
    # Stage 2: T2 steps of ridge GD in c over D2, target y - g (the skip connection carries g).
    g2 = model.feature(params, data.x_train[half:], cfg.sigma1)
    psi2 = jax.nn.relu(g2[:, None] * params["a"] + params["b"]) / cfg.m2
    extra["lr2"] = cfg.lr2 or largest_stable_lr(psi2, cfg.weight_decay2)
    end = stage(loop.Task(ridge_step, score_second_stage, forward), params["c"], (psi2, data.y_train[half:] - g2),
                (params, *monitor[1:]), _ridge_hyper(extra["lr2"], cfg.weight_decay2), rule=loop.rules(cfg.steps2),
                offset=done)
    params = {**params, "c": end.state}
    if end.endings[0] != "step cap":
        return (params, *_stage_outcome(end.endings[0], 2, end.steps[0], done, extra))
    return params, "done", f"ran T1 = {cfg.steps}, T2 = {cfg.steps2} steps", done + end.steps[0], extra


def _ridge_hyper(lr: float, xi: float) -> dict:
    return {"lr": jnp.float32(lr), "xi": jnp.float32(xi)}


def _stage_outcome(ending: str, stage: int, steps: int, before: int, extra: dict) -> tuple[str, str, int, dict]:
    if ending == "diverged":
        return "diverged", f"stage {stage} loss became non-finite at step {before + steps}", before + steps, extra
    return "cancelled", f"cancelled at stage {stage} step {steps}", before + steps, extra


def _result(cfg: RunConfig, data: Data, params, ended: tuple, reporter: loop.Reporter, seed: int, task) -> TrainResult:
    """The final metrics and samples of a finished run (metrics only when it is done)."""
    status, message, steps, extra = ended
    metrics, samples = {}, {}
    if status == "done":
        reporter.phase("evaluating", steps, 0.0, seed)
        metrics = {
            "train_loss": float(_train_loss(params, _batch(data, task.forward), task.forward)),
            **evaluation.population_metrics(
                cfg, data.lam, evaluation.network_output, params, task.forward,
                on_fraction=lambda f: reporter.phase("evaluating", steps, f, seed),
            ),
        }
        _, _, pred, g = loop.scores(task, loop.adam_state(params), _monitor(data), batched=False)
        samples = evaluation.samples(pred[0], g[0], data)
    return TrainResult(
        status=status, message=message, steps=steps, metrics=metrics, history=reporter.histories[seed],
        samples=samples, params={k: np.asarray(v) for k, v in params.items()}, seconds=reporter.seconds(),
        data_C=data.C, extra=extra,
    )


# ----------------------------------------------------------------- seed batching
def seeds_batchable(cfgs: list[RunConfig]) -> bool:
    """True when `run_seeds` can train `cfgs` as one program: joint three-layer configs differing only in seed."""
    if len(cfgs) < 2 or any(c.arch != "three_layer" or c.mode != "joint" for c in cfgs):
        return False
    base = dataclasses.replace(cfgs[0], seed=0)
    return all(dataclasses.replace(c, seed=0) == base for c in cfgs)


def seeds_batch_pays(cfgs: list[RunConfig]) -> bool:
    """Whether a cell's seeds should train as one program (`run_seeds`) rather than one after another.

    Not on a CPU: there a batched step costs 0.8–1.2× the seeds' steps taken one after another
    (`bench`'s cpu-preset projection measures both per cell), while every seed of a batch steps
    until the slowest stops; the shipped cpu cells' seeds took on average 77% of their slowest
    seed's steps (46–93% per cell). An accelerator that one small run leaves idle is where one
    program pays, and the batch is kept there.
    """
    return seeds_batchable(cfgs) and jax.default_backend() != "cpu"


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _seed(tree, i: int):
    return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


def run_seeds(
    cfgs: list[RunConfig],
    on_progress: Callable[[int, Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int | None = None,
    relu_sum=relu_sum_fast,
    by_pairs: bool | None = None,
    checkpoint: loop.Checkpointing | None = None,
) -> list[TrainResult]:
    """Train configs that differ only in `seed` as one compiled program (the loop's chunk under vmap).

    Each seed follows exactly the rules of `run` and gets its own result; `on_progress(i, row)`
    receives rows of `cfgs[i]`. A stopped seed's state is frozen at its own stopping step.
    `seconds` is the batch's wall time. Configs that cannot be batched (see `seeds_batchable`)
    run one after another with `run` (no checkpoint: the batch's is for the batch).
    """
    if not seeds_batchable(cfgs):
        return [
            run(c, None if on_progress is None else partial(on_progress, i), should_stop, chunk, relu_sum, by_pairs)
            for i, c in enumerate(cfgs)
        ]
    cfg, reporter = cfgs[0], loop.Reporter(len(cfgs), on_progress)
    data = [make_data(c) for c in cfgs]
    params = [model.init(keys(c.seed)["init"], c) for c in cfgs]
    forward = model.training_forward(cfg, relu_sum, by_pairs)
    joint = loop.Task(joint_step, score_network, forward, probe_network)
    reporter.start([d.p_test for d in data])
    state, monitor = _stack([loop.adam_state(p) for p in params]), _stack([_monitor(d) for d in data])
    loop.report_start(joint, state, monitor, [_zero_loss(d) for d in data], reporter, batched=True)
    end = loop.run_loop(
        joint, state, _stack([_batch(d, forward) for d in data]), monitor, {"lr": jnp.float32(cfg.lr)},
        loop.rules_for(cfg), reporter, should_stop, batched=True, chunk_steps=chunk, checkpoint=checkpoint,
    )
    results = []
    for i, c in enumerate(cfgs):
        status, message, extra = loop.outcome(end.endings[i], end.steps[i], cfg.steps, end.drops[i])
        ended = (status, message, end.steps[i], {"batched_seeds": len(cfgs), **extra, **_saving(end)})
        results.append(_result(c, data[i], _seed(end.state[0], i), ended, reporter, i, joint))
    seconds = reporter.seconds()
    return [dataclasses.replace(r, seconds=seconds) for r in results]
