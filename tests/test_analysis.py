"""Aggregation, crossings and the exponent κ on synthetic runs with a known law."""
import math

import numpy as np
import pandas as pd
import pytest

from hierpoly.study import cell_stats, crossings, exponents, kappa_fit


def synthetic_runs(kappa: float, ds=(8, 12, 16, 20), seeds=4, noise=0.02, rng_seed=0, k=3, arch="three_layer"):
    """corr = sigmoid(2 log(n / d^κ)) + noise on the grid n = d^k · 2^j, j = -3..3 (crosses 0.9 at n = 3 d^κ)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for d in ds:
        for j in range(-3, 4):
            n = round(d**k * 2.0**j)
            for s in range(seeds):
                corr = 1 / (1 + math.exp(-2 * math.log(n / d**kappa))) + noise * rng.standard_normal()
                rows.append({"arch": arch, "d": d, "n": n, "k": k, "seed": s, "feature_corr": corr, "test_loss": 1 - corr})
    return pd.DataFrame(rows)


def test_aggregate_exact_values():
    runs = pd.DataFrame({
        "arch": ["three_layer"] * 3 + ["kernel"], "d": [4, 4, 4, 4], "n": [32, 32, 32, 32], "k": [3] * 4,
        "seed": [0, 1, 2, 0], "test_loss": [0.1, 0.2, 0.6, 0.9], "feature_corr": [0.5, 0.7, 0.9, 0.1],
    })
    cells = cell_stats.aggregate(runs).set_index("arch")
    net = cells.loc["three_layer"]
    assert net["seeds"] == 3 and net["n_over_dk"] == 0.5
    assert net["test_loss_mean"] == pytest.approx(0.3)
    assert net["test_loss_std"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert (net["feature_corr_min"], net["feature_corr_max"]) == (0.5, 0.9)
    assert cells.loc["kernel", "seeds"] == 1 and math.isnan(cells.loc["kernel", "test_loss_std"])


def test_cell_standard_errors_and_converged_fraction():
    runs = pd.DataFrame({
        "arch": ["three_layer"] * 3 + ["kernel"], "d": [4] * 4, "n": [32] * 4, "k": [3] * 4, "seed": [0, 1, 2, 0],
        "test_loss": [0.1, 0.2, 0.6, 0.9], "test_loss_se": [0.03, 0.04, 0.12, 0.05], "feature_corr": [0.5, 0.7, 0.9, 0.1],
        "stopped_by": ["plateau", "step cap", "plateau", "closed form"], "converged": [True, False, True, True],
    })
    cells = cell_stats.aggregate(runs).set_index("arch")
    net, kernel = cells.loc["three_layer"], cells.loc["kernel"]
    assert net["test_loss_se"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1) / np.sqrt(3))
    assert net["test_loss_eval_se"] == pytest.approx(np.sqrt(0.03**2 + 0.04**2 + 0.12**2) / 3)
    assert math.isnan(kernel["test_loss_se"]) and kernel["test_loss_eval_se"] == pytest.approx(0.05)  # one seed
    assert net["converged_fraction"] == pytest.approx(2 / 3) and kernel["converged_fraction"] == 1.0
    # older results carry only stopped_by; layer-wise runs (converged None) are not judged
    judged = cell_stats.aggregate(runs.drop(columns="converged").assign(arch="three_layer", seed=[0, 1, 2, 3]))
    assert judged["converged_fraction"].iloc[0] == pytest.approx(2 / 3)
    unjudged = cell_stats.aggregate(runs.assign(converged=None, stopped_by="fixed steps"))
    assert unjudged["converged_fraction"].isna().all()
    table = cell_stats.figure2_cells(cell_stats.aggregate(runs))
    assert math.isnan(table["kernel_test_loss_se"].iloc[0]) and "test_loss_se" in table


def test_crossing_interpolates_in_log_n():
    # corr 0.8 at n = 100, 1.0 at n = 10000: 0.9 is half way in log n, n* = 1000
    assert crossings.crossing(np.array([10000, 100]), np.array([1.0, 0.8]), 0.9) == pytest.approx(1000)
    assert math.isnan(crossings.crossing(np.array([1, 2]), np.array([0.1, 0.2]), 0.9))  # never crosses
    assert math.isnan(crossings.crossing(np.array([1, 2]), np.array([0.95, 0.99]), 0.9))  # below the grid


@pytest.mark.parametrize("kappa", [2.0, 3.0, 3.5])
def test_exponent_exact_without_noise(kappa):
    """corr = sigmoid(log(n/d^κ)) crosses 0.9 at n* = 9 d^κ, so log n* = κ log d + log 9. The grid
    is d^κ · 2^j for every d, so the log-n interpolation error is the same factor for every d
    and κ comes out exact."""
    rows = []
    for d in (8, 16, 32, 64, 128):
        for j in np.arange(-4, 8, 0.25):
            n = d**kappa * 2.0**j
            rows.append({"arch": "three_layer", "d": d, "n": n, "k": 3, "seed": 0, "feature_corr": 1 / (1 + 1 / (n / d**kappa)), "test_loss": 0.0})
    est = kappa_fit.exponent(pd.DataFrame(rows), n_boot=20)
    assert est.estimate == pytest.approx(kappa, abs=1e-9)
    assert est.intercept == pytest.approx(math.log(9), abs=0.01)
    assert est.low == pytest.approx(kappa, abs=1e-9) and est.high == pytest.approx(kappa, abs=1e-9)  # one seed, no spread


def test_exponent_with_noise_recovers_three_and_ci_covers():
    runs = synthetic_runs(3.0, noise=0.02)
    est = kappa_fit.exponent(runs, n_boot=300)
    assert est.estimate == pytest.approx(3.0, abs=0.1)
    assert est.low < est.estimate < est.high and est.low <= 3.0 <= est.high
    assert est.high - est.low < 0.5 and est.replicates == 300
    # deterministic for a fixed bootstrap seed
    again = kappa_fit.exponent(runs, n_boot=300)
    assert (again.low, again.high) == (est.low, est.high)


def test_exponent_distinguishes_kq_from_k():
    """A law in d^9 (kernel-like, d^{kq}) must not be read as d^3: κ is measured, not assumed."""
    rows = []
    for d in (4, 5, 6, 8):
        for j in range(-3, 6):
            n = d**9 * 2.0**j
            rows.append({"arch": "three_layer", "d": d, "n": n, "k": 3, "seed": 0, "feature_corr": 1 / (1 + d**9 / n), "test_loss": 0.0})
    assert kappa_fit.exponent(pd.DataFrame(rows), n_boot=10).estimate == pytest.approx(9.0, abs=0.05)


def test_exponent_missing_crossings_gives_reason():
    runs = synthetic_runs(3.0, noise=0.0)
    runs = runs[runs["d"] == 8]  # only one d
    est = kappa_fit.exponent(runs, n_boot=10)
    assert est.estimate is None and est.low is None and "at least two d" in est.reason
    flat = synthetic_runs(3.0).assign(feature_corr=0.3)
    assert kappa_fit.exponent(flat, n_boot=10).reason.startswith("need n*(d) for at least two d, have 0")


def test_collapse_and_figure2_cells():
    runs = pd.concat([synthetic_runs(3.0, seeds=2), synthetic_runs(3.0, seeds=2, arch="kernel").assign(test_loss=0.8)])
    cells = cell_stats.aggregate(runs)
    col = cell_stats.collapse(cells)
    net = col[col["arch"] == "three_layer"]
    # the same n/d^3 grid for every d: log2 x = -3..3
    assert sorted(set(np.round(net["log2_n_over_dk"], 9))) == list(range(-3, 4))
    table = cell_stats.figure2_cells(cells)
    assert len(table) == 28 and (table["seeds"] == 2).all()
    assert np.allclose(table["kernel_test_loss_mean"], 0.8) and table["two_layer_test_loss_mean"].isna().all()


def test_bad_tables_are_refused():
    with pytest.raises(cell_stats.AnalysisError, match="lacks the columns"):
        cell_stats.aggregate(pd.DataFrame({"d": [1]}))
    with pytest.raises(cell_stats.AnalysisError, match="threshold"):
        kappa_fit.exponent(synthetic_runs(3.0), threshold=1.5)


# ------------------------------------------------------- κ a reader can believe
def law_runs(kappa: float, k: int = 3, link: str = "cubic", seed: int = 0, ds=(8, 16, 32, 64), shift: float = 1.0):
    """corr = 1 / (1 + shift · d^κ / n) on n = d^κ · 2^j: logit(corr) = log n − κ log d − log shift exactly."""
    rows = []
    for d in ds:
        for j in np.arange(-4, 8, 0.5):
            n = d**kappa * 2.0**j
            corr = 1 / (1 + shift * d**kappa / n)
            rows.append({"arch": "three_layer", "d": d, "n": n, "k": k, "link": link, "sigma1": "cube", "mode": "joint",
                         "seed": seed, "feature_corr": corr, "test_loss": 1 - corr})
    return pd.DataFrame(rows)


def test_vectorised_crossings_agree_with_the_scalar_definition():
    rng = np.random.default_rng(1)
    n = np.sort(rng.uniform(10, 1e4, 9))
    scores = rng.uniform(0, 1, (200, 9))
    many = crossings._crossings(n, scores, 0.7)
    one = np.array([crossings.crossing(n, row, 0.7) for row in scores])
    assert np.array_equal(np.isnan(many), np.isnan(one)) and np.allclose(many[~np.isnan(many)], one[~np.isnan(one)])


def test_bootstrap_resamples_whole_seeds():
    """Seed 0 follows d^2, seed 1 d^3 in every cell. Whole-seed replicates hold seed 0 twice, seed 1
    twice or both, so the replicates without one seed are exactly the other's one-seed fit; resampling
    cells independently would mix the two laws cell by cell and never reach them. Such a bootstrap
    is two scenarios, not one distribution: no interval, the split instead."""
    rows = [{"arch": "three_layer", "d": d, "n": n, "k": 3, "seed": s, "feature_corr": 1 / (1 + d**law / n), "test_loss": 0.0}
            for s, law in ((0, 2.0), (1, 3.0)) for d in (4, 8, 16) for n in 2.0 ** np.arange(0, 20, 0.25)]
    runs = pd.DataFrame(rows)
    alone = [kappa_fit.exponent(runs[runs["seed"] == s], n_boot=5).estimate for s in (0, 1)]
    both = kappa_fit.exponent(runs, n_boot=400, seed=3, statistic="mean")
    assert alone == pytest.approx([2.0, 3.0], abs=0.02)
    # two seeds are two scenarios: the replicates without one seed are the other seed's fit alone
    assert both.low is None and both.high is None
    other = alone[1 - both.split["seed"]]
    assert (both.split["without"]["low"], both.split["without"]["high"]) == pytest.approx((other, other), abs=1e-12)
    assert alone[0] < both.estimate < alone[1]
    grid = crossings.SeedGrid.from_runs(runs, "feature_corr")
    assert np.allclose(grid.means(np.ones((1, 2)))[0], runs.groupby(["d", "n"])["feature_corr"].mean().to_numpy())
    assert np.allclose(grid.means(np.array([[2.0, 0.0]]))[0], runs[runs["seed"] == 0].sort_values(["d", "n"])["feature_corr"])


@pytest.mark.parametrize("kappa", [1.0, 2.0, 3.0])
def test_collapse_fit_is_exact_on_a_logistic_law(kappa):
    est = kappa_fit.collapse_exponent(law_runs(kappa, shift=3.0), n_boot=5)
    assert est.method == "collapse" and est.estimate == pytest.approx(kappa, abs=1e-9)


def test_kappas_at_each_threshold_and_the_collapse():
    runs = pd.concat([law_runs(2.0, seed=s, shift=1 + 0.1 * s) for s in range(3)])
    out = kappa_fit.kappas(runs, n_boot=50)
    assert [b["threshold"] for b in out["by_threshold"]] == [0.8, 0.9, 0.95]
    for b in out["by_threshold"]:  # a pure power law: every threshold gives κ = 2 (up to log-n interpolation)
        assert b["estimate"] == pytest.approx(2.0, abs=0.02) and b["low"] <= b["estimate"] <= b["high"]
    assert out["estimate"] == out["by_threshold"][1]["estimate"] and out["collapse"]["estimate"] == pytest.approx(2.0, abs=1e-6)
    assert out["criterion"] == "feature_corr" and out["collapse"]["replicates"] == 50
    again = kappa_fit.kappas(runs, n_boot=50)
    assert again == out  # seeded bootstrap: deterministic


def test_exponent_table_groups_by_target_and_never_mixes():
    runs = pd.concat([law_runs(2.0, k=2, link="quartic"), law_runs(3.0, k=3, link="cubic"),
                      law_runs(2.0, k=2, link="quadratic"), law_runs(3.0).assign(arch="kernel", feature_corr=0.0)])
    entries = exponents.exponent_table(runs, n_boot=10)
    assert [(e["k"], e["q"], e["link"]) for e in entries] == [(2, 2, "quadratic"), (2, 4, "quartic"), (3, 3, "cubic")]
    for e in entries:
        assert e["estimate"] == pytest.approx(e["k"], abs=0.02) and e["kernel_kq"] == e["k"] * e["q"]
        assert e["ds"] == [8, 16, 32, 64] and e["arch"] == "three_layer"
    with pytest.raises(cell_stats.AnalysisError, match="mix targets"):
        kappa_fit.exponent(runs)
    with pytest.raises(cell_stats.AnalysisError, match="mix targets"):
        cell_stats.figure2_cells(cell_stats.aggregate(runs))
    cells = cell_stats.aggregate(runs)
    assert len(cells) == len(runs.drop_duplicates(["arch", "k", "link", "d", "n"]))  # targets stay apart
    frame = exponents.exponent_frame(entries)
    assert list(frame["kappa"]) == [e["estimate"] for e in entries] and "kappa@0.95" in frame


def test_criterion_follows_what_the_first_layer_can_represent():
    # k = 1: cubic units with biases can fit p², p³ (= h for q ≤ 3): corr(g, p) is no measure
    assert [cell_stats.criterion_for(1, link) for link in ("quadratic", "cubic", "quartic")] == ["explained"] * 3
    assert [cell_stats.criterion_for(2, link) for link in ("quadratic", "cubic", "quartic")] == ["feature_corr"] * 3
    assert cell_stats.criterion_for(3, "cubic") == "feature_corr" and cell_stats.criterion_for(1, "cubic", "relu") == "feature_corr"
    runs = law_runs(1.0, k=1).assign(feature_corr=0.0)  # the correlation stays flat; the loss falls
    assert kappa_fit.exponent(runs, criterion="explained", n_boot=5).estimate == pytest.approx(1.0, abs=0.02)
    assert kappa_fit.exponent(runs, n_boot=5).estimate is None
    with pytest.raises(cell_stats.AnalysisError, match="criterion"):
        kappa_fit.exponent(runs, criterion="accuracy")


def test_first_stage_signal_is_steins_coefficient_of_the_link():
    assert [cell_stats.first_stage_signal(link) for link in ("quadratic", "cubic", "quartic", "linear")] == [False, True, False, True]
    assert cell_stats.first_stage_signal("0,0,1,0.5") and not cell_stats.first_stage_signal("1,0,2,0,3")
    assert cell_stats.first_stage_signal("std:h1+h2") and cell_stats.first_stage_signal("std:h1+h4")
    assert not cell_stats.first_stage_signal("std:quartic")
    # why even links fail for k = 2: h_2(z)^2 = h_4(z)·sqrt(24)/2 + 2·sqrt(2)·h_2(z) + 1, so the degree-2
    # part of p^2 is 2·sqrt(2)·Σ_i h_2(x_i): the signs λ_i are gone, and with them p
    z = np.random.default_rng(0).standard_normal(400_000)
    h2, h4 = (z**2 - 1) / math.sqrt(2), (z**4 - 6 * z**2 + 3) / math.sqrt(24)
    assert np.allclose(h2**2, math.sqrt(24) / 2 * h4 + 2 * math.sqrt(2) * h2 + 1)


def test_collapse_fit_needs_curves_that_pass_mid_transition():
    runs = law_runs(2.0)
    runs["feature_corr"] = 0.1 + 0.01 * np.log(runs["n"])  # rises with n but never reaches 0.5
    est = kappa_fit.collapse_exponent(runs, n_boot=5)
    assert est.estimate is None and "passes 0.5" in est.reason


def test_weighted_medians_match_numpy_on_the_drawn_multisets():
    """SeedGrid.medians against a slow reference: np.median of each replicate's multiset of seeds,
    with NaN cells (a seed without that run) left out, and even and odd multiset sizes."""
    rng = np.random.default_rng(5)
    scores = rng.uniform(size=(5, 7))
    scores[1, 2] = scores[3, 2] = np.nan
    scores[:, 6] = np.nan  # no seed has this cell
    grid = crossings.SeedGrid(np.arange(7), np.arange(7.0), scores, tuple(range(5)))
    weights = np.vstack([grid.drawn(200, 1), np.ones((1, 5)), np.eye(5)[:2] + np.eye(5)[3]])
    got = grid.medians(weights)
    for b, row in enumerate(weights):
        for c in range(7):
            values = np.repeat(scores[:, c], row.astype(int))
            values = values[np.isfinite(values)]
            want = np.median(values) if values.size else np.nan
            assert got[b, c] == pytest.approx(want, abs=1e-15, nan_ok=True)


def test_the_median_ignores_one_seed_on_a_poor_feature_and_the_mean_splits():
    """Five seeds follow n* = 3 d^3; seed 4 sits at 0.2 in the cell just past d = 8's crossing (n = 4 d^3).
    The median κ stays at 3 (the law) with an interval; the mean's κ moves, and its bootstrap
    splits by whether seed 4 is drawn, so no interval is reported for it."""
    runs = synthetic_runs(3.0, seeds=5, noise=0.005)
    runs.loc[(runs["d"] == 8) & (runs["n"] == 2048) & (runs["seed"] == 4), "feature_corr"] = 0.2
    median = kappa_fit.kappas(runs, n_boot=300)
    assert median["statistic"] == "median" and median["split"] is None
    assert median["estimate"] == pytest.approx(3.0, abs=0.05) and median["low"] <= 3.0 <= median["high"]
    mean = median["sensitivity"]
    assert mean["statistic"] == "mean" and abs(mean["estimate"] - 3.0) > 0.3
    assert mean["split"]["seed"] == 4 and mean["low"] is None and mean["high"] is None
    assert mean["split"]["without"]["low"] > mean["split"]["with"]["high"]


def test_local_slopes_are_exact_on_a_law_whose_exponent_grows_with_d():
    """n*(d) = 9·d^2 up to d = 16, then 9·16^2·(d/16)^4: the successive slopes are 2, 2 then 4."""
    def n_star(d):
        return 9 * d**2 if d <= 16 else 9 * 16**2 * (d / 16) ** 4

    rows = [{"arch": "three_layer", "d": d, "n": n, "k": 3, "seed": 0, "feature_corr": 1 / (1 + 9 / (n / n_star(d) * 9)),
             "test_loss": 0.0} for d in (4, 8, 16, 32) for n in n_star(d) * 2.0 ** np.arange(-4, 8, 0.25)]
    est = kappa_fit.exponent(pd.DataFrame(rows), n_boot=10)
    slopes = [(s["d_low"], s["d_high"], s["slope"]) for s in est.local_slopes]
    assert [s[:2] for s in slopes] == [(4, 8), (8, 16), (16, 32)]
    assert [s[2] for s in slopes] == pytest.approx([2.0, 2.0, 4.0], abs=1e-9)


def test_success_fraction_counts_seeds_past_the_threshold():
    runs = pd.DataFrame({
        "arch": ["three_layer"] * 4 + ["kernel"], "d": [4] * 5, "n": [32] * 5, "k": [3] * 5, "seed": [0, 1, 2, 3, 0],
        "test_loss": [0.1, 0.2, 0.6, 0.3, 0.9], "feature_corr": [0.95, 0.9, 0.5, np.nan, np.nan],
    })
    cells = cell_stats.aggregate(runs, threshold=0.9).set_index("arch")
    assert cells.loc["three_layer", "success_fraction"] == pytest.approx(2 / 3)  # the NaN seed has no score
    assert math.isnan(cells.loc["kernel", "success_fraction"])
    assert cells.loc["three_layer", "test_loss_median"] == pytest.approx(0.25)
    # k = 1 with a cubic link is judged by 1 − test loss (criterion_for): 0.9, 0.8, 0.4, 0.7 past 0.75
    k1 = cell_stats.aggregate(runs.assign(k=1), threshold=0.75).set_index("arch")
    assert k1.loc["three_layer", "success_fraction"] == pytest.approx(2 / 4)
    table = cell_stats.figure2_cells(cell_stats.aggregate(runs))
    assert {"corr_median", "corr_min", "corr_max", "success_fraction"} <= set(table.columns)
    assert table["corr_median"].iloc[0] == pytest.approx(0.9)


def test_unknown_statistic_is_refused():
    with pytest.raises(cell_stats.AnalysisError, match="statistic must be one of median, mean"):
        kappa_fit.exponent(synthetic_runs(3.0, seeds=2), n_boot=5, statistic="mode")


def test_diagnosis_says_in_numbers_where_a_row_departs_from_k():
    """κ = k: nothing to say. κ = 2 for k = 1 (q = 2): n*/d^2 is the same for every d. No crossing: each d's best."""
    at_k = exponents.exponent_table(synthetic_runs(3.0, seeds=2), n_boot=5)[0]
    assert exponents.diagnosis(at_k, cell_stats.aggregate(synthetic_runs(3.0, seeds=2))) is None
    # k = 1, link of degree q = 2 (1 − test loss is its score), on n = d^2 · 2^j: 1 − loss crosses 0.9 at n = 3 d^2 (3.27 d^2 interpolated in log n)
    runs = pd.DataFrame([{"arch": "three_layer", "d": d, "n": d * d * 2.0**j, "k": 1, "seed": s, "link": "0,1,1",
                          "feature_corr": 0.5, "test_loss": 1 - 1 / (1 + 2.0 ** (-2 * j))}
                         for d in (8, 16, 32) for j in range(-3, 4) for s in range(2)])
    entry = exponents.exponent_table(runs, n_boot=5)[0]
    text = exponents.diagnosis(entry, cell_stats.aggregate(runs))
    assert entry["criterion"] == "explained" and entry["estimate"] == pytest.approx(2.0, abs=0.05)
    assert text.startswith("κ = 2.00 against k = 1: for d = 8, 16, 32, n*/d^1 = ") and "n*/d^2 = 3.27, 3.27, 3.27" in text  # one value: n* follows d^2
    flat = runs.assign(test_loss=0.5)
    entry = exponents.exponent_table(flat, n_boot=5)[0]
    text = exponents.diagnosis(entry, cell_stats.aggregate(flat))
    assert entry["estimate"] is None and text.startswith("the seed-median 1 − test loss never reaches 0.9 on the grid")
    assert "d = 8: best 0.50 at n = 8, 0.50 at the largest n = 512" in text


def test_the_slope_trend_says_how_the_local_slopes_move_and_whether_the_last_holds_k():
    def slope(d_low, d_high, value, low=None, high=None):
        return {"d_low": d_low, "d_high": d_high, "slope": value, "low": low, "high": high}

    rising = [slope(8, 12, 2.2, 1.8, 4.5), slope(12, 16, 2.5, 0.8, 3.0), slope(16, 20, 2.9, 2.7, 3.1)]
    assert kappa_fit.slope_trend(rising, 3) == ("The local slopes rise at every step in d (2.20 → 2.50 → 2.90), all "
                                              "below k = 3; the last, 16→20, holds k in its 95% interval [2.70, 3.10].")
    mixed = [slope(8, 12, 2.27, 1.81, 4.56), slope(12, 16, 2.92, 0.82, 2.96), slope(16, 20, 2.44, 2.18, 2.65)]
    assert kappa_fit.slope_trend(mixed, 3) == ("The local slopes do not move steadily with d (2.27 → 2.92 → 2.44), all "
                                             "below k = 3; the last, 16→20, does not hold k in its 95% interval "
                                             "[2.18, 2.65].")
    assert kappa_fit.slope_trend([slope(8, 12, 3.4), slope(12, 16, 3.1)], 3) == (
        "The local slopes fall at every step in d (3.40 → 3.10); the last, 12→16, has no interval.")
    assert kappa_fit.slope_trend(mixed[:1], 3) == ""
