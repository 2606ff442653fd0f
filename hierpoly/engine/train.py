"""Joint (Figure 2) and layer-wise (Algorithm 1) training, in compiled chunks.

Both trainers run `chunk` steps at a time as one `jax.lax.scan` inside `jit`;
between chunks the host evaluates the test metrics, reports progress, stops on
a non-finite loss (status ``diverged``) and honours cancellation. Nothing here
knows about Streamlit or the store.

Training losses are mean squared errors, L̂(θ) = (1/n) Σ (h_θ(x) - y)^2. The test
loss is the same on fresh points divided by their mean y^2 (`metrics.relative_test_loss`:
the zero predictor scores 1); feature correlation is Pearson's between g and p there.
Progress rows measure both on the `n_test` monitor points (8192); a finished run's
metrics use `n_eval` = 2^20 more fresh points, streamed (`population_metrics`), because
h's heavy tail makes a few thousand points read the loss low by up to half (metrics.py).

Joint: all of (u, s, V, a, b, c) with Adam at one base rate (µP, model.py), full
batch. Convergence rule: stop at the step cap, or when the best train loss has
improved by less than `tol` (relative) over the last `patience` steps.

Layer-wise **[reconstructed split]**: n is split in half, D1 = first ⌊n/2⌋
samples, D2 = the rest. Stage 1: T1 steps of GD on u over L̂_{D1} with weight
decay, u ← u - η1 (∇L̂_{D1}(u) + ξ u), with c = 0 so h_θ = g. Stage 2: T2 steps
of GD on c over L̂_{D2}, likewise. a, b, s, V stay fixed. Each stage is a ridge
regression whose minimiser is `ridge_solution`. `lr = None` means η = 1/L with
L the largest eigenvalue of the stage's Hessian (the largest stable step).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hierpoly import targets
from hierpoly.config import RunConfig
from hierpoly.engine import model
from hierpoly.engine.metrics import SUM_NAMES, chunk_sums, from_sums, mse, pearson, relative_test_loss
from hierpoly.engine.piecewise import relu_sum_fast

SAMPLE_ROWS = 2000  # test points kept for plots
EVAL_CHUNK = 65536  # evaluation points drawn and scored at a time (memory stays flat in n_eval)


@dataclass(frozen=True)
class Data:
    """Training and test data of one run, drawn from the run's seed."""

    x_train: jax.Array  # (n, d)
    y_train: jax.Array  # (n,)
    x_test: jax.Array  # (n_test, d)
    y_test: jax.Array  # (n_test,)
    p_test: jax.Array  # (n_test,) true feature on the test points
    lam: jax.Array  # (d,) signs of the feature
    C: float  # exact link normalisation


@dataclass(frozen=True)
class Progress:
    """One row of a run's history, reported between chunks."""

    step: int
    train_loss: float
    test_loss: float
    feature_corr: float
    seconds: float


@dataclass
class TrainResult:
    """What `run` returns; `status` is done, diverged or cancelled."""

    status: str
    message: str
    steps: int
    metrics: dict
    history: list[Progress]
    samples: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    seconds: float
    data_C: float = 0.0
    extra: dict = field(default_factory=dict)


class Cancelled(Exception):
    pass


def keys(seed: int) -> dict[str, jax.Array]:
    """The run's PRNG keys, split once: λ, init, train data, test data; and the final evaluation's."""
    k_lam, k_init, k_train, k_test = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {"lam": k_lam, "init": k_init, "train": k_train, "test": k_test, "eval": jax.random.fold_in(k_test, 1)}


def target_fn(cfg: RunConfig, lam: jax.Array) -> tuple[Callable, float]:
    """x ↦ (h(x), p(x)) for this config and signs λ, and the exact C."""
    coefs = targets.parse_link(cfg.link)
    n_minus = int(np.sum(np.asarray(lam) < 0))
    C = targets.normalisation(cfg.d, cfg.k, coefs, n_minus).C

    def fn(x):
        p = targets.feature(x, lam, cfg.k)
        return targets.link(p, coefs, C), p

    return fn, C


def make_data(cfg: RunConfig) -> Data:
    """Draw λ, the training set and the test set (the test set does not depend on n)."""
    k = keys(cfg.seed)
    lam = targets.lambdas(k["lam"], cfg.d)
    fn, C = target_fn(cfg, lam)
    x_train = jax.random.normal(k["train"], (cfg.n, cfg.d))
    x_test = jax.random.normal(k["test"], (cfg.n_test, cfg.d))
    y_train, _ = fn(x_train)
    y_test, p_test = fn(x_test)
    return Data(x_train, y_train, x_test, y_test, p_test, lam, C)


# ------------------------------------------------------------------- evaluation
@partial(jax.jit, static_argnames=("sigma1", "relu_sum"))
def evaluate(params, x, y, p, *, sigma1: str, relu_sum=relu_sum_fast):
    """Test loss and feature correlation."""
    g = model.feature_chunked(params, x, sigma1)
    pred = model.link_out(params, g, relu_sum)
    return relative_test_loss(pred, y), pearson(g, p)


def population_metrics(cfg: RunConfig, lam, predict: Callable) -> dict[str, float]:
    """Test loss and feature correlation over cfg.n_eval fresh points, EVAL_CHUNK at a time.

    `predict(x)` returns (h_θ(x), the learned feature g(x)) for a (chunk, d) array. The
    points are the run's own (key "eval", chunk i from fold_in(key, i)), so the numbers
    are reproducible and the same for every architecture of a seed.
    """
    fn, _ = target_fn(cfg, lam)
    key, sums = keys(cfg.seed)["eval"], np.zeros(len(SUM_NAMES))
    for i, start in enumerate(range(0, cfg.n_eval, EVAL_CHUNK)):
        x = jax.random.normal(jax.random.fold_in(key, i), (min(EVAL_CHUNK, cfg.n_eval - start), cfg.d))
        y, p = fn(x)
        pred, g = predict(x)
        sums += np.asarray(chunk_sums(jnp.asarray(pred, jnp.float32), y, jnp.asarray(g, jnp.float32), p), np.float64)
    test_loss, corr = from_sums(sums, cfg.n_eval)
    return {"test_loss": test_loss, "feature_corr": corr}


@partial(jax.jit, static_argnames=("sigma1", "relu_sum"))
def predict(params, x, *, sigma1: str, relu_sum=relu_sum_fast):
    """(h_θ(x), g(x)) of the three-layer network."""
    g = model.feature_chunked(params, x, sigma1)
    return model.link_out(params, g, relu_sum), g


def samples(params, data: Data, sigma1: str, relu_sum=relu_sum_fast) -> dict[str, np.ndarray]:
    """The first SAMPLE_ROWS test points: p(x), g(x), h(x), h_θ(x)."""
    x = data.x_test[:SAMPLE_ROWS]
    g = model.feature(params, x, sigma1)
    return {
        "p": np.asarray(data.p_test[:SAMPLE_ROWS], np.float32),
        "g": np.asarray(g, np.float32),
        "h": np.asarray(data.y_test[:SAMPLE_ROWS], np.float32),
        "h_pred": np.asarray(model.link_out(params, g, relu_sum), np.float32),
    }


# ------------------------------------------------------------------------ joint
def joint_optimizer(cfg: RunConfig) -> optax.GradientTransformation:
    """Adam at one µP base rate for every parameter (see model.py)."""
    return optax.adam(cfg.lr)


def joint_loss(params, x, y, sigma1: str, relu_sum=relu_sum_fast, sample_chunk: int | None = model.SAMPLE_CHUNK):
    """L̂(θ). Defaults are the fast path; relu_sum=model.relu_sum_dense, sample_chunk=None is the reference."""
    return mse(model.apply(params, x, sigma1, relu_sum, sample_chunk), y)


@partial(jax.jit, static_argnames=("tx", "sigma1", "n_steps", "relu_sum", "sample_chunk"))
def joint_chunk(
    params, opt_state, x, y, *, tx, sigma1: str, n_steps: int, relu_sum=relu_sum_fast, sample_chunk=model.SAMPLE_CHUNK
):
    """n_steps of full-batch Adam; returns the new state and the loss before each step."""

    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(joint_loss)(params, x, y, sigma1, relu_sum, sample_chunk)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), None, length=n_steps)
    return params, opt_state, losses


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


@partial(jax.jit, static_argnames=("n_steps",))
def ridge_gd_chunk(w, phi, y, lr, xi, *, n_steps: int):
    """n_steps of w ← w - lr (∇(1/n)||phi w - y||^2 + ξ w); returns losses before each step."""

    def step(w, _):
        r = phi @ w - y
        loss = jnp.mean(r**2)
        grad = 2.0 * phi.T @ r / phi.shape[0] + xi * w
        return w - lr * grad, loss

    return jax.lax.scan(step, w, None, length=n_steps)


# --------------------------------------------------------------------------- run
def device_info() -> dict:
    dev = jax.devices()[0]
    return {"backend": jax.default_backend(), "device_kind": dev.device_kind, "device_count": jax.device_count()}


def run(
    cfg: RunConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int = 100,
    relu_sum=relu_sum_fast,
) -> TrainResult:
    """Train one config to completion; see the module docstring for the rules."""
    if cfg.arch != "three_layer":
        raise ValueError(f"train.run trains the three-layer network; arch {cfg.arch!r} is a baseline (baselines.run)")
    t0 = time.perf_counter()
    data = make_data(cfg)
    params = model.init(keys(cfg.seed)["init"], cfg)
    history: list[Progress] = []
    ctx = _RunContext(cfg, data, on_progress, should_stop, history, t0, relu_sum)
    ctx.record(0, float(mse(jnp.zeros_like(data.y_train), data.y_train)), params)
    if cfg.mode == "joint":
        params, status, message, steps = _run_joint(ctx, params, chunk)
    else:
        params, status, message, steps = _run_layerwise(ctx, params, chunk)
    return _result(cfg, data, params, status, message, steps, history, time.perf_counter() - t0, ctx.extra, relu_sum)


def _result(cfg, data: Data, params, status, message, steps, history, seconds, extra, relu_sum) -> TrainResult:
    """The final metrics and samples of a finished run (metrics only when it is done)."""
    metrics = {}
    if status == "done":
        metrics = {
            "train_loss": float(joint_loss(params, data.x_train, data.y_train, cfg.sigma1, relu_sum)),
            **population_metrics(cfg, data.lam, partial(predict, params, sigma1=cfg.sigma1, relu_sum=relu_sum)),
        }
    return TrainResult(
        status=status,
        message=message,
        steps=steps,
        metrics=metrics,
        history=history,
        samples=samples(params, data, cfg.sigma1, relu_sum) if status == "done" else {},
        params={k: np.asarray(v) for k, v in params.items()},
        seconds=seconds,
        data_C=data.C,
        extra=extra,
    )


@dataclass
class _RunContext:
    cfg: RunConfig
    data: Data
    on_progress: Callable | None
    should_stop: Callable | None
    history: list
    t0: float
    relu_sum: Callable
    extra: dict = dataclasses.field(default_factory=dict)

    def record(self, step: int, train_loss: float, params) -> None:
        test_loss, corr = evaluate(
            params, self.data.x_test, self.data.y_test, self.data.p_test, sigma1=self.cfg.sigma1, relu_sum=self.relu_sum
        )
        row = Progress(step, float(train_loss), float(test_loss), float(corr), time.perf_counter() - self.t0)
        self.history.append(row)
        if self.on_progress is not None:
            self.on_progress(row)

    def stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())


def _first_nonfinite(losses: np.ndarray) -> int | None:
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.size else None


def _run_joint(ctx: _RunContext, params, chunk: int):
    cfg, data = ctx.cfg, ctx.data
    tx = joint_optimizer(cfg)
    opt_state = tx.init(params)
    best, best_at, step = math.inf, 0, 0
    while step < cfg.steps:
        if ctx.stop_requested():
            return params, "cancelled", f"cancelled at step {step}", step
        n_steps = min(chunk, cfg.steps - step)
        new_params, opt_state, losses = joint_chunk(
            params, opt_state, data.x_train, data.y_train, tx=tx, sigma1=cfg.sigma1, n_steps=n_steps, relu_sum=ctx.relu_sum
        )
        losses = np.asarray(losses)
        bad = _first_nonfinite(losses)
        if bad is not None or not all(np.isfinite(np.asarray(v)).all() for v in new_params.values()):
            at = step + (bad if bad is not None else n_steps)
            return params, "diverged", f"training loss became non-finite at step {at}", at
        params, step = new_params, step + n_steps
        ctx.record(step, losses[-1], params)
        # plateau rule: the best loss must drop by > tol (relative) within `patience` steps
        chunk_best = float(losses.min())
        if chunk_best < best * (1 - cfg.tol):
            best, best_at = chunk_best, step
        elif step - best_at >= cfg.patience:
            ctx.extra["stopped_by"] = "plateau"
            return params, "done", f"converged: train loss plateaued at step {step}", step
    ctx.extra["stopped_by"] = "step cap"
    return params, "done", f"reached the step cap of {cfg.steps}", step


def _run_layerwise(ctx: _RunContext, params, chunk: int):
    cfg, data = ctx.cfg, ctx.data
    half = cfg.n // 2
    x1, y1, x2, y2 = data.x_train[:half], data.y_train[:half], data.x_train[half:], data.y_train[half:]
    xi = cfg.weight_decay
    # Stage 1: ridge in u over D1 with c = 0 (h_θ = g).
    phi1 = model.first_features(params, x1, cfg.sigma1) / cfg.m1
    lr1 = cfg.lr or largest_stable_lr(phi1, xi)
    u, done = params["u"], 0
    while done < cfg.steps:
        if ctx.stop_requested():
            return {**params, "u": u}, "cancelled", f"cancelled at stage 1 step {done}", done
        n_steps = min(chunk, cfg.steps - done)
        new_u, losses = ridge_gd_chunk(u, phi1, y1, lr1, xi, n_steps=n_steps)
        bad = _first_nonfinite(np.asarray(losses))
        if bad is not None or not np.isfinite(np.asarray(new_u)).all():
            at = done + (bad if bad is not None else n_steps)
            return {**params, "u": u}, "diverged", f"stage 1 loss became non-finite at step {at}", at
        u, done = new_u, done + n_steps
        ctx.record(done, float(losses[-1]), {**params, "u": u})
    params = {**params, "u": u}
    # Stage 2: ridge in c over D2, target y - g (the skip connection carries g).
    g2 = model.feature(params, x2, cfg.sigma1)
    psi2 = jax.nn.relu(g2[:, None] * params["a"] + params["b"]) / cfg.m2
    lr2 = cfg.lr or largest_stable_lr(psi2, xi)
    c, done2 = params["c"], 0
    while done2 < cfg.steps:
        if ctx.stop_requested():
            return {**params, "c": c}, "cancelled", f"cancelled at stage 2 step {done2}", done + done2
        n_steps = min(chunk, cfg.steps - done2)
        new_c, losses = ridge_gd_chunk(c, psi2, y2 - g2, lr2, xi, n_steps=n_steps)
        bad = _first_nonfinite(np.asarray(losses))
        if bad is not None or not np.isfinite(np.asarray(new_c)).all():
            at = done + done2 + (bad if bad is not None else n_steps)
            return {**params, "c": c}, "diverged", f"stage 2 loss became non-finite at step {at}", at
        c, done2 = new_c, done2 + n_steps
        ctx.record(done + done2, float(losses[-1]), {**params, "c": c})
    ctx.extra.update({"lr1": lr1, "lr2": lr2})
    return {**params, "c": c}, "done", f"ran T1 = T2 = {cfg.steps} steps", done + done2


# ----------------------------------------------------------------- seed batching
def seeds_batchable(cfgs: list[RunConfig]) -> bool:
    """True when `run_seeds` can train `cfgs` as one program: joint three-layer configs differing only in seed."""
    if len(cfgs) < 2 or any(c.arch != "three_layer" or c.mode != "joint" for c in cfgs):
        return False
    base = dataclasses.replace(cfgs[0], seed=0)
    return all(dataclasses.replace(c, seed=0) == base for c in cfgs)


@partial(jax.jit, static_argnames=("tx", "sigma1", "n_steps", "relu_sum", "sample_chunk"))
def joint_chunk_seeds(
    params, opt_state, x, y, active, *, tx, sigma1: str, n_steps: int, relu_sum=relu_sum_fast,
    sample_chunk=model.SAMPLE_CHUNK,
):
    """`joint_chunk` for seeds stacked on a leading axis; a seed whose `active` is False keeps its state."""

    def one_seed(params, opt_state, x, y, active):
        new_params, new_opt_state, losses = joint_chunk(
            params, opt_state, x, y, tx=tx, sigma1=sigma1, n_steps=n_steps, relu_sum=relu_sum,
            sample_chunk=sample_chunk,
        )
        keep = partial(jax.tree_util.tree_map, lambda new, old: jnp.where(active, new, old))
        return keep(new_params, params), keep(new_opt_state, opt_state), losses

    return jax.vmap(one_seed)(params, opt_state, x, y, active)


@partial(jax.jit, static_argnames=("sigma1", "relu_sum"))
def _evaluate_seeds(params, x, y, p, *, sigma1: str, relu_sum):
    return jax.vmap(partial(evaluate, sigma1=sigma1, relu_sum=relu_sum))(params, x, y, p)


def _where_seeds(keep: jax.Array, new, old):
    """Per seed (leading axis): the new leaves where keep, else the old."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _seed(tree, i: int):
    return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


def run_seeds(
    cfgs: list[RunConfig],
    on_progress: Callable[[int, Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int = 100,
    relu_sum=relu_sum_fast,
) -> list[TrainResult]:
    """Train configs that differ only in `seed` as one compiled program (vmap over seeds).

    Each seed follows exactly the rules of `run` (plateau stop, divergence, step cap)
    and gets its own result; `on_progress(i, row)` receives rows of `cfgs[i]`. The batch
    steps until every seed has stopped; a stopped seed's parameters and optimiser state
    are frozen inside the compiled chunk (`jnp.where` on a per-seed active mask), so its
    result is the state at its own stopping step. `seconds` is the batch's wall time.
    Configs that cannot be batched (see `seeds_batchable`) run one after another with `run`.
    """
    if not seeds_batchable(cfgs):
        return [
            run(c, None if on_progress is None else partial(on_progress, i), should_stop, chunk, relu_sum)
            for i, c in enumerate(cfgs)
        ]
    t0 = time.perf_counter()
    cfg, n_seeds = cfgs[0], len(cfgs)
    data = [make_data(c) for c in cfgs]
    stack = lambda name: jnp.stack([getattr(d, name) for d in data])
    x_train, y_train, x_test, y_test, p_test = map(stack, ("x_train", "y_train", "x_test", "y_test", "p_test"))
    params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[model.init(keys(c.seed)["init"], c) for c in cfgs])
    tx = joint_optimizer(cfg)
    opt_state = jax.vmap(tx.init)(params)
    histories: list[list[Progress]] = [[] for _ in cfgs]

    def record(step: int, train_losses, params, seeds) -> None:
        test_loss, corr = _evaluate_seeds(params, x_test, y_test, p_test, sigma1=cfg.sigma1, relu_sum=relu_sum)
        test_loss, corr = np.asarray(test_loss), np.asarray(corr)
        for i in seeds:
            row = Progress(step, float(train_losses[i]), float(test_loss[i]), float(corr[i]), time.perf_counter() - t0)
            histories[i].append(row)
            if on_progress is not None:
                on_progress(i, row)

    record(0, [float(mse(jnp.zeros_like(d.y_train), d.y_train)) for d in data], params, range(n_seeds))
    # per seed: None while training, else (status, message, steps, stopped_by)
    outcome: list[tuple | None] = [None] * n_seeds
    best, best_at, step = [math.inf] * n_seeds, [0] * n_seeds, 0
    while step < cfg.steps and any(o is None for o in outcome):
        running = [i for i in range(n_seeds) if outcome[i] is None]
        if should_stop is not None and should_stop():
            for i in running:
                outcome[i] = ("cancelled", f"cancelled at step {step}", step, None)
            break
        n_steps = min(chunk, cfg.steps - step)
        active = jnp.array([o is None for o in outcome])
        new_params, new_opt_state, losses = joint_chunk_seeds(
            params, opt_state, x_train, y_train, active, tx=tx, sigma1=cfg.sigma1, n_steps=n_steps, relu_sum=relu_sum
        )
        losses = np.asarray(losses)  # (n_seeds, n_steps)
        finite = np.all([np.isfinite(np.asarray(v)).reshape(n_seeds, -1).all(axis=1) for v in new_params.values()], axis=0)
        step += n_steps
        accept = np.array([o is None for o in outcome])
        for i in running:
            bad = _first_nonfinite(losses[i])
            if bad is not None or not finite[i]:
                at = step - n_steps + (bad if bad is not None else n_steps)
                outcome[i] = ("diverged", f"training loss became non-finite at step {at}", at, None)
                accept[i] = False  # keep the parameters from before the chunk, as `run` does
        keep = jnp.asarray(accept)
        params, opt_state = _where_seeds(keep, new_params, params), _where_seeds(keep, new_opt_state, opt_state)
        still = [i for i in running if outcome[i] is None]
        record(step, losses[:, -1], params, still)
        for i in still:  # the plateau rule of `run`, per seed
            chunk_best = float(losses[i].min())
            if chunk_best < best[i] * (1 - cfg.tol):
                best[i], best_at[i] = chunk_best, step
            elif step - best_at[i] >= cfg.patience:
                outcome[i] = ("done", f"converged: train loss plateaued at step {step}", step, "plateau")
    seconds = time.perf_counter() - t0
    results = []
    for i, c in enumerate(cfgs):
        status, message, steps, stopped_by = outcome[i] or ("done", f"reached the step cap of {cfg.steps}", step, "step cap")
        extra = {"batched_seeds": n_seeds} | ({"stopped_by": stopped_by} if stopped_by else {})
        results.append(_result(c, data[i], _seed(params, i), status, message, steps, histories[i], seconds, extra, relu_sum))
    return results
