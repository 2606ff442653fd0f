"""What a page shows of one run, while it trains and after (no Streamlit, no JAX).

- A job's progress records as a view: the phase it is in (starting Python and
  JAX, tuning — only in runs that tune, the two-layer baseline —, compiling,
  training, evaluating), that phase's own progress, the training time left at the
  run's own pace (else at the stored runs' pace), and the history so far:
  ``progress_view``.
- The learned feature against p: live from each training record's
  ``feature_sample`` (g on the first monitor points), and replayed from a stored
  result's ``snapshots`` ({"step": (r,), "g": (r, 256)}), paired with
  ``samples["p"]`` of the same points: ``live_snapshot``, ``replay_frames``.
- How long a run will take, from the pace of runs stored on this machine:
  ``time_estimate`` (``runs.pace``, the estimator the classroom budget uses too).
- The learned link against the true link on the learned feature's scale: ``link_fit``.
- Histories of several results as one CSV: ``histories_csv``.

Progress rows are ``hierpoly.progress.Progress`` records; dicts (the job table's
JSON) are read with ``Progress.from_json``, so both work. A run reports p on the
feature-sample points once, in the ``feature_sample`` of its "starting" record;
the live scatter starts with the first training record after step 0 (at step 0
the learned feature is the flat line of its initialisation).
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.config import RunConfig
from hierpoly.jobs import pace
from hierpoly.jsonvalue import jsonable
from hierpoly.progress import PHASES, RESUMED, Progress
from hierpoly.results.codec import HISTORY_COLUMNS
from hierpoly.targets import parse_link


def records(rows) -> list[Progress]:
    """Progress records from records or their JSON dicts."""
    return [row if isinstance(row, Progress) else Progress.from_json(row) for row in rows or ()]


def total_steps(cfg: RunConfig) -> int:
    """Steps the progress bar counts: T1 + T2 for layer-wise, the step cap for joint."""
    return cfg.total_steps


# ------------------------------------------------------------------ history
def history_frame(rows) -> pd.DataFrame:
    """A run's history sorted by step: from progress records (training rows only) or a dict of arrays."""
    if isinstance(rows, Mapping):
        frame = pd.DataFrame({name: np.asarray(values) for name, values in rows.items()})
    else:
        frame = pd.DataFrame([{name: getattr(r, name) for name in HISTORY_COLUMNS}
                              for r in records(rows) if r.is_history])
    if frame.empty:
        return pd.DataFrame({name: pd.Series(dtype=float) for name in HISTORY_COLUMNS})
    return frame.sort_values("step").reset_index(drop=True)


def histories_csv(results: Sequence) -> bytes:
    """The histories of several results as one CSV, with each run's key and config columns."""
    frames = []
    for result in results:
        hist = history_frame(result.history)
        cfg = result.config.to_dict()
        for name in ("d", "n", "k", "link", "mode", "m1", "m2", "seed"):
            hist.insert(0, name, cfg[name])
        hist.insert(0, "key", result.key)
        frames.append(hist)
    frame = pd.concat(frames, ignore_index=True) if frames else history_frame(None)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


# -------------------------------------------------------------- live progress
@dataclass(frozen=True)
class ProgressView:
    """What the live panel shows for one job."""

    status: str
    phase: str  # one of PHASES, or "queued"
    phases: tuple  # (phase, "done" | "now" | "next") for each of PHASES
    fraction: float  # 0..1: the current phase's progress, for st.progress
    eta_seconds: float | None  # training: at most this long (None until the pace is known)
    text: str  # one line for the progress bar
    history: pd.DataFrame  # training rows: step, train_loss, test_loss, feature_corr, seconds
    step: int
    total: int
    warm: bool = False  # a warm worker runs it: Python and JAX were loaded before the click


def progress_view(status: str, rows, total: int, n_eval: int | None = None,
                  step_seconds: float | None = None, warm: bool = False) -> ProgressView:
    """The phase, its progress, the training time left and the history so far of a job.

    Time left: the remaining steps at this run's own pace once two of its chunks have
    reported (the first one's time includes compiling), before that at `step_seconds`
    (``pace.Pace.step_seconds``: the stored runs' pace). Joint training may stop
    earlier on a rule, so it is an upper bound.
    """
    progress = records(rows)
    hist = history_frame(progress)
    total = max(int(total), 1)
    step = int(hist["step"].iloc[-1]) if len(hist) else 0
    phase = _phase(status, progress, step, total)
    eta = None
    if phase == "training":
        own = _run_step_seconds(hist)
        per_step = own if own is not None else step_seconds
        eta = None if per_step is None else max(total - step, 0) * per_step
    fraction = {"training": step / total, "evaluating": _phase_fraction(progress, "evaluating"),
                "tuning": _phase_fraction(progress, "tuning")}.get(phase, 0.0)
    text = _phase_text(phase, step, total, eta, fraction, n_eval, warm)
    resumed = [row for row in progress if row.phase == RESUMED]
    if resumed and phase == "training":  # a rerun that went on from the run's checkpoint
        text += f" ({resumed[-1].label})"
    tunes = any(row.phase == "tuning" for row in progress)
    phases = tuple(name for name in PHASES if tunes or name != "tuning")  # tuning: only runs that have it
    shown = "starting" if phase == "preparing" else phase  # scoring the untrained network ends the start
    order = phases.index(shown) if shown in phases else -1
    marks = tuple((name, "done" if i < order else "now" if i == order else "next") for i, name in enumerate(phases))
    return ProgressView(status, phase, marks, min(max(fraction, 0.0), 1.0), eta, text, hist, step, total, warm)


def _phase(status: str, progress: list[Progress], step: int, total: int) -> str:
    if status == "queued":
        return "queued"
    if not progress:
        return "starting"  # the worker process is still importing Python and JAX: it has written nothing yet
    phase = progress[-1].phase
    if phase == "starting":
        return "preparing"
    if phase == "training" and step >= total:  # the cap is reached: only the final evaluation is left
        return "evaluating"
    if phase == "training" and step == 0:  # the record of the initial state: the first chunk compiles now
        return "compiling"
    return phase if phase in PHASES else "training"


def _run_step_seconds(hist: pd.DataFrame) -> float | None:
    """Seconds per step since the end of the first chunk, or None before a second chunk has reported.

    A chunk reports all its rows at once, with one time: steps within a chunk carry no pace.
    """
    moving = hist[hist["step"] > 0]
    if moving.empty:
        return None
    first_time = float(moving["seconds"].min())
    later = moving[moving["seconds"] > first_time]
    if later.empty:
        return None
    first_step = float(moving.loc[moving["seconds"] == first_time, "step"].max())
    d_step = float(later["step"].iloc[-1]) - first_step
    d_sec = float(later["seconds"].iloc[-1]) - first_time
    return d_sec / d_step if d_step > 0 and d_sec > 0 else None


def _phase_fraction(progress: list[Progress], phase: str) -> float:
    last = progress[-1] if progress else None
    return float(last.fraction) if last is not None and last.phase == phase and last.fraction else 0.0


def _phase_text(phase: str, step: int, total: int, eta: float | None, fraction: float, n_eval: int | None,
                warm: bool = False) -> str:
    if phase == "queued":
        return "queued: the warm worker (Python and JAX loaded) takes it when free" if warm else \
            "queued: waiting for a worker"
    if phase == "starting" and warm:
        return "starting: the warm worker, with Python and JAX loaded, takes the job and draws its data"
    if phase == "starting":
        return "starting Python and JAX: a worker process loads them (a fresh one takes a while)"
    if phase == "preparing":
        return "starting: the data is drawn, JAX scores the untrained network"
    if phase == "compiling":
        return "compiling: JAX builds the training step (the first run of a shape waits longest)"
    if phase == "tuning":
        return f"tuning: trying learning rates and stopping steps on a holdout of the training data, {fraction:.0%} done"
    if phase == "evaluating":
        points = f" on {n_eval:,} fresh points" if n_eval else ""
        return f"evaluating: the final test loss and correlation{points}, {fraction:.0%} done"
    text = f"training: step {step:,} of at most {total:,}"
    left = None if eta is None else format_seconds(eta)
    return text + ("" if left is None else f", {left if left.startswith('under') else 'at most ' + left} of "
                   "training left")


format_seconds = pace.format_seconds  # one way to say a duration, on the pages and in refusals


def _number(value) -> float | None:
    try:
        return jsonable(float(value))  # NaN and infinities: None
    except (TypeError, ValueError):
        return None


def format_corr(value) -> str:
    """A feature correlation: three decimals, '–' when there is none."""
    value = _number(value)
    return "–" if value is None else f"{value:.3f}"


def format_duration(value) -> str:
    """A stored run's wall time (``format_seconds``), '–' when there is none."""
    value = _number(value)
    return "–" if value is None else format_seconds(value)


def format_loss(value) -> str:
    """A loss, one way on every page: three decimals ('0.979', '12.990'), two significant digits below 0.001
    ('3.1e-05'), '–' when there is none."""
    value = _number(value)
    if value is None:
        return "–"
    return f"{value:.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1e}"


# ---------------------------------------------------------- feature snapshots
@dataclass(frozen=True)
class Snapshot:
    """The learned feature on the sample points at one step, with p on the same points."""

    step: int
    p: np.ndarray  # (r,)
    g: np.ndarray  # (r,)

    @property
    def corr(self) -> float:
        """Pearson corr(g, p) on these points (0 when either is constant)."""
        ok = np.isfinite(self.g)
        p, g = self.p[ok], self.g[ok]
        if len(p) < 2 or p.std() == 0 or g.std() == 0:
            return 0.0
        return float(np.corrcoef(p, g)[0, 1])


def live_p(rows) -> np.ndarray | None:
    """p on the feature-sample points, from the run's "starting" record (None until it reports them)."""
    for row in records(rows):
        if row.phase == "starting" and row.feature_sample:
            return np.asarray(row.feature_sample, dtype=float)
    return None


def live_snapshot(rows, p: np.ndarray | None = None) -> Snapshot | None:
    """The newest training record's feature sample against p, or None when either is missing."""
    progress = records(rows)
    p = live_p(progress) if p is None else np.asarray(p, dtype=float)
    for row in reversed(progress):
        if row.is_history and row.step > 0 and row.feature_sample and p is not None:
            g = np.asarray(row.feature_sample, dtype=float)
            width = min(len(g), len(p))
            return Snapshot(row.step, p[:width], g[:width])
    return None


def replay_frames(result) -> list[Snapshot]:
    """A stored result's snapshots against p of the same points (the first rows of its samples); [] if none."""
    snapshots = getattr(result, "snapshots", None) or {}
    steps, gs = snapshots.get("step"), snapshots.get("g")
    p = (result.samples or {}).get("p")
    if steps is None or gs is None or p is None or len(steps) == 0:
        return []
    gs = np.asarray(gs, dtype=float).reshape(len(steps), -1)
    width = min(gs.shape[1], len(p))
    p = np.asarray(p[:width], dtype=float)
    return [Snapshot(int(step), p, g[:width]) for step, g in zip(steps, gs, strict=True)]


# ------------------------------------------------------------- time estimate
def time_estimate(cfg: RunConfig, summaries: pd.DataFrame | None) -> pace.Estimate:
    """Wall seconds for ``cfg`` from launch to result, at most: ``pace.estimate``, as the classroom budget counts."""
    return pace.estimate(cfg, summaries)


def estimate_text(estimate: pace.Estimate) -> str:
    """'about 9 s here (6–20 s; at most 3 min at the step cap; from the pace of 116 stored runs)', or the same
    from the defaults."""
    source = (f"from the pace of {estimate.runs} stored runs" if estimate.runs
              else "a default pace: no runs of this model are stored here yet")
    typical = format_seconds(estimate.median)
    typical = typical if typical.startswith("under") else f"about {typical}"
    most = format_seconds(estimate.seconds)
    cap = f"; at most {most} at the step cap" if most != format_seconds(estimate.high) else ""
    return f"{typical} here ({range_text(estimate)}{cap}; {source})"


def range_text(estimate: pace.Estimate) -> str:
    """'6–20 s', '2 min 5 s–4 min 10 s', 'up to 3 s' when the range starts under a second, 'under 1 s'."""
    low, high = format_seconds(estimate.low), format_seconds(max(estimate.high, estimate.median))
    if high.startswith("under"):
        return high
    if low.startswith("under") or low == high:
        return f"up to {high}"
    if low.endswith(" s") and high.endswith(" s") and "min" not in low + high:
        low = low[:-2]
    return f"{low}–{high}"


# ------------------------------------------------------------- learned link
@dataclass(frozen=True)
class LinkFit:
    """g ≈ α p + β on the test samples, and the true link on the learned feature's scale."""

    alpha: float
    beta: float
    C: float
    curve: pd.DataFrame  # g, h_true


def link_fit(samples: Mapping[str, np.ndarray], link: str, C: float | None = None, points: int = 200) -> LinkFit:
    """The true link expressed as a function of the learned feature.

    The network's output is h_θ = (function of g). The true target is h = C·poly(p).
    The learned feature is a rescaled p (g ≈ α p + β, fitted by least squares on the
    samples), so on the learned feature's scale the true link is
    g ↦ C·poly((g − β)/α); a network that learned the hierarchy puts its points
    (g, h_θ) on this curve. C is taken from the result's metadata, or recovered
    exactly from the samples (h = C·poly(p) holds pointwise).
    """
    p = np.asarray(samples["p"], dtype=np.float64)
    g = np.asarray(samples["g"], dtype=np.float64)
    coefs = parse_link(link)
    poly_p = np.polynomial.polynomial.polyval(p, coefs)
    if C is None:
        h = np.asarray(samples["h"], dtype=np.float64)
        denom = float(poly_p @ poly_p)
        C = float(h @ poly_p / denom) if denom > 0 else 1.0
    design = np.stack([p, np.ones_like(p)], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(design, g, rcond=None)
    if not np.isfinite(alpha) or abs(alpha) < 1e-12:  # g carries no p: draw the link on the p scale
        alpha, beta = 1.0, 0.0
    grid = np.linspace(g.min(), g.max(), points) if len(g) else np.zeros(0)
    h_true = C * np.polynomial.polynomial.polyval((grid - beta) / alpha, coefs)
    return LinkFit(float(alpha), float(beta), float(C), pd.DataFrame({"g": grid, "h_true": h_true}))


# ------------------------------------------------------------- plain words
FOUND = 0.9  # the correlation Figure 2 counts as having learned p (cell_stats.THRESHOLD)
MODEL_NAMES = {"three_layer": "network", "kernel": "kernel method", "two_layer": "two-layer network"}


def model_name(cfg: RunConfig) -> str:
    """'network', 'network (layer-wise)', 'kernel method' or 'two-layer network'."""
    name = MODEL_NAMES.get(cfg.arch, cfg.arch)
    return f"{name} (layer-wise)" if cfg.arch == "three_layer" and cfg.mode == "layerwise" else name


@dataclass(frozen=True)
class Outcome:
    """What a stored run shows, in the order a class reads it: the feature, the test loss, how it ended."""

    found: bool
    headline: str  # "The network found p (correlation 0.96)."
    loss: str  # the test loss with the heavy-tail sentence
    ending: str  # how the run ended, in plain words


def outcome(result) -> Outcome:
    """The feature first ("found p (correlation 0.96)" or "has not found p yet"), then the loss, then the ending."""
    metrics, cfg = result.metrics, result.config
    corr, loss, se = metrics.get("feature_corr"), metrics.get("test_loss"), metrics.get("test_loss_se")
    name = model_name(cfg)
    corr_ok = corr is not None and math.isfinite(corr)
    found = corr_ok and corr >= FOUND
    if found:
        headline = f"The {name} found p (correlation {corr:.2f})."
    elif corr_ok:
        headline = f"The {name} has not found p yet (correlation {corr:.2f}; from {FOUND} on it counts as found)."
    else:
        headline = f"The {name} has no learned feature to compare with p."
    if loss is None or not math.isfinite(loss):
        loss_text = "It has no test loss."
    else:
        spread = f" ± {format_loss(se)}" if se is not None and math.isfinite(se) else ""
        loss_text = (f"Test loss {format_loss(loss)}{spread} over {cfg.n_eval:,} fresh points (predicting 0 scores 1). "
                     + (HEAVY_TAIL_SHORT if found and loss >= 0.2 else HEAVY_TAIL_ALWAYS))
    return Outcome(found, headline, loss_text, outcome_text(result))


HEAVY_TAIL_SHORT = ("It found p, and the test loss stays well above 0 all the same: h is heavy-tailed, and the "
                    "rare inputs whose feature lies beyond its training data carry much of the loss.")
HEAVY_TAIL_ALWAYS = "h is heavy-tailed: a few rare inputs carry a large share of any test loss."


def outcome_text(result) -> str:
    """How a stored run ended, in words a student knows."""
    cfg, steps = result.config, int(result.meta.get("steps") or 0)
    stopped_by = result.meta.get("stopped_by") or (result.meta.get("extra") or {}).get("stopped_by")
    if cfg.arch == "kernel":
        return "Fitted in one go (ridge regression on random features): a kernel method has no training steps."
    if cfg.mode == "layerwise":
        return f"It ran both stages of layer-wise training ({steps:,} gradient steps in all)."
    if stopped_by == "feature settled":
        return (f"It stopped on the feature rule at step {steps:,}: the learned feature g had stopped moving "
                f"(by less than {cfg.feature_tol:.1%} over {cfg.patience:,} steps).")
    if stopped_by == "holdout":
        return (f"It stopped at step {steps:,}, where the loss on held-out training rows was lowest "
                f"(the rate and this step were chosen on them; training on only overfits).")
    if stopped_by == "plateau" or result.message.startswith("converged"):
        drops = int((result.meta.get("extra") or {}).get("lr_drops") or 0)
        lowered = f", even after lowering the learning rate {drops} time{'s' * (drops != 1)}" if drops else ""
        return (f"It stopped on the plateau rule at step {steps:,}: the training loss had stopped improving "
                f"(by less than {cfg.tol:.1%} over {cfg.patience:,} steps{lowered}).")
    if stopped_by == "step cap" or result.message.startswith("reached the step cap"):
        return (f"It ran to the step cap: all {cfg.steps:,} training steps it was allowed, "
                "before a stopping rule fired.")
    return f"It finished: {result.message}."


HEAVY_TAIL = (
    "The target h = C·p³ is heavy-tailed: "
    "most inputs give a tiny h, a rare few a huge one. The test loss averages over {n_eval:,} fresh inputs, "
    "including those rare ones whose feature p lies beyond anything in the training data. There the network "
    "is linear in its feature (its second layer is ReLU) while h is cubic, so it misses them badly, and those "
    "few inputs carry a large share of E[h²] = 1. The feature correlation measures how well g follows p on "
    "all inputs alike, so a network can have learned p (correlation near 1) and still have a sizeable test loss. "
    "A test loss of 1 is what predicting 0 everywhere scores."
)
