"""The foundation's two small rules, each written once: plain JSON values (NaN becomes None) and an error's first line."""
from __future__ import annotations

import json
import math

import numpy as np

from hierpoly.failure import first_line
from hierpoly.jsonvalue import jsonable
from hierpoly.progress import Progress


def test_jsonable_gives_plain_values_and_none_for_every_non_finite_float():
    value = {"a": np.float32(0.5), "b": np.float64(math.nan), "c": (np.int64(3), math.inf, -math.inf),
             "d": np.array([[1.0, np.nan], [2.0, 3.0]]), 4: [True, None, "x", np.bool_(False)]}
    assert jsonable(value) == {"a": 0.5, "b": None, "c": [3, None, None], "d": [[1.0, None], [2.0, 3.0]],
                               "4": [True, None, "x", False]}
    text = json.dumps(jsonable(value), allow_nan=False)  # strict JSON: it would raise on a NaN left behind
    assert type(json.loads(text)["c"][0]) is int


def test_a_progress_row_round_trips_through_strict_json():
    row = Progress(step=np.int64(7), train_loss=np.float32(0.25), test_loss=math.nan, feature_corr=0.5, seconds=1.5,
                   feature_sample=(0.1, math.nan))
    data = json.loads(json.dumps(row.to_json(), allow_nan=False))
    assert data["step"] == 7 and data["train_loss"] == 0.25 and data["test_loss"] is None
    back = Progress.from_json(data)
    assert (back.step, back.train_loss, back.feature_corr, back.seconds, back.phase) == (7, 0.25, 0.5, 1.5, "training")
    assert math.isnan(back.test_loss) and back.feature_sample[0] == 0.1 and math.isnan(back.feature_sample[1])


def test_first_line_is_the_first_words_of_the_message_or_the_type():
    assert first_line(ValueError("bad value\n  at line 2")) == "bad value"
    assert first_line(RuntimeError("\n\n   task failed  \ntraceback")) == "task failed"
    assert first_line(KeyError()) == "KeyError" and first_line(OSError("  \n")) == "OSError"
