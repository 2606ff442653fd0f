"""Transfer: a learned feature reused for a new link, h' = g' ∘ p, from n fresh samples.

The source is a three-layer run trained jointly on h = g ∘ p. Its first block
g_{u,s,V} (the learned feature) is frozen; only the second block is fitted to h':

    h_θ(x) = g(x) + (1/m2) Σ_j c_j ReLU(a_j g(x) + b_j),   g = the source's g, fixed

- layerwise (Algorithm 1's stage 2): a, b at their initialisation, `steps` steps of ridge
  gradient descent on c over the n samples, rate `lr` (None: 1/L) and decay ξ = `weight_decay`,
  target h' − g (the skip connection carries g). The same step as layer-wise training's stage 2.
- joint: Adam on (a, b, c) at rate `lr` under the joint training's loop and stopping rules
  (train.py); the feature rule watches the fitted h_θ on the first training inputs (g is frozen).

The data: p is the source's (same d, k and the source seed's signs λ), the link is g'
(normalised so E[h'²] = 1), and the n training inputs are fresh: drawn from the transfer
seed's training key folded with TRAIN_STREAM, a stream no run of any seed trains on, so a
transfer from seed 0 at seed 0 does not see the source's training points. The second block's
init, the monitor points and the n_eval evaluation points are the transfer seed's own.

Because g is frozen it is computed once per dataset; every step works on the scalars g(x),
so a transfer costs about as much as the second block's fit on n numbers.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly import targets
from hierpoly.config import TRANSFER, RunConfig, transfer_mismatch
from hierpoly.engine import evaluation, loop, model, train
from hierpoly.engine.data import Data, draw, keys, target
from hierpoly.engine.metrics import mse
from hierpoly.engine.piecewise import relu_sum_fast
from hierpoly.progress import Progress

FIRST_BLOCK = ("u", "s", "V")
TRAIN_STREAM = 1  # fold_in(train key, 1): fresh points beside every run's own training set (which uses the key itself)


def transfer_data(cfg: RunConfig, source: RunConfig) -> Data:
    """The source's feature p (its seed's λ) with the link g', on fresh training, monitor points of cfg.seed."""
    lam = targets.lambdas(keys(source.seed)["lam"], cfg.d)
    tgt, own = target(cfg, lam), keys(cfg.seed)
    x_train, y_train, _ = draw(jax.random.fold_in(own["train"], TRAIN_STREAM), cfg.n, tgt)
    x_test, y_test, p_test = draw(own["test"], cfg.n_test, tgt)
    return Data(x_train, y_train, x_test, y_test, p_test, tgt.lam, float(tgt.C))


# ------------------------------------------------------- the second block on g
def link_loss(second, batch, forward: model.Forward):
    """L̂ of the second block on batch = (g(x), y): the frozen feature's values stand in for x."""
    g, y = batch
    return mse(forward.link_out(second, g), y)


def link_step(state, batch, hyper, forward: model.Forward):
    """One full-batch Adam step on (a, b, c)."""
    return loop.adam_step(link_loss, state, batch, hyper, forward)


def probe_link(state, batch, forward: model.Forward):
    """The fitted h_θ on the first training inputs: what the settling rule watches (g itself is frozen)."""
    return forward.link_out(state[0], batch[0][: loop.PROBE_POINTS])


def _scores(second, monitor, forward: model.Forward):
    g, y, p = monitor
    pred = forward.link_out(second, g)
    return evaluation.monitor_scores(second, g, y, p, predict=lambda *_: (pred, g), forward=forward)


def score_link(state, monitor, forward: model.Forward):
    """Monitor scores of the joint state (second block, Adam state); monitor = (g, y, p) on the monitor points."""
    return _scores(state[0], monitor, forward)


def score_ridge(c, monitor, forward: model.Forward):
    """Monitor scores with c trained; monitor = (second block, g, y, p)."""
    second, *rest = monitor
    return _scores({**second, "c": c}, tuple(rest), forward)


_feature = jax.jit(model.feature_chunked, static_argnames=("sigma1", "chunk"))


def run(
    cfg: RunConfig,
    source: RunConfig,
    first_block: dict,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int | None = None,
) -> loop.TrainResult:
    """Fit the second block of a transfer; see the module docstring.

    Args:
        cfg: the transfer (arch transfer; `config.transfer_config` builds it).
        source: the config whose key is cfg.source.
        first_block: u (m1,), s (m1,), V (m1, d) of the source run, trained.
    Returns:
        a TrainResult like train.run's; its params hold the frozen first block and the fitted second.
    """
    mismatch = transfer_mismatch(cfg, source) if cfg.arch == TRANSFER else f"arch {cfg.arch!r} is not a transfer"
    if mismatch is not None:
        raise ValueError(mismatch)
    reporter = loop.Reporter(1, None if on_progress is None else lambda _, row: on_progress(row))
    data = transfer_data(cfg, source)
    init = model.init(keys(cfg.seed)["init"], cfg)
    frozen = {name: jnp.asarray(first_block[name], jnp.float32) for name in FIRST_BLOCK}
    second = {name: init[name] for name in ("a", "b", "c")}
    forward = model.Forward(cfg.sigma1, relu_sum_fast)
    g_train, g_test = (_feature(frozen, x, cfg.sigma1, model.SAMPLE_CHUNK) for x in (data.x_train, data.x_test))
    reporter.start([data.p_test])
    monitor = (g_test, data.y_test, data.p_test)
    joint = loop.Task(link_step, score_link, forward, probe_link)
    zero_loss = float(np.mean(np.square(np.asarray(data.y_train, np.float32))))
    loop.report_start(joint, loop.adam_state(second), monitor, zero_loss, reporter)
    if cfg.mode == "joint":
        end = loop.run_loop(joint, loop.adam_state(second), (g_train, data.y_train), monitor, {"lr": jnp.float32(cfg.lr)},
                            loop.rules_for(cfg), reporter, should_stop, chunk_steps=chunk)
        status, message, extra = loop.outcome(end.endings[0], end.steps[0], cfg.steps, end.drops[0])
        second, steps = end.state[0], end.steps[0]
    else:
        second, status, message, steps, extra = _fit_c(cfg, second, g_train, data, monitor, reporter, should_stop, chunk)
    params = {**frozen, **second}
    return _result(cfg, data, params, (status, message, steps, extra), reporter, forward, g_test)


def _fit_c(cfg: RunConfig, second, g_train, data: Data, monitor, reporter, should_stop, chunk):
    """Algorithm 1's stage 2 on the frozen g: ridge GD in c, target y − g."""
    psi = jax.nn.relu(g_train[:, None] * second["a"] + second["b"]) / cfg.m2
    lr = cfg.lr or train.largest_stable_lr(psi, cfg.weight_decay)
    extra = {"lr": lr, "xi": cfg.weight_decay, "T": cfg.steps}
    end = loop.run_loop(loop.Task(train.ridge_step, score_ridge, model.Forward(cfg.sigma1, relu_sum_fast)), second["c"],
                        (psi, data.y_train - g_train), (second, *monitor), {"lr": jnp.float32(lr), "xi": jnp.float32(cfg.weight_decay)},
                        loop.rules(cfg.steps), reporter, should_stop, chunk_steps=chunk)
    second = {**second, "c": end.state}
    ending, steps = end.endings[0], end.steps[0]
    if ending == "diverged":
        return second, "diverged", f"the loss became non-finite at step {steps}", steps, extra
    if ending == "cancelled":
        return second, "cancelled", f"cancelled at step {steps}", steps, extra
    return second, "done", f"ridge GD in c on the frozen feature: T = {cfg.steps} steps", steps, extra


def _result(cfg: RunConfig, data: Data, params, ended: tuple, reporter: loop.Reporter, forward, g_test) -> loop.TrainResult:
    status, message, steps, extra = ended
    metrics, samples = {}, {}
    if status == "done":
        reporter.phase("evaluating", steps, 0.0)
        g_train = _feature(params, data.x_train, cfg.sigma1, model.SAMPLE_CHUNK)
        pred_train = forward.link_out(params, g_train)
        metrics = {
            "train_loss": float(jnp.mean((pred_train - data.y_train) ** 2)),
            # the tail: where g leaves its training range the fitted link only extrapolates
            **evaluation.population_metrics(cfg, data.lam, evaluation.network_output, params, forward,
                                            on_fraction=lambda f: reporter.phase("evaluating", steps, f),
                                            g_range=(float(jnp.min(g_train)), float(jnp.max(g_train)))),
        }
        samples = evaluation.samples(forward.link_out(params, g_test), g_test, data)
    return loop.TrainResult(
        status=status, message=message, steps=steps, metrics=metrics, history=reporter.histories[0], samples=samples,
        params={k: np.asarray(v) for k, v in params.items()}, seconds=reporter.seconds(), data_C=data.C, extra=extra,
    )
