"""The one training loop: compiled chunks of steps, the stopping rules written once, progress between chunks.

Every trainer (joint, each stage of layer-wise, the two-layer baseline, seeds batched
together) is a `Task`: a pure step ``(state, batch, hyper, forward) -> (state, loss)``
and a monitor score. `run_loop` calls a compiled chunk (a `lax.while_loop` of steps)
from a plain Python loop that reports progress and honours cancellation between chunks.

The stopping rules live inside the chunk (`advance`), step by step, so where the chunks
end never changes a result: only how often the host hears about it.
- step cap: stop after ``rules.cap`` steps;
- divergence: a non-finite loss or state stops the run at that step, keeping the last
  finite state (status ``diverged``);
- plateau: at the end of every window of PLATEAU_WINDOW steps (and at the cap) the
  window's best loss must beat the best so far by more than ``tol`` (relative), else,
  once ``patience`` steps have passed since the last improvement, stop.
The per-run values (cap, tol, patience, learning rate, ...) are arguments of the
compiled programs, and so is the chunk length: a new run compiles nothing new.

Seeds batched: the same chunk under `jax.vmap`; each seed carries its own clock, a
seed that has stopped keeps its state (the while loop runs until every seed stops).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hierpoly.config import RunConfig
from hierpoly.engine import model
from hierpoly.engine.evaluation import SNAPSHOT_POINTS
from hierpoly.progress import Progress

PLATEAU_WINDOW = 100  # steps between checks of the plateau rule (the stored results were judged every 100 steps)
NO_PLATEAU = 2**30  # a patience that never ends: only the cap and divergence stop the run
CHUNK_SECONDS = 1.0  # work per compiled chunk: progress, cancellation and heartbeats stay this close
MIN_ROWS = 50  # a run's history has at least about this many rows, however short the run

RUNNING, PLATEAU, CAP, DIVERGED = 0, 1, 2, 3
ENDINGS = {PLATEAU: "plateau", CAP: "step cap", DIVERGED: "diverged", RUNNING: "cancelled"}


class Rules(NamedTuple):
    """When to stop: per-run values, arguments of the compiled chunk."""

    cap: jax.Array  # int32 () step cap
    tol: jax.Array  # float32 () relative improvement the plateau rule asks for
    patience: jax.Array  # int32 () steps without improvement before the plateau rule stops


def rules(cap: int, tol: float = 0.0, patience: int = NO_PLATEAU) -> Rules:
    return Rules(jnp.int32(cap), jnp.float32(tol), jnp.int32(patience))


def rules_for(cfg: RunConfig) -> Rules:
    """The stopping rules of a config trained by Adam (joint training, the two-layer baseline)."""
    return rules(cfg.steps, cfg.tol, cfg.patience)


class Clock(NamedTuple):
    """Where a run stands; carried through the steps of a chunk (per seed when batched)."""

    step: jax.Array  # int32 steps taken
    status: jax.Array  # int32: RUNNING, PLATEAU, CAP or DIVERGED
    last_loss: jax.Array  # float32 loss before the latest step
    best: jax.Array  # float32 best window loss so far
    best_at: jax.Array  # int32 step at which it was reached
    window_min: jax.Array  # float32 best loss in the current window


def start_clock(seeds: int | None = None) -> Clock:
    shape = () if seeds is None else (seeds,)
    zeros = jnp.zeros(shape, jnp.int32)
    inf = jnp.full(shape, jnp.inf, jnp.float32)
    return Clock(zeros, zeros, inf, inf, zeros, inf)


def advance(clock: Clock, rules: Rules, loss: jax.Array, state_finite: jax.Array) -> tuple[Clock, jax.Array]:
    """The stopping rules after one step whose loss (before the step) is `loss`; and whether to keep the step."""
    done = clock.step + 1
    loss_finite = jnp.isfinite(loss)
    diverged = ~(loss_finite & state_finite)
    window_min = jnp.minimum(clock.window_min, loss)
    window_end = (done % PLATEAU_WINDOW == 0) | (done >= rules.cap)
    improved = window_end & (window_min < clock.best * (1 - rules.tol))
    best_at = jnp.where(improved, done, clock.best_at)
    plateau = window_end & ~improved & (done - best_at >= rules.patience)
    status = jnp.where(diverged, DIVERGED, jnp.where(plateau, PLATEAU, jnp.where(done >= rules.cap, CAP, RUNNING)))
    return Clock(
        step=jnp.where(diverged, jnp.where(loss_finite, done, clock.step), done),
        status=status.astype(jnp.int32),
        last_loss=loss.astype(jnp.float32),
        best=jnp.where(improved, window_min, clock.best),
        best_at=best_at,
        window_min=jnp.where(window_end, jnp.inf, window_min),
    ), ~diverged


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def _steps(state, clock: Clock, batch, hyper, rules: Rules, n, *, step: Callable, forward: model.Forward):
    """Up to n steps, fewer when the rules stop the run; a rejected (diverged) step leaves the state as it was."""

    def running(carry):
        i, _, clock = carry
        return (i < n) & (clock.status == RUNNING)

    def body(carry):
        i, state, clock = carry
        new_state, loss = step(state, batch, hyper, forward)
        clock, keep = advance(clock, rules, loss, _all_finite(new_state))
        state = jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old), new_state, state)
        return i + 1, state, clock

    _, state, clock = jax.lax.while_loop(running, body, (jnp.int32(0), state, clock))
    return state, clock


chunk = jax.jit(_steps, static_argnames=("step", "forward"))


@partial(jax.jit, static_argnames=("step", "forward"))
def chunk_seeds(state, clock, batch, hyper, rules, n, *, step, forward):
    """`chunk` for seeds stacked on a leading axis of state, clock and batch."""
    one = partial(_steps, step=step, forward=forward)
    return jax.vmap(one, in_axes=(0, 0, 0, None, None, None))(state, clock, batch, hyper, rules, n)


@partial(jax.jit, static_argnames=("score", "forward", "batched"))
def _scores(state, monitor, *, score: Callable, forward: model.Forward, batched: bool):
    one = partial(score, forward=forward)
    return jax.vmap(one)(state, monitor) if batched else one(state, monitor)


def scores(task: Task, state, monitor, batched: bool) -> tuple[np.ndarray, ...]:
    """Per seed: test loss (s,), feature correlation (s,), h_θ and g on the first monitor points (s, rows).

    One compiled program serves every row of a run, its first and its samples.
    """
    out = jax.device_get(_scores(state, monitor, score=task.score, forward=task.forward, batched=batched))
    return tuple(np.asarray(v) if batched else np.asarray(v)[None] for v in out)


@dataclass(frozen=True)
class Task:
    """What the loop trains: module-level functions, so compiled programs are shared across runs."""

    step: Callable  # (state, batch, hyper, forward) -> (state, loss before the step)
    score: Callable  # (state, monitor, forward) -> (test_loss, feature_corr, g on SNAPSHOT_POINTS)
    forward: model.Forward


@dataclass
class Reporter:
    """Turns what the loop sees into `Progress` rows: each seed's history, and `on_progress(seed, row)`."""

    seeds: int
    on_progress: Callable[[int, Progress], None] | None
    t0: float = field(default_factory=time.perf_counter)
    histories: list = field(init=False)

    def __post_init__(self):
        self.histories = [[] for _ in range(self.seeds)]

    def phase(self, name: str, step: int, fraction: float | None = None, seed: int | None = None) -> None:
        """A row saying what the run is doing (starting, compiling, evaluating), for one seed or all."""
        row = Progress(step, np.nan, np.nan, np.nan, self.seconds(), phase=name, fraction=fraction)
        for i in range(self.seeds) if seed is None else (seed,):
            self._send(i, row)

    def start(self, p_samples) -> None:
        """Each seed's "starting" row, carrying p on the points whose g the history rows will carry."""
        for i, p in enumerate(p_samples):
            sample = tuple(float(v) for v in np.asarray(p[:SNAPSHOT_POINTS]))
            self._send(i, Progress(0, np.nan, np.nan, np.nan, self.seconds(), phase="starting", feature_sample=sample))

    def row(self, seed: int, step: int, train_loss, test_loss, feature_corr, sample=()) -> None:
        """A training row: one line of the seed's history."""
        row = Progress(
            int(step), float(train_loss), float(test_loss), float(feature_corr), self.seconds(),
            feature_sample=tuple(float(v) for v in np.asarray(sample)),
        )
        self.histories[seed].append(row)
        self._send(seed, row)

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def _send(self, seed: int, row: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(seed, row)


@dataclass
class TrainResult:
    """What a trainer returns; `status` is done, diverged or cancelled."""

    status: str
    message: str
    steps: int
    metrics: dict
    history: list[Progress]  # training rows only
    samples: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    seconds: float
    data_C: float = 0.0
    extra: dict = field(default_factory=dict)


def adam_step(loss: Callable, state, batch, hyper: dict, forward: model.Forward):
    """One full-batch Adam step at rate hyper["lr"] on loss(params, batch, forward); the loss before it."""
    params, opt_state = state
    value, grads = jax.value_and_grad(loss)(params, batch, forward)
    updates, opt_state = optax.adam(hyper["lr"]).update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value


def adam_state(params) -> tuple:
    """(params, Adam's initial state): the state of `adam_step` (Adam's state does not depend on the rate)."""
    return params, optax.adam(1.0).init(params)


def outcome(ending: str, steps: int, cap: int) -> tuple[str, str, dict]:
    """Status, message and extra of a run trained by gradient steps under the rules above."""
    if ending == "plateau":
        return "done", f"converged: train loss plateaued at step {steps}", {"stopped_by": "plateau"}
    if ending == "step cap":
        return "done", f"reached the step cap of {cap}", {"stopped_by": "step cap"}
    if ending == "diverged":
        return "diverged", f"training loss became non-finite at step {steps}", {}
    return "cancelled", f"cancelled at step {steps}", {}


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(np.floor(np.log2(max(x, 1.0)))))


class ChunkSizes:
    """Steps per chunk: a power of two worth about CHUNK_SECONDS, at most cap / MIN_ROWS; or `fixed`."""

    def __init__(self, cap: int, fixed: int | None = None):
        if fixed is not None and fixed < 1:
            raise ValueError(f"chunk must be at least 1 step, got {fixed}")
        self.fixed, self.limit, self.size, self.calls = fixed, _pow2_floor(max(1, cap // MIN_ROWS)), 1, 0

    def next(self) -> int:
        return self.fixed or self.size

    def observe(self, steps: int, seconds: float) -> None:
        """The wall time of a chunk of `steps`; the first chunk compiles, so its time is ignored."""
        self.calls += 1
        if self.calls > 1 and steps > 0:
            wanted = _pow2_floor(CHUNK_SECONDS * steps / max(seconds, 1e-9))
            self.size = max(1, min(wanted, self.limit, 4 * self.size))  # grow at most 4x: one noisy chunk can't jump


@dataclass(frozen=True)
class End:
    """How a loop ended: the final state and, per seed, how it stopped and after how many steps."""

    state: Any
    endings: list[str]  # plateau, step cap, diverged or cancelled
    steps: list[int]


def run_loop(
    task: Task, state, batch, monitor, hyper: dict, rule: Rules, reporter: Reporter,
    should_stop: Callable[[], bool] | None = None, *, batched: bool = False, chunk_steps: int | None = None,
    offset: int = 0,
) -> End:
    """Train until every seed stops or `should_stop()` says so; rows are reported at step offset + step."""
    clock, sizes = start_clock(reporter.seeds if batched else None), ChunkSizes(int(rule.cap), chunk_steps)
    call = partial(chunk_seeds if batched else chunk, step=task.step, forward=task.forward)
    now = _host(clock)
    while (now.status == RUNNING).any():
        if should_stop is not None and should_stop():
            break
        if sizes.calls == 0:
            reporter.phase("compiling", offset + int(now.step.max()))
        steps, t0 = sizes.next(), time.perf_counter()
        state, clock = call(state, clock, batch, hyper, rule, jnp.int32(steps))
        before, now = now, _host(clock)
        sizes.observe(steps, time.perf_counter() - t0)
        _report_rows(task, state, monitor, before, now, reporter, batched, offset)
    return End(state, [ENDINGS[int(s)] for s in now.status], [int(s) for s in now.step])


def _host(clock: Clock) -> Clock:
    """The clock on the host, one entry per seed."""
    return Clock(*(np.atleast_1d(np.asarray(v)) for v in jax.device_get(clock)))


def _report_rows(task: Task, state, monitor, before: Clock, now: Clock, reporter: Reporter, batched: bool, offset: int):
    """A training row for each seed that ran in this chunk and did not diverge."""
    seeds = [i for i in range(len(now.step)) if before.status[i] == RUNNING and now.status[i] != DIVERGED]
    if not seeds:
        return
    test_loss, corr, _, g = scores(task, state, monitor, batched)
    for i in seeds:
        reporter.row(i, offset + now.step[i], now.last_loss[i], test_loss[i], corr[i], g[i, :SNAPSHOT_POINTS])


def report_start(task: Task, state, monitor, train_losses, reporter: Reporter, batched: bool = False) -> None:
    """The step-0 row of every seed, scored by the same program as the loop's rows."""
    test_loss, corr, _, g = scores(task, state, monitor, batched)
    for i, train_loss in enumerate(np.atleast_1d(train_losses)):
        reporter.row(i, 0, train_loss, test_loss[i], corr[i], g[i, :SNAPSHOT_POINTS])
