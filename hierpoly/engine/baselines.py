"""Figure 2's baselines, trained on the same data as the three-layer network.

A baseline config is the three-layer config with ``arch`` replaced, so it sees the
same seed, hence the same signs λ, training set and test set (``data.make_data``),
and reports the same metrics and progress rows as ``train.run``.

kernel **[our construction of the paper's comparison]**
    Random features: the first layer's features φ_i(x) = σ1(v_i·x + s_i) at
    initialisation (``model.init``, the same draw as the network's), fitted to h
    directly by ridge regression — Algorithm 1's stage 1 alone, with no second
    block. Width ``kernel_width(cfg) = max(cfg.m1, C(d+k, k))``: with σ1 = cube and
    k = 3, C(d+3, 3) generic features span every polynomial of degree ≤ 3.
    Floor: the predictor is a polynomial of degree ≤ 3, so its test loss is at least
    1 − ||P_{≤3} h||², however large n is. For k = 3 that is ``kernel_floor(d, 3)``
    (≈ 0.73–0.81 for d = 4..20); for k = 2, h = C p³ is even, so P_{≤3} h = P_{≤2} h and
    the floor is ``kernel_floor(d, 2)``; for k = 1, h is itself a cubic: no floor above 0.
    The fit is closed form (float64): the relative ridge penalty is picked from
    RIDGE_GRID by K-fold cross-validation (CV_FOLDS contiguous folds of the training
    set, mean validation MSE), then refitted on all of it — the best this predictor
    can do, not a straw man. No gradient steps: progress has two rows (step 0: the
    zero predictor; step 1: the fit).

two_layer **[our construction]**
    A ReLU network f(x) = (1/m) Σ_j a_j ReLU(w_j·x + b_j), the same µP parametrisation as
    the network's first block (model.py) with σ1 = ReLU: readout a = 0 at init under the
    1/m multiplier, w_j uniform on the sphere of radius 1/√2, b_j ~ N(0, 1/2) (stored as u,
    V, s); the config's σ1 does not apply. Width ``two_layer_width(cfg)``: about the
    three-layer network's parameter count. All of (a, w, b) are trained by full-batch Adam
    under the joint training's loop and stopping rules (``loop.rules_for``). A holdout picks
    both the rate and the stopping step, as one would for a baseline meant to win: each rate
    of cfg.lr × TUNING_RATES trains on the first TUNING_FIT of the training set under the
    rules plus the holdout rule (``loop``: the plain MSE on the rest, scored along the way;
    the trial ends ``patience`` steps after its lowest), progress phase "tuning". The run
    then trains on all n at the rate with the lowest holdout loss, for the steps at which
    it was reached (step 0, the zero predictor, included): ``stopped_by`` is "holdout".
    Trained to its cap instead, this net interpolates the heavy-tailed h and does worse
    than predicting 0.

For both, ``feature_corr`` is the Pearson correlation between the predictor's
output and the true feature p(x) (a baseline has no separate learned feature), and
the samples' ``g`` column holds that output as well. Final metrics are over the same
n_eval evaluation points as the network's (``evaluation.population_metrics``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly import targets
from hierpoly.config import RunConfig, poly_space_dim, two_layer_width  # noqa: F401  (width: re-exported)
from hierpoly.engine import evaluation, loop, model
from hierpoly.engine.data import Data, keys, make_data
from hierpoly.engine.loop import TrainResult
from hierpoly.engine.metrics import mse, pearson, relative_test_loss
from hierpoly.progress import Progress

RIDGE_GRID = tuple(10.0 ** (e / 2) for e in range(-24, 9))  # 1e-12 .. 1e4 in half-decades, relative (ridge_scale)
CV_FOLDS = 5  # contiguous folds of the training set that pick the ridge penalty
TUNING_RATES = (0.1, 0.3, 1.0, 3.0)  # the two-layer rates tried, as multiples of cfg.lr (1e-3 .. 3e-2 by default)
TUNING_FIT = 0.8  # share of the training set the tuning trials train on; the rest scores them
_ROWS = 8192  # rows of features built at a time (memory)


def kernel_width(cfg: RunConfig) -> int:
    """Random features used by the kernel baseline: enough to span degree ≤ k polynomials."""
    return max(cfg.m1, poly_space_dim(cfg.d, cfg.k))


def low_degree_coefficients(d: int, k: int = 3) -> np.ndarray:
    """c_0..c_k with P_{≤k} p³ = Σ_l λ_l Σ_j c_j h_j(x_l), exactly (the cubic link's projection).

    Expanding p³ = Σ_{i,j,l} λ_iλ_jλ_l h_k(x_i)h_k(x_j)h_k(x_l), only i = j = l and the
    pairs (two equal indices, the third l apart: 3(d-1) of them per l, where h_k(x_i)²
    contributes its mean 1) have components of degree ≤ k; all three apart have degree 3k.
    So c_j = E[h_k³ h_j] for j < k and c_k = E[h_k⁴] + 3(d-1).
    """

    def moment(*degrees):  # E[Π h_j(z)] exactly, through Gaussian moments
        poly = np.array([1.0])
        for j in degrees:
            coefs = np.array(targets.hermite_coefficients(j), float) / math.sqrt(math.factorial(j))
            poly = np.polynomial.polynomial.polymul(poly, coefs)
        return sum(c * (0 if i % 2 else math.prod(range(i - 1, 0, -2))) for i, c in enumerate(poly))

    out = np.array([moment(k, k, k, j) for j in range(k + 1)])
    out[k] += 3 * (d - 1)
    return out


def best_low_degree(x, lam, k: int, C: float):
    """P_{≤k} h(x) for h = C p³: the best predictor of degree ≤ k, (n,)."""
    coefs = low_degree_coefficients(x.shape[-1], k)
    return C * sum(c * (targets.hermite(j, x) @ lam) for j, c in enumerate(coefs))


def kernel_floor(d: int, k: int = 3, link: str = "cubic", n_minus: int = 0) -> float:
    """Exact 1 − ||P_{≤k} h||² for h = C p³ of feature degree k: the lowest test loss of a degree-≤k predictor.

    The kernel baseline (degree ≤ 3) is bounded below by kernel_floor(d, 3) for k = 3 and by
    kernel_floor(d, 2) for k = 2 (h is even there, so P_{≤3} h = P_{≤2} h); for k = 1, h is a cubic.

    The j ≥ 1 terms of ``low_degree_coefficients`` are orthonormal across l; the constant
    (j = 0, even k only) adds up to c_0 Σ_l λ_l. Only the paper's cubic link is supported.
    Note that with heavy tails a test set of a few thousand points underestimates every
    loss (E[h²] = 1 is carried by rare large values): compare on the same points instead,
    with ``best_low_degree``.
    """
    if targets.canonical_link(link) != "cubic":
        raise ValueError(f"kernel_floor knows only the cubic link, got {link!r}")
    C = targets.normalisation(d, k, targets.LINK_PRESETS["cubic"], n_minus if k % 2 == 0 else 0).C
    coefs = low_degree_coefficients(d, k)
    energy = (coefs[0] * (d - 2 * n_minus)) ** 2 + d * float(np.sum(coefs[1:] ** 2))
    return 1.0 - C**2 * energy


def run(
    cfg: RunConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int | None = None,
    checkpoint: Callable[[str], loop.Checkpointing] | None = None,
) -> TrainResult:
    """Train the baseline named by ``cfg.arch`` (kernel or two_layer) on the run's data.

    checkpoint: the two-layer baseline's `loop.Checkpointing` for each of its loops by name (each tuning trial
    ``trial<i>``, then ``final``): a finished trial's saved end is read back instead of trained again, so a
    stopped run resumes inside the trial or the final run it was in. The kernel's closed form keeps none.
    """
    if cfg.arch not in ("kernel", "two_layer"):
        raise ValueError(f"baselines.run handles kernel and two_layer, got arch {cfg.arch!r}")
    reporter = loop.Reporter(1, None if on_progress is None else lambda _, row: on_progress(row))
    data = make_data(cfg)
    reporter.start([data.p_test])
    if cfg.arch == "kernel":
        return _run_kernel(cfg, data, reporter, should_stop)
    return _run_two_layer(cfg, data, reporter, should_stop, chunk, checkpoint or (lambda part: None))


# ------------------------------------------------------------------------ shared
def _report(reporter: loop.Reporter, step: int, train_loss, pred_test, data: Data) -> None:
    """A history row of a predictor whose output on the monitor points is `pred_test` (it stands in for g)."""
    pred_test = np.asarray(pred_test, np.float32)
    test_loss, corr = relative_test_loss(pred_test, data.y_test), pearson(pred_test, data.p_test)
    reporter.row(0, step, train_loss, test_loss, corr, pred_test[: evaluation.SNAPSHOT_POINTS])


def _result(cfg, ended: tuple, params, train_loss, pred_test, data: Data, reporter, metrics_of) -> TrainResult:
    """`metrics_of(on_fraction)`: the population metrics, needed only when the run is done."""
    status, message, steps, extra = ended
    metrics, samples = {}, {}
    if status == "done":
        reporter.phase("evaluating", steps, 0.0)
        on_fraction = lambda f: reporter.phase("evaluating", steps, f)  # noqa: E731
        metrics = {"train_loss": float(train_loss), **metrics_of(on_fraction)}
        samples = evaluation.samples(pred_test, pred_test, data)  # the output stands in for g
    return TrainResult(
        status=status, message=message, steps=steps, metrics=metrics, history=reporter.histories[0], samples=samples,
        params={k: np.asarray(v) for k, v in params.items()}, seconds=reporter.seconds(), data_C=data.C,
        extra={"baseline": cfg.arch, **extra},
    )


def _first_block(cfg: RunConfig, width: int) -> dict[str, jax.Array]:
    """(u, s, V) of model.init for this seed at the given width; u = 0."""
    params = model.init(keys(cfg.seed)["init"], dataclasses.replace(cfg, m1=width))
    return {name: params[name] for name in ("u", "s", "V")}


# ------------------------------------------------------------------------ kernel
class Moments(NamedTuple):
    """What a ridge fit and its validation need of a block of rows: φᵀφ, φᵀy, yᵀy and the row count."""

    G: np.ndarray
    b: np.ndarray
    yy: float
    rows: int


def fold_bounds(n: int, folds: int = CV_FOLDS) -> list[tuple[int, int]]:
    """[start, stop) of contiguous folds of n rows: `folds` of them, or n of one row each when n < folds."""
    edges = np.linspace(0, n, min(folds, n) + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def fold_moments(params, x, y, sigma1: str, bounds) -> list[Moments]:
    """The `Moments` of each fold: one pass over the rows, in float64."""
    out = []
    for start, stop in bounds:
        G, b = _gram(params, x[start:stop], y[start:stop], sigma1)
        y_fold = np.asarray(y[start:stop], np.float64)
        out.append(Moments(G, b, float(y_fold @ y_fold), stop - start))
    return out


def ridge_scale(G: np.ndarray) -> float:
    """The mean feature energy trace(φᵀφ)/m: a relative penalty r means λ = r·ridge_scale (scale-free)."""
    return max(float(np.trace(G)) / G.shape[0], 1e-30)


def ridge_fits(G: np.ndarray, b: np.ndarray, penalties) -> np.ndarray:
    """argmin_w ||φw - y||² + λ||w||² for each λ, as the columns of (m, L): one eigendecomposition of G = φᵀφ."""
    evals, Q = np.linalg.eigh(G)
    lam = np.asarray(penalties, np.float64)[None, :]
    return Q @ ((Q.T @ b)[:, None] / (np.maximum(evals, 0.0)[:, None] + lam))


def cv_curve(folds: list[Moments], relative=RIDGE_GRID) -> np.ndarray:
    """(K, L): each fold's validation MSE for each relative penalty, the fit made on the other folds.

    Gram matrices only: the other folds' are G_all − G_fold, and the fold's squared error
    wᵀG_fold w − 2wᵀb_fold + yᵀy needs no features; one eigendecomposition per fold serves the grid.
    """
    G_all, b_all = sum(f.G for f in folds), sum(f.b for f in folds)
    out = []
    for f in folds:
        G, b = G_all - f.G, b_all - f.b
        W = ridge_fits(G, b, ridge_scale(G) * np.asarray(relative))
        out.append((np.einsum("il,ij,jl->l", W, f.G, W) - 2 * (W.T @ f.b) + f.yy) / f.rows)
    return np.array(out)


def choose_penalty(cfg: RunConfig, params, data: Data) -> tuple[int, np.ndarray, list[Moments], str]:
    """The relative penalty's index in RIDGE_GRID by K-fold CV on the training set, the mean CV curve,
    each fold's moments (they add up to the whole set's) and a note on the folds used."""
    bounds = fold_bounds(cfg.n)
    folds = fold_moments(params, data.x_train, data.y_train, cfg.sigma1, bounds)
    curve = cv_curve(folds).mean(axis=0)
    note = f"{len(bounds)}-fold CV" if len(bounds) == CV_FOLDS else f"n = {cfg.n} < {CV_FOLDS} rows: leave-one-out CV"
    best = int(np.nanargmin(curve)) if np.isfinite(curve).any() else -1
    return best, curve, folds, note


def _gram(params, x, y, sigma1: str) -> tuple[np.ndarray, np.ndarray]:
    """φᵀφ and φᵀy in float64, building φ a block of rows at a time."""
    m = params["V"].shape[0]
    G, b = np.zeros((m, m)), np.zeros(m)
    for start in range(0, x.shape[0], _ROWS):
        phi = np.asarray(model.first_features(params, x[start : start + _ROWS], sigma1), np.float64)
        G += phi.T @ phi
        b += phi.T @ np.asarray(y[start : start + _ROWS], np.float64)
    return G, b


def _predict(params, w: np.ndarray, x, sigma1: str) -> np.ndarray:
    out = [
        np.asarray(model.first_features(params, x[s : s + _ROWS], sigma1), np.float64) @ w
        for s in range(0, x.shape[0], _ROWS)
    ]
    return np.concatenate(out)


def _run_kernel(cfg: RunConfig, data: Data, reporter: loop.Reporter, should_stop) -> TrainResult:
    width = kernel_width(cfg)
    params = _first_block(cfg, width)
    zero_loss, zero_test = np.mean(np.asarray(data.y_train, np.float64) ** 2), np.zeros(cfg.n_test)
    _report(reporter, 0, zero_loss, zero_test, data)
    if should_stop is not None and should_stop():
        return _result(cfg, ("cancelled", "cancelled before the fit", 0, {}), params, zero_loss, zero_test, data, reporter, None)
    best, curve, folds, note = choose_penalty(cfg, params, data)
    G, b = sum(f.G for f in folds), sum(f.b for f in folds)
    w = ridge_fits(G, b, [RIDGE_GRID[best] * ridge_scale(G)])[:, 0] if best >= 0 else np.full(width, np.nan)
    pred_test = _predict(params, w, data.x_test, cfg.sigma1)
    if not (np.isfinite(w).all() and np.isfinite(pred_test).all()):
        ended = ("diverged", "the ridge fit is not finite", 1, {})
        return _result(cfg, ended, params, np.nan, pred_test, data, reporter, None)
    train_loss = float(np.mean((_predict(params, w, data.x_train, cfg.sigma1) - np.asarray(data.y_train, np.float64)) ** 2))
    _report(reporter, 1, train_loss, pred_test, data)
    params = {**params, "u": jnp.asarray(w * width, jnp.float32)}  # model.feature divides by the width
    at_edge = best in (0, len(RIDGE_GRID) - 1)
    extra = {"width": width, "ridge_relative": RIDGE_GRID[best], "ridge_grid": list(RIDGE_GRID),
             "cv_losses": curve.tolist(), "ridge_at_edge": at_edge, "cv": note}
    message = f"closed-form ridge on {width} random features, relative penalty {RIDGE_GRID[best]:.3g} by {note}"
    message += " (at an edge of the grid)" if at_edge else ""

    def output_as_feature(x):  # a baseline has no separate feature: its output stands in
        out = _predict(params, w, x, cfg.sigma1)
        return out, out

    metrics_of = lambda on_fraction: evaluation.host_population_metrics(cfg, data.lam, output_as_feature, on_fraction)  # noqa: E731
    return _result(cfg, ("done", message, 1, extra), params, train_loss, pred_test, data, reporter, metrics_of)


# --------------------------------------------------------------------- two_layer
def first_block_loss(params, batch, forward: model.Forward):
    """Square loss of the first block alone on batch = (x, y, ...): a tuning trial's batch also holds the holdout."""
    return mse(forward.feature(params, batch[0]), batch[1])


def holdout_loss(state, batch, forward: model.Forward):
    """Square loss on a tuning trial's held-out rows, batch = (x, y, x_held, y_held): what the holdout rule watches."""
    return first_block_loss(state[0], batch[2:], forward)


def two_layer_step(state, batch, hyper, forward: model.Forward):
    """One full-batch Adam step on (u, s, V) at rate hyper["lr"]."""
    return loop.adam_step(first_block_loss, state, batch, hyper, forward)


def probe_first_block(state, batch, forward: model.Forward):
    """The output on the first training inputs: what the feature rule watches (it stands in for g)."""
    return evaluation.first_block_output(state[0], batch[0][: loop.PROBE_POINTS], forward)[0]


def score_first_block(state, monitor, forward: model.Forward):
    """Monitor scores of the two-layer state (params, Adam state)."""
    return evaluation.monitor_scores(state[0], *monitor, predict=evaluation.first_block_output, forward=forward)


_first_block_loss = jax.jit(first_block_loss, static_argnames=("forward",))


def tuning_split(n: int) -> int:
    """Rows the tuning trials train on: the first TUNING_FIT of n, leaving at least one row to score them."""
    return min(n - 1, max(1, int(n * TUNING_FIT)))


@dataclass(frozen=True)
class Tuning:
    """The tuning trials: per rate, the lowest holdout loss (inf: the trial diverged), its step and how the trial ended."""

    rates: list[float]
    losses: list[float]
    steps: list[int]
    endings: list[str]

    @property
    def best(self) -> int:
        return int(np.argmin(self.losses))


def _tune(cfg: RunConfig, task: loop.Task, params, data: Data, reporter, should_stop, chunk,
          checkpoint: Callable) -> Tuning | None:
    """Each rate of cfg.lr × TUNING_RATES trained on the first rows under the holdout rule; None when cancelled."""
    fit = tuning_split(cfg.n)
    batch = (data.x_train[:fit], data.y_train[:fit], data.x_train[fit:], data.y_train[fit:])
    trial, rule = dataclasses.replace(task, validate=holdout_loss), loop.rules_for(cfg)
    tuning = Tuning([cfg.lr * f for f in TUNING_RATES], [], [], [])
    for i, lr in enumerate(tuning.rates):
        reporter.phase("tuning", 0, i / len(tuning.rates))

        def show(_, row, i=i):  # a trial's training rows are tuning progress, not the run's history
            if row.is_history:
                reporter.phase("tuning", 0, (i + min(row.step / cfg.steps, 1.0)) / len(tuning.rates))
            elif row.phase == loop.RESUMED:  # the trial went on from its checkpoint
                reporter.phase(loop.RESUMED, row.step)

        end = loop.run_loop(trial, loop.adam_state(params), batch, (data.x_test, data.y_test, data.p_test),
                            {"lr": jnp.float32(lr)}, rule, loop.Reporter(1, show), should_stop, chunk_steps=chunk,
                            checkpoint=checkpoint(f"trial{i}"))
        if end.endings[0] == "cancelled":
            return None
        finite = end.endings[0] != "diverged" and np.isfinite(end.val_best[0])
        tuning.losses.append(end.val_best[0] if finite else np.inf)
        tuning.steps.append(end.val_at[0])
        tuning.endings.append(end.endings[0])
    reporter.phase("tuning", 0, 1.0)
    return tuning


def _run_two_layer(cfg: RunConfig, data: Data, reporter: loop.Reporter, should_stop, chunk, checkpoint) -> TrainResult:
    width, forward = two_layer_width(cfg), model.Forward("relu")
    params = _first_block(cfg, width)
    task, monitor = loop.Task(two_layer_step, score_first_block, forward, probe_first_block), (data.x_test, data.y_test, data.p_test)
    tuned, zero_test = _tune(cfg, task, params, data, reporter, should_stop, chunk, checkpoint), np.zeros(cfg.n_test)
    if tuned is None or not np.isfinite(tuned.losses).any():
        ended = ("cancelled", "cancelled while tuning the learning rate", 0, {}) if tuned is None else (
            "diverged", f"training loss became non-finite in every tuning trial (rates {tuned.rates})", 0, {})
        return _result(cfg, ended, params, np.nan, zero_test, data, reporter, None)
    lr, chosen, trial_ending = tuned.rates[tuned.best], tuned.steps[tuned.best], tuned.endings[tuned.best]
    zero_loss = np.mean(np.square(np.asarray(data.y_train, np.float32)), dtype=np.float32)  # a = 0: the output is 0
    loop.report_start(task, loop.adam_state(params), monitor, zero_loss, reporter)
    state, ending, steps, drops = loop.adam_state(params), "step cap", 0, 0
    if chosen > 0:
        end = loop.run_loop(task, state, (data.x_train, data.y_train), monitor, {"lr": jnp.float32(lr)},
                            loop.rules_for(cfg)._replace(cap=jnp.int32(chosen)), reporter, should_stop, chunk_steps=chunk,
                            checkpoint=checkpoint("final"))
        state, ending, steps, drops = end.state, end.endings[0], end.steps[0], end.drops[0]
    if ending == "step cap" and trial_ending != "step cap":  # it ran the steps the holdout chose
        ending = "holdout"
    params = state[0]
    status, message, extra = loop.outcome(ending, steps, cfg.steps, drops)
    pred_test = loop.scores(task, state, monitor, batched=False)[2][0]

    def metrics_of(on_fraction):
        return evaluation.population_metrics(cfg, data.lam, evaluation.first_block_output, params, forward, on_fraction)

    train_loss = _first_block_loss(params, (data.x_train, data.y_train), forward) if status == "done" else np.nan
    extra = {"width": width, "rates": tuned.rates, "holdout_losses": tuned.losses, "holdout_steps": tuned.steps,
             "tuning_endings": tuned.endings, "lr": lr, **extra}
    message = f"ReLU two-layer, width {width}, rate {lr:.3g} and {chosen} steps chosen on a holdout: {message}"
    return _result(cfg, (status, message, steps, extra), params, train_loss, pred_test, data, reporter, metrics_of)
