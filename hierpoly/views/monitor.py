"""What a page shows of one run, while it trains and after (no Streamlit, no JAX).

- A job's progress records as a view: the phase it is in (starting, tuning —
  only in runs that tune, the two-layer baseline —, compiling, training,
  evaluating), that phase's own progress, an ETA in seconds, and the history so
  far: ``progress_view``.
- The learned feature against p: live from each training record's
  ``feature_sample`` (g on the first monitor points), and replayed from a stored
  result's ``snapshots`` ({"step": (r,), "g": (r, 256)}), paired with
  ``samples["p"]`` of the same points: ``live_snapshot``, ``replay_frames``.
- How long a run will take, from the pace of runs stored on this machine:
  ``time_estimate`` (seconds, never floating-point operations).
- The learned link against the true link on the learned feature's scale: ``link_fit``.
- Histories of several results as one CSV: ``histories_csv``.

Progress rows are ``hierpoly.progress.Progress`` records; dicts (the job table's
JSON) are read with ``Progress.from_json``, so both work. A run reports p on the
feature-sample points once, in the ``feature_sample`` of its "starting" record;
until it has, the live scatter waits for the stored result.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.config import RunConfig
from hierpoly.progress import PHASES, Progress
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


def progress_view(status: str, rows, total: int, n_eval: int | None = None) -> ProgressView:
    """The phase, its progress, an ETA and the history so far of a job.

    ETA: the remaining steps at the pace between the first and the last training
    record (compilation comes before the first one). Joint training may stop
    earlier at a plateau, so it is an upper bound.
    """
    progress = records(rows)
    hist = history_frame(progress)
    total = max(int(total), 1)
    step = int(hist["step"].iloc[-1]) if len(hist) else 0
    phase = _phase(status, progress, step, total)
    eta = _eta(hist, total) if phase == "training" else None
    fraction = {"training": step / total, "evaluating": _phase_fraction(progress, "evaluating"),
                "tuning": _phase_fraction(progress, "tuning")}.get(phase, 0.0)
    text = _phase_text(phase, step, total, eta, fraction, n_eval)
    tunes = any(row.phase == "tuning" for row in progress)
    phases = tuple(name for name in PHASES if tunes or name != "tuning")  # tuning: only runs that have it
    order = phases.index(phase) if phase in phases else -1
    marks = tuple((name, "done" if i < order else "now" if i == order else "next") for i, name in enumerate(phases))
    return ProgressView(status, phase, marks, min(max(fraction, 0.0), 1.0), eta, text, hist, step, total)


def _phase(status: str, progress: list[Progress], step: int, total: int) -> str:
    if status == "queued":
        return "queued"
    if not progress:
        return "starting"
    phase = progress[-1].phase
    if phase == "training" and step >= total:  # the cap is reached: only the final evaluation is left
        return "evaluating"
    if phase == "training" and step == 0:  # the record of the initial state: the first chunk compiles now
        return "compiling"
    return phase if phase in PHASES else "training"


def _eta(hist: pd.DataFrame, total: int) -> float | None:
    moving = hist[hist["step"] > 0]
    if len(moving) < 2:
        return None
    d_step = float(moving["step"].iloc[-1] - moving["step"].iloc[0])
    d_sec = float(moving["seconds"].iloc[-1] - moving["seconds"].iloc[0])
    if d_step <= 0 or d_sec < 0:
        return None
    return max(total - int(moving["step"].iloc[-1]), 0) * d_sec / d_step


def _phase_fraction(progress: list[Progress], phase: str) -> float:
    last = progress[-1] if progress else None
    return float(last.fraction) if last is not None and last.phase == phase and last.fraction else 0.0


def _phase_text(phase: str, step: int, total: int, eta: float | None, fraction: float, n_eval: int | None) -> str:
    if phase == "queued":
        return "queued: waiting for a worker"
    if phase == "starting":
        return "starting: a worker is drawing the data"
    if phase == "compiling":
        return "compiling: JAX builds the training step (the first run of a shape waits longest)"
    if phase == "tuning":
        return f"tuning: trying learning rates and stopping steps on a holdout of the training data, {fraction:.0%} done"
    if phase == "evaluating":
        points = f" on {n_eval:,} fresh points" if n_eval else ""
        return f"evaluating: the final test loss and correlation{points}, {fraction:.0%} done"
    text = f"training: step {step:,} of at most {total:,}"
    return text + (f", at most {format_seconds(eta)} left" if eta is not None else "")


def format_seconds(seconds: float) -> str:
    """12 s, 3 min 5 s, 1 h 2 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


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
        if row.is_history and row.feature_sample and p is not None:
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
@dataclass(frozen=True)
class TimeEstimate:
    """Seconds a run takes at most, from the pace of comparable stored runs."""

    seconds: float
    runs: int  # stored runs the pace comes from


def time_estimate(cfg: RunConfig, summaries: pd.DataFrame) -> TimeEstimate | None:
    """Wall seconds for ``cfg`` at its step cap, at the median pace of stored runs of its arch and mode.

    Pace = a run's wall seconds (compilation and final evaluation included, so
    small runs look slow: the estimate errs long) per unit of work, work = steps
    run × n × (d·m1 + m2), the per-step cost of both blocks. None without such runs.
    """
    needed = {"arch", "mode", "d", "n", "m1", "m2", "steps_run", "seconds"}
    if summaries is None or summaries.empty or not needed <= set(summaries.columns):
        return None
    same = summaries[(summaries["arch"] == cfg.arch) & (summaries["mode"] == cfg.mode)].dropna(subset=["steps_run", "seconds"])
    same = same[same["steps_run"] > 0]
    if same.empty:
        return None
    work = same["steps_run"] * same["n"] * (same["d"] * same["m1"] + same["m2"])
    pace = float(np.median(same["seconds"] / work))
    seconds = pace * total_steps(cfg) * cfg.n * (cfg.d * cfg.m1 + cfg.m2)
    return TimeEstimate(seconds, len(same)) if math.isfinite(seconds) else None


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
def outcome_text(result) -> str:
    """How a stored run ended, in words a student knows."""
    cfg, steps = result.config, int(result.meta.get("steps") or 0)
    stopped_by = result.meta.get("stopped_by") or (result.meta.get("extra") or {}).get("stopped_by")
    if cfg.arch == "kernel":
        return "Fitted in one go (ridge regression on random features): a kernel method has no training steps."
    if cfg.mode == "layerwise":
        return f"Finished both stages of layer-wise training ({steps:,} gradient steps in all)."
    if stopped_by == "feature settled":
        return (f"Converged at step {steps:,}: the learned feature g had stopped moving "
                f"(by less than {cfg.feature_tol:.1%} over {cfg.patience:,} steps).")
    if stopped_by == "holdout":
        return (f"Stopped at step {steps:,}, where the loss on held-out training rows was lowest "
                f"(the rate and this step were chosen on them; training on only overfits).")
    if stopped_by == "plateau" or result.message.startswith("converged"):
        drops = int((result.meta.get("extra") or {}).get("lr_drops") or 0)
        lowered = f", even after lowering the learning rate {drops} time{'s' * (drops != 1)}" if drops else ""
        return (f"Converged at step {steps:,}: the training loss had stopped improving "
                f"(by less than {cfg.tol:.1%} over {cfg.patience:,} steps{lowered}).")
    if stopped_by == "step cap" or result.message.startswith("reached the step cap"):
        return f"Not converged: it used all {cfg.steps:,} training steps it was allowed (the step cap)."
    return f"Finished: {result.message}."


HEAVY_TAIL = (
    "The target h = C·p³ is heavy-tailed: "
    "most inputs give a tiny h, a rare few a huge one. The test loss averages over {n_eval:,} fresh inputs, "
    "including those rare ones whose feature p lies beyond anything in the training data. There the network "
    "is linear in its feature (its second layer is ReLU) while h is cubic, so it misses them badly, and those "
    "few inputs carry a large share of E[h²] = 1. The feature correlation measures how well g follows p on "
    "all inputs alike, so a network can have learned p (correlation near 1) and still have a sizeable test loss. "
    "A test loss of 1 is what predicting 0 everywhere scores."
)
