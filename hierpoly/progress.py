"""The one progress record: from the training loop, through the job table, to the page.

The loop reports a ``Progress`` between compiled chunks; the worker writes
``to_json()`` into the job table; pages and the CLI read it back with
``from_json``. Training rows (``phase == "training"``) are a run's history; the
other phases say what the run is doing when there is no new training row
(starting, tuning: the two-layer baseline's learning-rate trials, compiling the
first chunk, evaluating on n_eval points); a ``resumed`` row marks the step at which a
run went on from its checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from hierpoly.jsonvalue import jsonable

PHASES = ("starting", "tuning", "compiling", "training", "evaluating")  # tuning: its trials compile their own
RESUMED = "resumed"  # a row at the step a run resumed from its checkpoint (not a phase of its own: training goes on)
METRIC_FIELDS = ("train_loss", "test_loss", "feature_corr")


@dataclass(frozen=True)
class Progress:
    """One row of a run's progress."""

    step: int  # training steps done (layer-wise: T1 + T2 so far)
    train_loss: float  # NaN where the phase has none
    test_loss: float  # on the n_test monitor points
    feature_corr: float  # corr(g, p) on the monitor points
    seconds: float  # since the run started
    phase: str = "training"  # one of PHASES
    fraction: float | None = None  # share of the phase done (evaluating: of n_eval; tuning: of the trials), when known
    # training rows: g on the first monitor points; the "starting" row: p on those same points
    feature_sample: tuple[float, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        """What the row says the run is doing, in a few words."""
        return f"resumed from step {self.step}" if self.phase == RESUMED else self.phase

    @property
    def is_history(self) -> bool:
        return self.phase == "training"

    def to_json(self) -> dict:
        """A JSON-safe dict: non-finite metrics become None (JSON has no NaN)."""
        return jsonable(asdict(self))

    @classmethod
    def from_json(cls, data: dict) -> Progress:
        """The record of ``to_json`` (or an older row without phase fields); missing metrics are NaN."""
        metrics = {name: math.nan if data.get(name) is None else float(data[name]) for name in METRIC_FIELDS}
        sample = tuple(math.nan if v is None else float(v) for v in data.get("feature_sample") or ())
        fraction = data.get("fraction")
        return cls(
            step=int(data.get("step", 0)),
            seconds=float(data.get("seconds", 0.0)),
            phase=str(data.get("phase", "training")),
            fraction=None if fraction is None else float(fraction),
            feature_sample=sample,
            **metrics,
        )
