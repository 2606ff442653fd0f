"""Finite-d readings and the predictions of n* at a larger d, on runs with a known law."""
import math

import numpy as np
import pandas as pd
import pytest

from hierpoly.study import readings


def law_runs(scale, ds=(8, 12, 16, 20, 24), seeds=3, k=3):
    """corr = sigmoid(log(n / scale(d))) on the grid n = scale(d) · 2^j, the same for every seed: it crosses 0.9
    at n* = F · scale(d), with one interpolation factor F for every d."""
    rows = []
    for d in ds:
        for j in np.arange(-3, 6, 0.5):
            n = scale(d) * 2.0**j
            for s in range(seeds):
                rows.append({"arch": "three_layer", "d": d, "n": n, "k": k, "seed": s,
                             "feature_corr": 1 / (1 + scale(d) / n), "test_loss": 0.0})
    return pd.DataFrame(rows)


def _factor(scale, d=8):
    return readings.n_star_draws(law_runs(scale, ds=(d,)), 0.9).point[0] / scale(d)


def test_counts_are_the_binomials():
    assert readings.count(8, 3) == math.comb(11, 3) == 165 and readings.homogeneous(8, 3) == math.comb(10, 3) == 120
    assert readings.count(1, 2) == 3  # 1, x, x²
    assert readings.homogeneous(2, 2) == 3  # x², xy, y²


def test_each_reading_predicts_exactly_the_law_it_states():
    power = lambda d: 2.0 * d**2.5  # noqa: E731
    out = readings.predictions(law_runs(power))["readings"]
    assert out["power_law"]["estimate"] == pytest.approx(_factor(power) * power(32), rel=1e-9)
    assert out["power_law"]["kappa"] == pytest.approx(2.5, abs=1e-9)
    # identical seeds: every replicate is the point, one distinct value, so the interval is marked
    assert out["power_law"]["low"] == pytest.approx(out["power_law"]["estimate"], rel=1e-9)
    assert out["power_law"]["marked"].startswith("1 distinct replicate values")
    flat = lambda d: 1.9 * readings.count(d, 3)  # noqa: E731
    out = readings.predictions(law_runs(flat))["readings"]
    assert out["flat_count"]["estimate"] == pytest.approx(_factor(flat) * flat(32), rel=1e-9)
    assert out["flat_count"]["at_last_d"]["estimate"] == pytest.approx(out["flat_count"]["estimate"], rel=1e-9)
    assert out["flat_dk"]["estimate"] == pytest.approx(_factor(flat) * flat(24) * (32 / 24) ** 3, rel=1e-9)
    assert out["power_law"]["estimate"] != pytest.approx(out["flat_count"]["estimate"], rel=1e-3)  # C(d+3,3) is no power


def test_the_predictions_never_read_the_runs_they_predict():
    flat = lambda d: 1.9 * readings.count(d, 3)  # noqa: E731
    before = readings.predictions(law_runs(flat))
    assert before["measured"] is None
    after = readings.predictions(law_runs(flat, ds=(8, 12, 16, 20, 24, 32)))
    assert after["readings"] == before["readings"]
    assert after["measured"]["estimate"] == pytest.approx(_factor(flat) * flat(32), rel=1e-9)
    assert readings.predictions(law_runs(flat, ds=(8, 12, 16))) is None  # the fitted d are not all there


def test_an_interval_is_marked_for_few_distinct_replicates_or_mixed_d_sets():
    rng = np.random.default_rng(0)
    wide = readings.interval(1.0, rng.normal(1, 0.1, 1000))
    assert wide["marked"] is None and wide["distinct"] == 1000 and wide["low"] < 1 < wide["high"]
    few = readings.interval(1.0, rng.choice([0.9, 1.0, 1.1], 1000))
    assert few["distinct"] == 3 and "3 distinct replicate values" in few["marked"]
    mixed = readings.interval(1.0, rng.normal(1, 0.1, 1000), mixed=12)
    assert "12 of 1000 replicates rest on another set of d" in mixed["marked"]


def noisy_law_runs(scale, ds=(8, 12, 16, 20, 24), seeds=6, noise=0.01, k=3):
    """corr = sigmoid(2 log(n / scale(d))) + noise per seed and cell, on n = d^k · 2^(j/2): crosses 0.9 at about
    n = 3 scale(d), with the same shape in log n at every d (the width n*(0.95)/n*(0.5) is the same)."""
    rng = np.random.default_rng(1)
    rows = []
    for d in ds:
        for j in range(-8, 9):
            n = d**k * 2.0 ** (j / 2)
            for s in range(seeds):
                corr = 1 / (1 + (scale(d) / n) ** 2) + noise * rng.standard_normal()
                rows.append({"arch": "three_layer", "d": d, "n": n, "k": k, "seed": s, "feature_corr": corr,
                             "test_loss": 0.0})
    return pd.DataFrame(rows)


def test_the_flat_ratio_is_the_law_s_own_and_the_others_are_measured_not_flat():
    rd = readings.grid_readings(noisy_law_runs(lambda d: 0.3 * readings.count(d, 3)), 3)
    at = {s["threshold"]: s for s in rd["slopes"]}[0.9]
    assert at["count"]["flat"] is True and at["count"]["low"] < 0 < at["count"]["high"]
    # C(d+3,3)/d³ falls over d = 8 … 24 (log-slope 2.62 − 3): n*/d³ is not flat, and it is measured so
    assert at["dk"]["flat"] is False and at["dk"]["high"] < 0
    assert at["dk"]["estimate"] == pytest.approx(rd["kappa_by_threshold"][6]["estimate"] - 3, abs=1e-9)  # κ − k
    assert [row["d"] for row in rd["per_d"]] == [8, 12, 16, 20, 24]
    row = rd["per_d"][0]
    assert row["n_star_over_count"]["estimate"] == pytest.approx(row["n_star"]["estimate"] / 165)
    assert row["n_star_over_homogeneous"]["estimate"] == pytest.approx(row["n_star"]["estimate"] / 120)
    assert row["n_star_over_dk"]["estimate"] == pytest.approx(row["n_star"]["estimate"] / 512)
    # the same logistic shape at every d: the width does not move with d
    assert rd["width_slope"]["low"] < 0 < rd["width_slope"]["high"]
    assert "it does not narrow measurably as d grows" in readings.width_sentence(rd)
    flat = readings.flatness_sentence(rd, 0.9)
    assert "Flat within its interval: n*/C(d+3,3)" in flat and "Not flat: n*/d^3" in flat


def test_the_shift_sentence_reads_the_direction_from_the_interval():
    rd = readings.grid_readings(noisy_law_runs(lambda d: 0.3 * d**2.5), 3)
    assert "the crossing moves left in n/d^3 as d grows" in readings.shift_sentence(rd)
    rd = readings.grid_readings(noisy_law_runs(lambda d: 0.3 * d**3.0), 3)
    assert "does not move measurably in n/d^3" in readings.shift_sentence(rd)
    assert readings.kappa_threshold_sentence(rd).startswith("κ is ")


def test_the_below_k_caption_only_where_kappa_and_every_local_slope_are_below_k():
    def kappa(estimate, slopes):
        return {"estimate": estimate, "local_slopes": [{"d_low": 6 + 2 * i, "d_high": 8 + 2 * i, "slope": s}
                                                       for i, s in enumerate(slopes)]}
    assert "lie below the theory's k = 3" in readings.slope_caption(kappa(2.55, [2.3, 2.9]), 3)
    above = readings.slope_caption(kappa(2.4, [1.9, 3.11]), 2)
    assert "below the theory" not in above and "the local slope 8→10 is 3.11, above k" in above
    assert readings.slope_caption(kappa(1.85, [2.0]), 1).startswith("κ = 1.85 exceeds k = 1")
    assert readings.slope_caption({"estimate": None}, 3) == ""
