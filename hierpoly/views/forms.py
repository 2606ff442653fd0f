"""Page logic of the explorer that is not widget composition (no Streamlit, no JAX).

- URL query parameters <-> run configs: ``params_from_config`` writes the
  smallest set of parameters that rebuilds the same config (same ``key()``);
  ``values_from_params`` reads them back, one error per bad parameter.
- Form validation with the error attached to the control that caused it:
  ``build_config``.
- Live progress of a job as a view model with an ETA: ``progress_view``.
- The learned link against the true link on the learned feature's scale: ``link_fit``.
- Histories of several results as one CSV: ``histories_csv``.
"""
from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.config import ConfigError, RunConfig
from hierpoly.progress import Progress
from hierpoly.targets import TargetError, parse_link

INT_FIELDS = ("d", "n", "k", "m1", "m2", "steps", "patience", "seed", "n_test", "n_eval")
FLOAT_FIELDS = ("lr", "weight_decay", "tol", "b_scale")
STR_FIELDS = ("link", "sigma1", "arch", "mode")
FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
LOCK_PARAM = "lock"  # ?lock=1: the classroom link, controls pre-filled and locked
DEFAULT_VALUES = {"d": 6, "n": 864, "m2": 200, "steps": 1000, "n_test": 2048}  # seconds on a laptop CPU
# A config every single field is checked against, to tell which control an error belongs to.
_PROBE_BASE = {"d": 4, "n": 256}
ACTIVE = ("queued", "running")


# ------------------------------------------------------------- query params
def params_from_config(cfg: RunConfig) -> dict[str, str]:
    """The fewest query parameters that rebuild `cfg` exactly (d and n always; the rest when not default)."""
    params = {name: value for name, value in cfg.to_dict().items() if value is not None}
    for name in FIELDS:
        if name in ("d", "n") or name not in params:
            continue
        trial = {key: value for key, value in params.items() if key != name}
        try:
            if RunConfig(**trial).key() == cfg.key():
                params = trial
        except ConfigError:
            pass
    return {name: _format(params[name]) for name in FIELDS if name in params}


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class ParsedParams:
    """Config values read from a URL, the per-parameter errors, and the classroom lock."""

    values: dict  # field -> typed value, only the parameters present and readable
    errors: dict  # field -> one-line message
    locked: bool


def values_from_params(params: Mapping[str, str | Sequence[str]]) -> ParsedParams:
    """Typed config values from query parameters; unknown parameters are ignored."""
    values, errors = {}, {}
    for name in FIELDS:
        if name not in params:
            continue
        raw = params[name]
        text = (raw[-1] if raw else "") if isinstance(raw, (list, tuple)) else str(raw)
        text = text.strip()
        try:
            values[name] = _parse(name, text)
        except ValueError as err:
            errors[name] = str(err)
    lock = params.get(LOCK_PARAM, "")
    lock = lock[-1] if isinstance(lock, (list, tuple)) and lock else lock
    return ParsedParams(values, errors, str(lock).strip().lower() in ("1", "true", "yes"))


def _parse(name: str, text: str):
    if name in INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {text!r} in the link") from None
    if name in FLOAT_FIELDS:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {text!r} in the link") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {text!r} in the link")
        return value
    return text


def url_query(params: Mapping[str, str]) -> str:
    """`?a=1&b=2` for a shared link, URL-encoded."""
    from urllib.parse import urlencode

    return "?" + urlencode(dict(params)) if params else ""


# ------------------------------------------------------------------ the form
@dataclass(frozen=True)
class FormCheck:
    """A config when the form is valid; otherwise errors keyed by control ("" for the whole form)."""

    config: RunConfig | None
    errors: dict
    warnings: tuple


def build_config(values: Mapping) -> FormCheck:
    """Validate form values (None = the mode's default) and attach each error to its control.

    Each field is first checked alone against a small valid config, so a message
    lands next to the control that caused it; rules that tie fields together
    (e.g. layer-wise needs n ≥ 4) are reported for the whole form.
    """
    values = {name: value for name, value in values.items() if value is not None and value != ""}
    errors = {name: msg for name, value in values.items() if (msg := field_error(name, value))}
    if errors:
        return FormCheck(None, errors, ())
    try:
        cfg = RunConfig(**values)
    except (ConfigError, TargetError) as err:
        return FormCheck(None, {"": str(err)}, ())
    return FormCheck(cfg, {}, tuple(cfg.warnings()))


def field_error(name: str, value) -> str | None:
    """Why one control's value cannot be used (checked alone against a small valid config), or None."""
    if value is None or value == "":
        return None
    if name not in FIELDS:
        return f"unknown setting {name!r}"
    try:
        RunConfig(**{**_PROBE_BASE, name: value})
    except (ConfigError, TargetError) as err:
        return str(err)
    except TypeError as err:  # a value of the wrong kind
        return f"{name}: {err}"
    return None


def link_text_error(text: str) -> str | None:
    """The reason custom link coefficients cannot be used, or None."""
    try:
        parse_link(text)
    except TargetError as err:
        return str(err)
    return None


def total_steps(cfg: RunConfig) -> int:
    """Steps the progress bar counts: T1 + T2 for layer-wise, the step cap for joint."""
    return cfg.steps * (2 if cfg.mode == "layerwise" else 1)


# -------------------------------------------------------------- live progress
@dataclass(frozen=True)
class ProgressView:
    """What the live panel shows for one job."""

    status: str
    message: str
    step: int
    total: int
    fraction: float  # 0..1 for st.progress
    eta_seconds: float | None  # None until two progress rows exist
    text: str  # one line for the progress bar
    history: pd.DataFrame  # step, train_loss, test_loss, feature_corr, seconds


def history_frame(rows) -> pd.DataFrame:
    """Progress records (training rows only), dicts, or a dict of arrays as a DataFrame sorted by step."""
    columns = ["step", "train_loss", "test_loss", "feature_corr", "seconds"]
    if rows is not None and not isinstance(rows, Mapping):
        rows = [{c: getattr(r, c) for c in columns} if isinstance(r, Progress) else r
                for r in rows if not isinstance(r, Progress) or r.is_history]
    if rows is None or len(rows) == 0:
        return pd.DataFrame({name: pd.Series(dtype=float) for name in columns})
    frame = pd.DataFrame(rows if not isinstance(rows, Mapping) else {k: np.asarray(v) for k, v in rows.items()})
    return frame.sort_values("step").reset_index(drop=True) if "step" in frame else frame


def progress_view(status: str, message: str, rows, total: int, heartbeat_age: float | None = None) -> ProgressView:
    """Progress, ETA and the history so far of a job.

    ETA: the remaining steps at the average pace since the first recorded chunk
    (the first chunk includes compilation, so it is left out). Joint training may
    stop earlier at a plateau, so the ETA is an upper bound.
    """
    hist = history_frame(rows)
    step = int(hist["step"].iloc[-1]) if len(hist) else 0
    total = max(int(total), 1)
    eta = None
    if len(hist) >= 3:
        # rows: step 0 (init), first chunk (compile), later chunks
        d_step = float(hist["step"].iloc[-1] - hist["step"].iloc[1])
        d_sec = float(hist["seconds"].iloc[-1] - hist["seconds"].iloc[1])
        if d_step > 0 and d_sec >= 0:
            eta = max(total - step, 0) * d_sec / d_step
    if status == "queued":
        text = f"queued: {message}" if message else "queued: waiting for a worker"
    else:
        text = f"{status}: step {step} / {total}"
        if eta is not None:
            text += f", about {format_seconds(eta)} left (at most)"
        elif status == "running":
            text += ", compiling"
    if heartbeat_age is not None and heartbeat_age > 10:
        text += f" (last heartbeat {heartbeat_age:.0f} s ago)"
    return ProgressView(status, message, step, total, min(step / total, 1.0), eta, text, hist)


def format_seconds(seconds: float) -> str:
    """12 s, 3 min 5 s, 1 h 2 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


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


def parse_number_list(text: str, what: str, integer: bool = True) -> tuple:
    """'8, 12, 16' -> (8, 12, 16); a clear ValueError for anything else (never evaluated)."""
    parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    if not parts:
        raise ValueError(f"{what}: give at least one number, separated by commas")
    out = []
    for part in parts:
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            kind = "whole numbers" if integer else "numbers"
            raise ValueError(f"{what}: {part!r} is not a number; give {kind} separated by commas") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{what}: {part!r} must be positive")
        out.append(value)
    return tuple(out)


# ------------------------------------------------------------------ export
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


def run_label(cfg: RunConfig) -> str:
    """A short human label for a run: d, n, k, mode, seed."""
    return f"d={cfg.d} n={cfg.n} k={cfg.k} {cfg.link} {cfg.mode} seed={cfg.seed}"
