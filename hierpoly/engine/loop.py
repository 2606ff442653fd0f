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
  once ``patience`` steps have passed since the last improvement, the plateau rule fires:
  the first ``rules.drops`` times it multiplies the learning rate by ``rules.decay`` and
  starts the patience again (Adam's noise at the old rate hides a plateau); the next time
  it stops the run (status ``plateau``: converged).
- feature settled: every ``patience`` steps (at a window end) the task's probe, the learned
  feature g on the first PROBE_POINTS training inputs, is compared with its value
  ``patience`` steps before; a relative change ||Δg|| / ||g|| below ``feature_tol`` stops the
  run (status ``feature settled``: converged). Past interpolation the train loss falls
  towards 0 by noise while g keeps moving (and the correlation with it), so the loss alone
  says little there; g is what Figure 2 reports. ``feature_tol = 0`` turns the rule off.
- holdout (tasks with a ``validate``, i.e. the two-layer baseline's tuning trials): the loss
  on held-out rows is scored at step 0, at steps 1, 2, 4, ..., 64 (a net can overfit within
  tens of steps) and at every window end; the lowest and its step are kept, and ``patience``
  steps without a new lowest stop the run (status ``holdout``: converged).
The per-run values (cap, tol, patience, learning rate, ...) are arguments of the
compiled programs, and so is the chunk length: a new run compiles nothing new.

Seeds batched: the same chunk under `jax.vmap`; each seed carries its own clock, a
seed that has stopped keeps its state (the while loop runs until every seed stops).

Resuming (`Checkpointing`): between chunks, at most every `every_s` seconds, at a cancel and
when training ends, the loop hands its whole state to `save` as arrays (the state's leaves,
the clock, every seed's history rows) and a JSON doc; a run that finds a saved state at its
start goes on from there. The state is the loop's only memory and the data is a function of
the config (full batch, drawn once from the seed), so the resumed run is the uninterrupted
one, bit for bit: the same steps in other chunks.
"""
from __future__ import annotations

import sys
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
from hierpoly.progress import RESUMED, Progress

PLATEAU_WINDOW = 100  # steps between checks of the plateau rule (the stored results were judged every 100 steps)
PROBE_POINTS = 256  # training inputs on which the feature rule watches g
NO_PLATEAU = 2**30  # a patience that never ends: only the cap and divergence stop the run
CHUNK_SECONDS = 1.0  # work per compiled chunk: progress, cancellation and heartbeats stay this close
MIN_ROWS = 50  # a run's history has at least about this many rows, however short the run
RESENT_ROWS = 200  # history rows a resumed run sends to its progress again (its result keeps them all)

RUNNING, PLATEAU, CAP, DIVERGED, SETTLED, HOLDOUT = 0, 1, 2, 3, 4, 5
ENDINGS = {PLATEAU: "plateau", SETTLED: "feature settled", HOLDOUT: "holdout", CAP: "step cap", DIVERGED: "diverged",
           RUNNING: "cancelled"}


class Rules(NamedTuple):
    """When to stop: per-run values, arguments of the compiled chunk."""

    cap: jax.Array  # int32 () step cap
    tol: jax.Array  # float32 () relative improvement the plateau rule asks for
    patience: jax.Array  # int32 () steps without improvement before the plateau rule fires
    drops: jax.Array  # int32 () times the rule lowers the learning rate before it stops the run
    decay: jax.Array  # float32 () factor on the learning rate at each drop
    feature_tol: jax.Array  # float32 () relative change of g over `patience` steps that counts as settled; 0: off


def rules(cap: int, tol: float = 0.0, patience: int = NO_PLATEAU, drops: int = 0, decay: float = 1.0,
          feature_tol: float = 0.0) -> Rules:
    return Rules(jnp.int32(cap), jnp.float32(tol), jnp.int32(patience), jnp.int32(drops), jnp.float32(decay),
                 jnp.float32(feature_tol))


def rules_for(cfg: RunConfig) -> Rules:
    """The rules of a run trained by Adam to convergence (joint training, the two-layer baseline)."""
    return rules(cfg.steps, cfg.tol, cfg.patience, cfg.lr_drops, cfg.lr_decay, cfg.feature_tol)


class Clock(NamedTuple):
    """Where a run stands; carried through the steps of a chunk (per seed when batched)."""

    step: jax.Array  # int32 steps taken
    status: jax.Array  # int32: RUNNING, PLATEAU, CAP or DIVERGED
    last_loss: jax.Array  # float32 loss before the latest step
    best: jax.Array  # float32 best window loss so far
    best_at: jax.Array  # int32 step at which it was reached
    window_min: jax.Array  # float32 best loss in the current window
    drops: jax.Array  # int32 learning-rate drops so far
    val_best: jax.Array  # float32 lowest holdout loss so far (inf: no holdout)
    val_at: jax.Array  # int32 the step at which it was reached
    ref: jax.Array  # float32 (probe,) the probe at the last feature check
    ref_at: jax.Array  # int32 step of the last feature check


def start_clock(seeds: int | None = None, probe: int = 1) -> Clock:
    """A clock at step 0; `probe`: the length of the task's probe (1 when it has none)."""
    shape = () if seeds is None else (seeds,)
    zeros = jnp.zeros(shape, jnp.int32)
    inf = jnp.full(shape, jnp.inf, jnp.float32)
    return Clock(zeros, zeros, inf, inf, zeros, inf, zeros, inf, zeros, jnp.zeros((*shape, probe), jnp.float32), zeros)


def feature_check_due(clock: Clock, rules: Rules) -> jax.Array:
    """Whether the step about to be taken ends a window at which the feature rule compares g."""
    done = clock.step + 1
    return (rules.feature_tol > 0) & (done % PLATEAU_WINDOW == 0) & (done - clock.ref_at >= rules.patience)


def holdout_check_due(clock: Clock) -> jax.Array:
    """Whether the step about to be taken is one after which the holdout rule scores the held-out rows."""
    done = clock.step + 1
    return (done % PLATEAU_WINDOW == 0) | ((done & (done - 1)) == 0)


def scaled(hyper: dict, clock: Clock, rules: Rules) -> dict:
    """The step's hyperparameters with the learning rate lowered by the drops so far."""
    if "lr" not in hyper:
        return hyper
    return {**hyper, "lr": hyper["lr"] * rules.decay ** clock.drops.astype(jnp.float32)}


def advance(clock: Clock, rules: Rules, loss: jax.Array, state_finite: jax.Array,
            probe: jax.Array | None = None, holdout: jax.Array | None = None) -> tuple[Clock, jax.Array]:
    """The stopping rules after one step whose loss (before the step) is `loss`; and whether to keep the step.

    `probe`: the task's probe after the step, when `feature_check_due` said so (else ignored; None: no probe).
    `holdout`: the held-out loss after the step, when `holdout_check_due` said so (else ignored; None: no holdout).
    """
    done = clock.step + 1
    check = feature_check_due(clock, rules) & (probe is not None)
    probe = clock.ref if probe is None else probe.astype(jnp.float32)
    moved = jnp.linalg.norm(probe - clock.ref) / jnp.maximum(jnp.linalg.norm(probe), 1e-30)
    settled = check & (clock.ref_at > 0) & (moved < rules.feature_tol)  # the first check only sets the reference
    scored = holdout_check_due(clock) & (holdout is not None)
    holdout = clock.val_best if holdout is None else holdout.astype(jnp.float32)
    lower = scored & (holdout < clock.val_best)
    val_at = jnp.where(lower, done, clock.val_at)
    passed = scored & ~lower & (done - val_at >= rules.patience)
    loss_finite = jnp.isfinite(loss)
    diverged = ~(loss_finite & state_finite)
    window_min = jnp.minimum(clock.window_min, loss)
    window_end = (done % PLATEAU_WINDOW == 0) | (done >= rules.cap)
    improved = window_end & (window_min < clock.best * (1 - rules.tol))
    best_at = jnp.where(improved, done, clock.best_at)
    fired = window_end & ~improved & (done - best_at >= rules.patience)
    drop = fired & (clock.drops < rules.drops) & (done < rules.cap)  # lower the rate and wait `patience` again
    plateau = fired & ~drop
    status = jnp.where(diverged, DIVERGED, jnp.where(plateau, PLATEAU, jnp.where(settled, SETTLED, jnp.where(
        passed, HOLDOUT, jnp.where(done >= rules.cap, CAP, RUNNING)))))
    return Clock(
        step=jnp.where(diverged, jnp.where(loss_finite, done, clock.step), done),
        status=status.astype(jnp.int32),
        last_loss=loss.astype(jnp.float32),
        best=jnp.where(improved, window_min, clock.best),
        best_at=jnp.where(drop, done, best_at),
        window_min=jnp.where(window_end, jnp.inf, window_min),
        drops=clock.drops + drop.astype(jnp.int32),
        val_best=jnp.where(lower, holdout, clock.val_best),
        val_at=val_at,
        ref=jnp.where(check, probe, clock.ref),
        ref_at=jnp.where(check, done, clock.ref_at),
    ), ~diverged


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def _steps(state, clock: Clock, batch, hyper, rules: Rules, n, *, step: Callable, forward: model.Forward,
           probe: Callable | None = None, validate: Callable | None = None):
    """Up to n steps, fewer when the rules stop the run; a rejected (diverged) step leaves the state as it was."""

    def running(carry):
        i, _, clock = carry
        return (i < n) & (clock.status == RUNNING)

    def body(carry):
        i, state, clock = carry
        new_state, loss = step(state, batch, scaled(hyper, clock, rules), forward)
        g = None
        if probe is not None:  # only at the steps where the feature rule looks (under vmap: every step, then selected)
            g = jax.lax.cond(feature_check_due(clock, rules), lambda: probe(new_state, batch, forward).astype(jnp.float32),
                             lambda: clock.ref)
        held = None
        if validate is not None:
            held = jax.lax.cond(holdout_check_due(clock), lambda: validate(new_state, batch, forward).astype(jnp.float32),
                                lambda: clock.val_best)
        clock, keep = advance(clock, rules, loss, _all_finite(new_state), g, held)
        state = jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old), new_state, state)
        return i + 1, state, clock

    _, state, clock = jax.lax.while_loop(running, body, (jnp.int32(0), state, clock))
    return state, clock


chunk = jax.jit(_steps, static_argnames=("step", "forward", "probe", "validate"))


@partial(jax.jit, static_argnames=("step", "forward", "probe", "validate"))
def chunk_seeds(state, clock, batch, hyper, rules, n, *, step, forward, probe=None, validate=None):
    """`chunk` for seeds stacked on a leading axis of state, clock and batch."""
    one = partial(_steps, step=step, forward=forward, probe=probe, validate=validate)
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
    probe: Callable | None = None  # (state, batch, forward) -> (≤ PROBE_POINTS,) for the feature rule; None: no rule
    validate: Callable | None = None  # (state, batch, forward) -> loss on held-out rows the batch carries; None: no rule


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

    def resume(self, histories: list[list[Progress]], seconds: float, step: int) -> None:
        """Take a saved run's history rows and clock time, send its rows again, say so.

        Sent again: up to RESENT_ROWS of them, evenly thinned (the last kept), after the step-0 row already sent:
        a job's progress is rewritten with each row, and a long run's history has thousands.
        """
        self.histories, self.t0 = histories, time.perf_counter() - seconds
        for seed, rows in enumerate(histories):
            later = [row for row in rows if row.step > 0]
            picks = np.unique(np.round(np.linspace(0, len(later) - 1, min(RESENT_ROWS, len(later)))).astype(int))
            for i in picks:
                self._send(seed, later[i])
        self.phase(RESUMED, step)

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
    return adam_update(jax.value_and_grad(loss), state, batch, hyper, forward)


def adam_update(value_and_grad: Callable, state, batch, hyper: dict, forward: model.Forward):
    """`adam_step` with the loss and its gradient from value_and_grad(params, batch, forward)."""
    params, opt_state = state
    value, grads = value_and_grad(params, batch, forward)
    updates, opt_state = optax.adam(hyper["lr"]).update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value


def adam_state(params) -> tuple:
    """(params, Adam's initial state): the state of `adam_step` (Adam's state does not depend on the rate)."""
    return params, optax.adam(1.0).init(params)


def outcome(ending: str, steps: int, cap: int, drops: int = 0) -> tuple[str, str, dict]:
    """Status, message and extra of a run trained by gradient steps under the rules above."""
    lowered = f" after {drops} learning-rate drop{'s' * (drops != 1)}" if drops else ""
    if ending == "feature settled":
        return "done", f"converged: the learned feature settled at step {steps}{lowered}", {"stopped_by": ending, "lr_drops": drops}
    if ending == "holdout":
        return "done", f"converged: stopped at step {steps}, where the holdout loss was lowest", {"stopped_by": ending, "lr_drops": drops}
    if ending == "plateau":
        return "done", f"converged: train loss plateaued at step {steps}{lowered}", {"stopped_by": "plateau", "lr_drops": drops}
    if ending == "step cap":
        return "done", f"reached the step cap of {cap}{lowered} (not converged)", {"stopped_by": "step cap", "lr_drops": drops}
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
    endings: list[str]  # plateau, feature settled, holdout, step cap, diverged or cancelled
    steps: list[int]
    drops: list[int]  # learning-rate drops taken
    val_best: list[float]  # lowest holdout loss (inf without a holdout)
    val_at: list[int]  # the step at which it was reached
    saving: dict = field(default_factory=dict)  # checkpoints: resumed_from (step), saves, save_seconds


def run_loop(
    task: Task, state, batch, monitor, hyper: dict, rule: Rules, reporter: Reporter,
    should_stop: Callable[[], bool] | None = None, *, batched: bool = False, chunk_steps: int | None = None,
    offset: int = 0, checkpoint: Checkpointing | None = None,
) -> End:
    """Train until every seed stops or `should_stop()` says so; rows are reported at step offset + step.

    checkpoint: where the whole state is saved between chunks and, when a saved one is found, resumed from.
    """
    probe_size = 1 if task.probe is None else _probe_size(task, state, batch, batched)
    clock, sizes = start_clock(reporter.seeds if batched else None, probe_size), ChunkSizes(int(rule.cap), chunk_steps)
    if task.validate is not None:  # step 0 is a candidate too: the untrained net
        clock = clock._replace(val_best=_validate(state, batch, validate=task.validate, forward=task.forward, batched=batched))
    saver = Saver(checkpoint)
    state, clock = saver.resume(state, clock, reporter, offset)
    call = partial(chunk_seeds if batched else chunk, step=task.step, forward=task.forward, probe=task.probe,
                   validate=task.validate)
    now = _host(clock)
    while (now.status == RUNNING).any():
        if should_stop is not None and should_stop():
            saver.save(state, clock, reporter, force=True, stopped=True)
            break
        if sizes.calls == 0:
            reporter.phase("compiling", offset + int(now.step.max()))
        steps, t0 = sizes.next(), time.perf_counter()
        state, clock = call(state, clock, batch, hyper, rule, jnp.int32(steps))
        before, now = now, _host(clock)
        sizes.observe(steps, time.perf_counter() - t0)
        _report_rows(task, state, monitor, before, now, reporter, batched, offset)
        ended = not (now.status == RUNNING).any()
        saver.save(state, clock, reporter, force=ended, stopped=ended)
    return End(state, [ENDINGS[int(s)] for s in now.status], [int(s) for s in now.step], [int(s) for s in now.drops],
               [float(v) for v in now.val_best], [int(s) for s in now.val_at], saver.summary())


@dataclass(frozen=True)
class Checkpointing:
    """Where a loop's whole state is kept between chunks (jobs/runner.py wires it to the store's checkpoints).

    load() -> (arrays, doc) or None; save(arrays, doc) replaces what load returns; every_s: seconds
    between saves (a save also follows a cancel and the end of training).
    """

    load: Callable[[], tuple[dict, dict] | None]
    save: Callable[[dict, dict], None]
    every_s: float


class Saver:
    """Saves a loop's state through its `Checkpointing` when due, and resumes from what was saved."""

    def __init__(self, checkpoint: Checkpointing | None):
        self.checkpoint, self.last, self.saves, self.seconds, self.resumed = checkpoint, time.monotonic(), 0, 0.0, None

    def save(self, state, clock: Clock, reporter: Reporter, force: bool = False, stopped: bool = False) -> None:
        """Save when due (or forced); `stopped`: the loop ends here (cancelled, or training is over)."""
        if self.checkpoint is None or (not force and time.monotonic() - self.last < self.checkpoint.every_s):
            return
        t0 = time.perf_counter()
        arrays, doc = pack(state, clock, reporter)
        self.checkpoint.save(arrays, {**doc, "stopped": stopped})
        self.last, self.saves, self.seconds = time.monotonic(), self.saves + 1, self.seconds + time.perf_counter() - t0

    def resume(self, state, clock: Clock, reporter: Reporter, offset: int = 0):
        """(state, clock) as saved, or as given when nothing was saved; a saved state of another shape is ignored."""
        saved = None if self.checkpoint is None else self.checkpoint.load()
        if saved is None:
            return state, clock
        try:
            state, clock, histories, seconds = unpack(*saved, state, clock, reporter.seeds)
        except (ValueError, KeyError) as err:  # saved by a build whose run had other shapes: start over, overwrite it
            print(f"warning: the saved state cannot be resumed ({err}); the run starts over", file=sys.stderr)
            return state, clock
        self.resumed, self.before = int(np.max(np.asarray(jax.device_get(clock.step)))), seconds
        reporter.resume(histories, seconds, offset + self.resumed)
        return state, clock

    def summary(self) -> dict:
        out = {} if self.checkpoint is None else {"saves": self.saves, "save_seconds": round(self.seconds, 3)}
        # seconds_before: the training seconds the stopped processes spent, which a run's own seconds count
        return out if self.resumed is None else {**out, "resumed_from": self.resumed, "seconds_before": round(self.before, 3)}


HISTORY_FLOATS = ("train_loss", "test_loss", "feature_corr", "seconds")


def pack(state, clock: Clock, reporter: Reporter) -> tuple[dict[str, np.ndarray], dict]:
    """A loop's whole state as named arrays and a JSON doc (what `unpack` reads)."""
    arrays = {f"state_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(jax.device_get(state)))}
    arrays.update({f"clock_{name}": np.asarray(leaf) for name, leaf in zip(Clock._fields, jax.device_get(clock))})
    for seed, rows in enumerate(reporter.histories):
        arrays[f"history{seed}_step"] = np.asarray([r.step for r in rows], np.int64)
        for name in HISTORY_FLOATS:
            arrays[f"history{seed}_{name}"] = np.asarray([getattr(r, name) for r in rows], np.float64)
        width = min((len(r.feature_sample) for r in rows), default=0)
        arrays[f"history{seed}_sample"] = np.asarray([r.feature_sample[:width] for r in rows], np.float32).reshape(len(rows), width)
    steps = np.atleast_1d(np.asarray(jax.device_get(clock.step)))
    return arrays, {"steps": [int(s) for s in steps], "seeds": reporter.seeds, "seconds": reporter.seconds()}


def unpack(arrays: dict, doc: dict, state, clock: Clock, seeds: int):
    """(state, clock, histories, seconds) saved by `pack`, shaped like the given state and clock; ValueError when
    the saved arrays do not fit them (saved by another version of the run)."""
    leaves, tree = jax.tree_util.tree_flatten(state)
    names = [f"state_{i:04d}" for i in range(len(leaves))] + [f"clock_{name}" for name in Clock._fields]
    like = leaves + list(clock)
    for name, leaf in zip(names, like):
        saved = arrays.get(name)
        if saved is None or saved.shape != np.shape(leaf) or saved.dtype != np.asarray(leaf).dtype:
            raise ValueError(f"the saved state's {name} does not fit this run")
    restored = [jnp.asarray(arrays[name]) for name in names]
    histories = [_history(arrays, seed) for seed in range(seeds)]
    return tree.unflatten(restored[:len(leaves)]), Clock(*restored[len(leaves):]), histories, float(doc["seconds"])


def _history(arrays: dict, seed: int) -> list[Progress]:
    columns = {name: arrays[f"history{seed}_{name}"] for name in ("step", *HISTORY_FLOATS, "sample")}
    return [Progress(int(columns["step"][i]), *(float(columns[name][i]) for name in HISTORY_FLOATS),
                     feature_sample=tuple(float(v) for v in columns["sample"][i])) for i in range(len(columns["step"]))]


@partial(jax.jit, static_argnames=("validate", "forward", "batched"))
def _validate(state, batch, *, validate: Callable, forward: model.Forward, batched: bool):
    one = partial(validate, forward=forward)
    return (jax.vmap(one)(state, batch) if batched else one(state, batch)).astype(jnp.float32)


def _probe_size(task: Task, state, batch, batched: bool) -> int:
    """The length of the task's probe, from its shape alone (nothing is computed)."""
    one = (lambda tree: jax.tree_util.tree_map(lambda leaf: leaf[0], tree)) if batched else (lambda tree: tree)
    return int(jax.eval_shape(partial(task.probe, forward=task.forward), one(state), one(batch)).shape[0])


def _host(clock: Clock) -> Clock:
    """The clock on the host, one entry per seed (ref: (probe,) alone, (seeds, probe) batched)."""
    host = jax.device_get(clock)
    return Clock(*(np.atleast_1d(np.asarray(v)) for v in host[:-2]), np.asarray(host.ref), np.atleast_1d(host.ref_at))


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
