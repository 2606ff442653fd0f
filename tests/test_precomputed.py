"""The shipped results: on a fresh clone, Figure 2 appears from cache/precomputed with no training."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hierpoly.engine import baselines
from hierpoly.results import bundles
from hierpoly.results.store import Store
from hierpoly.study import presets, specs

REPO = Path(__file__).resolve().parent.parent
PRECOMPUTED = REPO / "cache" / "precomputed"
README = REPO / "README.md"

# The shipped cpu bundle is deterministic, so Figure 2 is pinned at the precision
# `python -m hierpoly figure2 --preset cpu` prints: (d, n): (test loss, corr(g, p), kernel test loss,
# two-layer test loss), seed means.
CPU_CELLS = {
    (8, 64): (0.9790, 0.1181, 0.9732, 1.1864), (8, 128): (1.0078, 0.2583, 0.9664, 1.1855),
    (8, 256): (0.8125, 0.8465, 0.9529, 1.1855), (8, 512): (0.7101, 0.8253, 0.9439, 1.1857),
    (8, 1024): (0.5116, 0.9612, 0.9254, 1.1853), (8, 2048): (0.3001, 0.9977, 0.9008, 1.1807),
    (8, 4096): (0.2172, 0.9988, 0.8902, 1.1796), (12, 216): (0.9511, 0.2287, 0.9586, 1.0752),
    (12, 432): (1.0630, 0.4429, 0.9585, 1.0748), (12, 864): (0.7087, 0.8237, 0.9581, 1.0749),
    (12, 1728): (0.3978, 0.9846, 0.9091, 1.0715), (12, 3456): (0.2557, 0.9951, 0.9085, 1.0705),
    (12, 6912): (0.1435, 0.9985, 0.8837, 1.0749), (12, 13824): (0.0948, 0.9995, 0.8213, 1.0268),
    (16, 512): (0.9870, 0.2208, 0.9707, 1.0242), (16, 1024): (0.8871, 0.5953, 0.9690, 1.0245),
    (16, 2048): (0.4877, 0.9358, 0.9624, 1.0245), (16, 4096): (0.2561, 0.9898, 1.0120, 1.0232),
    (16, 8192): (0.1534, 0.9975, 0.9165, 1.0216), (16, 16384): (0.0982, 0.9988, 0.8579, 1.0056),
    (16, 32768): (0.0720, 0.9995, 0.8220, 0.9728), (20, 1000): (1.0449, 0.2381, 0.9900, 0.9789),
    (20, 2000): (0.7692, 0.7298, 0.9874, 0.9796), (20, 4000): (0.4092, 0.9629, 0.9786, 0.9843),
    (20, 8000): (0.3498, 0.9358, 0.9338, 0.9796), (20, 16000): (0.1014, 0.9983, 0.8832, 0.9742),
    (20, 32000): (0.0689, 0.9996, 0.8523, 0.9483), (20, 64000): (0.0554, 0.9996, 0.8089, 0.9186),
}
# d = 24, shipped in cpu_d24.zip: (test loss, corr(g, p), kernel test loss, two-layer test loss), seed means; the
# two-layer baseline up to n = 4d³ (None: not run yet)
CPU_D24 = {(24, 1728): (1.0255, 0.2392, 0.9512, 0.958), (24, 3456): (0.6735, 0.7788, 0.9484, 0.9544),
           (24, 6912): (0.2871, 0.9762, 0.9206, 0.9549), (24, 13824): (0.126, 0.9969, 0.893, 0.9533),
           (24, 27648): (0.0703, 0.9991, 0.8324, 0.9523), (24, 55296): (0.0307, 0.9995, 0.7931, 0.9295),
           (24, 110592): (0.015, 0.9997, 0.7309, None)}
# (d, n): the correlation's median, min and max over seeds, and the share of seeds at or past 0.9
CPU_SPREAD = {
    (8, 64): (0.1163, 0.0949, 0.1431, 0.0), (8, 128): (0.2611, 0.1778, 0.3031, 0.0), (8, 256): (0.8526, 0.7624, 0.9327, 0.2),
    (8, 512): (0.9793, 0.2337, 0.9811, 0.8), (8, 1024): (0.9942, 0.8268, 0.9967, 0.8), (8, 2048): (0.9984, 0.9963, 0.9985, 1.0),
    (8, 4096): (0.9990, 0.9983, 0.9991, 1.0), (12, 216): (0.2394, 0.1890, 0.2576, 0.0), (12, 432): (0.4784, 0.2792, 0.5098, 0.0),
    (12, 864): (0.9245, 0.4077, 0.9572, 0.6), (12, 1728): (0.9867, 0.9708, 0.9928, 1.0), (12, 3456): (0.9943, 0.9920, 0.9975, 1.0),
    (12, 6912): (0.9986, 0.9975, 0.9993, 1.0), (12, 13824): (0.9997, 0.9990, 0.9998, 1.0), (16, 512): (0.2343, 0.1831, 0.2448, 0.0),
    (16, 1024): (0.5921, 0.5467, 0.6845, 0.0), (16, 2048): (0.9301, 0.9160, 0.9692, 1.0), (16, 4096): (0.9904, 0.9853, 0.9944, 1.0),
    (16, 8192): (0.9980, 0.9950, 0.9986, 1.0), (16, 16384): (0.9987, 0.9985, 0.9991, 1.0), (16, 32768): (0.9995, 0.9993, 0.9996, 1.0),
    (20, 1000): (0.2440, 0.2258, 0.2446, 0.0), (20, 2000): (0.7211, 0.6735, 0.7750, 0.0), (20, 4000): (0.9660, 0.9424, 0.9745, 1.0),
    (20, 8000): (0.9962, 0.6939, 0.9976, 0.8), (20, 16000): (0.9986, 0.9973, 0.9991, 1.0), (20, 32000): (0.9996, 0.9995, 0.9996, 1.0),
    (20, 64000): (0.9997, 0.9994, 0.9997, 1.0), (24, 1728): (0.2432, 0.2277, 0.2466, 0.0), (24, 3456): (0.7811, 0.7473, 0.8127, 0.0),
    (24, 6912): (0.9732, 0.9658, 0.9893, 1.0), (24, 13824): (0.997, 0.9965, 0.9972, 1.0), (24, 27648): (0.9993, 0.9986, 0.9994, 1.0),
    (24, 55296): (0.9997, 0.999, 0.9998, 1.0), (24, 110592): (0.9999, 0.9993, 0.9999, 1.0),
}
# κ from the seed median (95% whole-seed bootstrap interval, seed 0, 1000 replicates) at each threshold and
# from the collapse fit; the local slopes of log n*(d) between successive d at 0.9
CPU_KAPPA = {0.8: (2.48, 2.35, 2.54), 0.9: (2.54, 2.37, 2.72), 0.95: (2.47, 1.75, 2.55), "collapse": (2.51, 1.88, 2.56)}
CPU_SLOPES = [(8, 12, 2.27, 1.81, 4.56), (12, 16, 2.92, 0.82, 2.96), (16, 20, 2.44, 2.18, 2.65), (20, 24, 2.58, 2.18, 2.89),
              (24, 32, 2.44, 2.33, 2.97)]
# the mean as the sensitivity figure: at 0.9 and 0.95 its bootstrap splits by seed 4 (with it, without it)
CPU_MEAN_KAPPA = {0.8: (2.44, 2.38, 2.47), 0.9: (1.96, None, None), 0.95: (1.92, None, None)}
CPU_MEAN_SPLIT = {0.9: ((1.73, 2.05), (2.42, 2.58)), 0.95: ((1.65, 1.93), (2.37, 2.50))}

# n*(32) at 0.9 as three readings fitted on d = 8 … 24 predict it (seed median, 95% whole-seed bootstrap,
# seed 0, 1000 replicates), committed before any d = 32 network run: (estimate, low, high)
CPU_PREDICTIONS = {"power_law": (10968, 9906, 13384), "flat_dk": (12582, 11540, 13297),
                   "flat_count": (12443, 11567, 13760)}
PREDICTION_KAPPA = 2.55  # κ at 0.9 on d = 8 … 24, the power law's
# and n*(32) as measured once the d = 32 cells n = d³/4 and d³/2 were shipped (5 seeds each)
CPU_MEASURED_32 = (10716, 10377, 11948)
# d = 32, shipped in cpu_d32.zip (no two-layer baseline so far): (test loss, corr(g, p), kernel test loss), seed
# means (None: the kernel not shipped at that n); and the correlation's median, min, max and the share of seeds at
# or past 0.9
CPU_D32 = {(32, 4096): (1.0838, 0.3087, 0.9975), (32, 8192): (0.5882, 0.8340, 0.9959),
           (32, 16384): (0.2067, 0.9867, 0.9578), (32, 32768): (0.0876, 0.9982, 0.9137),
           (32, 65536): (0.0366, 0.9995, 0.8392)}
CPU_D32_SPREAD = {(32, 4096): (0.2984, 0.2714, 0.3721, 0.0), (32, 8192): (0.8464, 0.8003, 0.8566, 0.0),
                  (32, 16384): (0.9847, 0.9834, 0.9914, 1.0), (32, 32768): (0.9982, 0.9973, 0.9990, 1.0),
                  (32, 65536): (0.9996, 0.9990, 0.9997, 1.0)}

@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory) -> dict:
    return _figure2("cpu", tmp_path_factory.mktemp("cpu"))


def _figure2(preset: str, tmp_path, *options: str) -> dict:
    """`figure2 --preset P --json` in a fresh process on an empty store: what a fresh clone answers."""
    env = {**os.environ, "HIERPOLY_CACHE_DIR": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    env.pop("HIERPOLY_LOAD_PRECOMPUTED", None)  # a fresh clone loads them on first start
    res = subprocess.run([sys.executable, "-m", "hierpoly", "figure2", "--preset", preset, "--json", *options],
                         capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_the_shipped_bundles_are_small_and_import_cleanly(tmp_path):
    paths = sorted(PRECOMPUTED.glob("*.zip"))
    assert paths, "cache/precomputed holds no bundles"
    assert sum(p.stat().st_size for p in paths) < 20 << 20
    store = Store(tmp_path / "fresh")
    added = bundles.load_precomputed(store, PRECOMPUTED)
    assert len(added) == len(store) > 0
    assert bundles.load_precomputed(store, PRECOMPUTED) == []  # second start: nothing to do


@pytest.mark.process
def test_figure2_answers_from_the_shipped_bundles_alone(cpu_report):
    out = cpu_report
    spec = presets.preset("cpu")
    assert len(spec.cells()) == 42 and len(out["cells"]) == 40  # d = 32: the network at d³/8 … 2d³ so far
    # all but the rest of d = 32 and the two-layer baseline at d = 24, n = 8d³ (a tuned run: not run yet)
    d32 = {(arch, 32, n) for arch in ("three_layer", "kernel", "two_layer") for n in spec.n_values(32)}
    shipped = {(arch, d, n) for (d, n), (*_, kernel) in CPU_D32.items()
               for arch in ("three_layer", "kernel")[: 1 if kernel is None else 2]}
    assert {(m["arch"], m["d"], m["n"]) for m in out["missing"]} == {("two_layer", 24, 110592), *(d32 - shipped)}
    assert all(cell["seeds"] == spec.seeds_for(cell["d"], cell["n"]) for cell in out["cells"])  # 5 in the crossing cells
    assert all(cell["converged_fraction"] == 1.0 for cell in out["cells"])  # every network run stopped on a rule
    # the transition is there: correlation rises from the smallest n to the largest, for every d
    for d in (8, 12, 16, 20, 24):
        rows = sorted((c for c in out["cells"] if c["d"] == d), key=lambda c: c["n"])
        assert rows[0]["feature_corr_mean"] < 0.7 < 0.9 < rows[-1]["feature_corr_mean"], d
    # the table as printed
    got = {(c["d"], c["n"]): (c["test_loss_mean"], c["feature_corr_mean"], c["kernel_test_loss_mean"],
                              c["two_layer_test_loss_mean"]) for c in out["cells"]}
    assert sorted(got) == sorted([*CPU_CELLS, *CPU_D24, *CPU_D32])
    for cell, pinned in CPU_CELLS.items():
        assert got[cell] == pytest.approx(pinned, abs=5e-5), cell
    for cell, (*pinned, two_layer) in CPU_D24.items():
        assert got[cell][:3] == pytest.approx(tuple(pinned), abs=5e-5), cell
        assert got[cell][3] == (None if two_layer is None else pytest.approx(two_layer, abs=5e-5)), cell
    for cell, (*pinned, kernel) in CPU_D32.items():
        assert got[cell][:2] == pytest.approx(tuple(pinned), abs=5e-5) and got[cell][3] is None, cell
        assert got[cell][2] == (None if kernel is None else pytest.approx(kernel, abs=5e-5)), cell
    spread = {(c["d"], c["n"]): (c["corr_median"], c["corr_min"], c["corr_max"], c["success_fraction"])
              for c in out["cells"]}
    for cell, pinned in {**CPU_SPREAD, **CPU_D32_SPREAD}.items():
        assert spread[cell] == pytest.approx(pinned, abs=5e-5), cell
    # κ from the seed median and its interval at each threshold, and from the collapse
    kappa = out["kappa"]
    assert (kappa["threshold"], kappa["criterion"], kappa["statistic"], kappa["split"]) == (0.9, "feature_corr", "median", None)
    assert 2.2 <= kappa["estimate"] <= 3.2
    assert (kappa["estimate"], kappa["low"], kappa["high"]) == pytest.approx(CPU_KAPPA[0.9], abs=0.005)
    assert [b["threshold"] for b in kappa["by_threshold"]] == [0.8, 0.9, 0.95]
    for b in kappa["by_threshold"]:
        assert (b["estimate"], b["low"], b["high"]) == pytest.approx(CPU_KAPPA[b["threshold"]], abs=0.005), b
    collapse = kappa["collapse"]
    assert (collapse["estimate"], collapse["low"], collapse["high"]) == pytest.approx(CPU_KAPPA["collapse"], abs=0.005)
    slopes = [value for s in kappa["local_slopes"] for value in (s["d_low"], s["d_high"], s["slope"], s["low"], s["high"])]
    assert slopes == pytest.approx([value for row in CPU_SLOPES for value in row], abs=0.005)
    # the mean beside it: one seed splits its bootstrap, so no interval where it does
    mean = kappa["sensitivity"]
    assert mean["statistic"] == "mean"
    for b in mean["by_threshold"]:
        estimate, low, high = CPU_MEAN_KAPPA[b["threshold"]]
        assert b["estimate"] == pytest.approx(estimate, abs=0.005)
        if low is None:
            assert b["low"] is None and b["high"] is None and b["split"]["seed"] == 4
            (with_low, with_high), (without_low, without_high) = CPU_MEAN_SPLIT[b["threshold"]]
            assert (b["split"]["with"]["low"], b["split"]["with"]["high"]) == pytest.approx((with_low, with_high), abs=0.005)
            assert (b["split"]["without"]["low"], b["split"]["without"]["high"]) == pytest.approx(
                (without_low, without_high), abs=0.005)
        else:
            assert (b["low"], b["high"]) == pytest.approx((low, high), abs=0.005) and b["split"] is None


@pytest.mark.process
def test_figure2_statistic_mean_gives_the_mean_based_figures(tmp_path):
    out = _figure2("cpu", tmp_path, "--statistic", "mean")
    kappa = out["kappa"]
    assert kappa["statistic"] == "mean" and kappa["sensitivity"]["statistic"] == "median"
    assert kappa["estimate"] == pytest.approx(CPU_MEAN_KAPPA[0.9][0], abs=0.005) and kappa["split"]["seed"] == 4
    assert kappa["sensitivity"]["estimate"] == pytest.approx(CPU_KAPPA[0.9][0], abs=0.005)


@pytest.mark.process
def test_at_the_largest_n_the_network_beats_both_baselines_and_the_kernel_sits_above_its_floor(cpu_report):
    out = cpu_report
    for d in (12, 16, 20, 24):
        top = max((c for c in out["cells"] if c["d"] == d), key=lambda c: c["n"])
        assert top["test_loss_mean"] + 2 * top["test_loss_se"] <= 0.2, top
        assert top["kernel_test_loss_mean"] >= 0.5, top
    for c in (c for c in out["cells"] if c["kernel_seeds"]):  # a degree-≤3 predictor cannot beat its exact floor, up to seed noise
        se = c["kernel_test_loss_se"]
        assert c["kernel_test_loss_mean"] >= baselines.kernel_floor(c["d"]) - 3 * se, c
    # the ReLU two-layer network, stopped where its holdout says, is in every cell but d = 24, n = 8d³;
    # from n = d³ on the network beats it, and at the largest n the kernel does too (its gain over predicting 0:
    # test_convergence)
    assert all((c["two_layer_seeds"] == 1) == ((c["d"], c["n"]) != (24, 110592)) for c in out["cells"] if c["d"] < 32)
    assert all(c["test_loss_mean"] < c["two_layer_test_loss_mean"] for c in out["cells"] if c["n"] >= c["d"] ** 3 and c["two_layer_seeds"])
    for d in (8, 12, 16, 20):
        top = max((c for c in out["cells"] if c["d"] == d), key=lambda c: c["n"])
        assert top["test_loss_mean"] < top["kernel_test_loss_mean"] < top["two_layer_test_loss_mean"], top


def _triple(entry: dict) -> tuple | None:
    return None if entry["estimate"] is None else (entry["estimate"], entry["low"], entry["high"])


# The exponent table from the shipped bundles: per (k, q), κ from the seed median at 0.8, 0.9, 0.95 (estimate, low, high;
# None: no crossing) and the mean's κ at 0.9 beside it
EXPONENT_ROWS = {
    (1, 2): ([(1.37, 1.09, 1.65), (1.63, 1.50, 1.88), (1.91, 1.67, 2.06)], 1.68),
    (1, 3): ([(1.50, 1.31, 1.73), (1.55, 1.43, 1.67), (1.60, 1.33, 1.67)], 1.59),
    (1, 4): ([None, None, None], None),
    (2, 2): ([(2.54, 0.83, 2.92), (2.46, 1.45, 3.36), None], 1.67),
    (2, 3): ([(2.02, 1.85, 2.22), (2.02, 1.59, 2.16), (2.09, 1.73, 2.47)], 2.01),
    (2, 4): ([(2.79, 1.90, 4.64), None, None], None),
    (3, 3): ([(2.48, 2.35, 2.54), (2.54, 2.37, 2.72), (2.47, 1.75, 2.55)], 1.96),
}
# the d each κ at 0.9 rests on where some d never crosses, and the rows whose 0.9 interval is marked
EXPONENT_FIT_DS = {(2, 2): [8, 10, 12]}
EXPONENT_MARKED = {(1, 2), (2, 2)}


@pytest.mark.process
def test_exponent_table_from_the_shipped_bundles_alone_has_all_seven_rows(tmp_path):
    """All seven grids are shipped complete, 5 seeds in every crossing cell: every row has κ below the kernel's kq,
    or a measured reason; each κ lists the d it rests on and a coarse interval is marked."""
    out = _figure2("exponents", tmp_path)
    rows = {(e["k"], e["q"]): e for e in out["exponents"]}
    assert sorted(rows) == sorted(EXPONENT_ROWS) and all(grid["missing"] == [] for grid in out["grids"][:-1])
    assert {m["d"] for m in out["grids"][-1]["missing"]} == {32}  # k = 3 reads the cpu grid: d = 32 not all shipped yet
    for target, (by_threshold, mean) in EXPONENT_ROWS.items():
        row = rows[target]
        assert row["statistic"] == "median" and row["first_stage_signal"], target
        assert [_triple(b) for b in row["by_threshold"]] == [pytest.approx(t, abs=0.005) if t else None for t in by_threshold]
        assert row["sensitivity"]["estimate"] == (None if mean is None else pytest.approx(mean, abs=0.005)), target
        if row["estimate"] is None:
            assert row["reason"] and row["diagnosis"].startswith("the seed-median"), target
        else:
            assert row["estimate"] < row["kernel_kq"], target
            # a row off k by more than 0.5 says in numbers which law n* follows
            assert (row["diagnosis"] is not None) == (abs(row["estimate"] - row["k"]) > 0.5), target
    assert rows[(3, 3)]["kernel_kq"] == 9 and rows[(3, 3)]["estimate"] == pytest.approx(CPU_KAPPA[0.9][0], abs=0.005)  # the cpu grid
    # k = 1, q = 2 (the cubic first block represents h itself): n* between d and d^2, as the README says
    assert "n*/d^1 = 11.6, 20, 22.8 and n*/d^2 = 1.45, 1.25, 0.952" in rows[(1, 2)]["diagnosis"]
    for target, row in rows.items():
        at = {b["threshold"]: b for b in row["by_threshold"]}[0.9]
        if at["estimate"] is not None:
            assert at["fit_ds"] == EXPONENT_FIT_DS.get(target, row["ds"]), target
            assert (at["marked"] is not None) == (target in EXPONENT_MARKED), target
    # the success fractions of the k = 2, q = 3 grid: no seed past 0.9 up to n = 2d^2, every seed from 8d^2 on
    cubic = next(g for g in out["grids"] if g["k"] == 2 and g["link"] == "cubic")
    assert all(c["success_fraction"] == 0.0 for c in cubic["cells"] if c["n_over_dk"] <= 2)
    assert all(c["success_fraction"] == 1.0 for c in cubic["cells"] if c["n_over_dk"] >= 8)
    assert sorted(c["success_fraction"] for c in cubic["cells"] if c["n_over_dk"] == 4) == pytest.approx([0.6, 0.8, 0.8, 1])
    _crossing_cells_have_five_seeds(out)
    _readme_exponent_table_is_the_json_s(out)
    _readme_exponent_flatness_is_the_json_s(out)


def _score(cell: dict, criterion: str) -> float | None:
    if criterion == "feature_corr":
        return cell["corr_median"]
    return None if cell["test_loss_median"] is None else 1 - cell["test_loss_median"]


def _readme_exponent_flatness_is_the_json_s(out: dict) -> None:
    from hierpoly.study import readings

    block = README.read_text().split("<!-- exponent-flatness -->")[1].split("<!-- /exponent-flatness -->")[0]
    expected = [f"- k = {g['k']}, q = {g['q']}: " + readings.flatness_sentence({**g["readings"], "per_d": g["per_d"]}, 0.9)
                for g in out["grids"]]
    assert block.strip().splitlines() == expected


def _crossing_cells_have_five_seeds(out: dict) -> None:
    """Every cell that brackets a crossing of the seed median at 0.8, 0.9 or 0.95 holds at least 5 network seeds."""
    for grid in out["grids"]:
        for d in sorted({c["d"] for c in grid["cells"]}):
            cells = sorted((c for c in grid["cells"] if c["d"] == d), key=lambda c: c["n"])
            scores = [_score(c, grid["kappa"]["criterion"]) for c in cells]
            for t in (0.8, 0.9, 0.95):
                first = next((i for i, s in enumerate(scores) if s is not None and s >= t), None)
                if first:  # crossed inside the grid
                    assert min(cells[first - 1]["seeds"], cells[first]["seeds"]) >= 5, (grid["name"], d, t)


_LINKS = {"std:h1+h2": "h₁+h₂", "cubic": "z³", "std:h1+h4": "h₁+h₄"}


def _kappa_cell(entry: dict, bold: bool = False) -> str:
    """One κ as the README's exponent table prints it: † on a marked interval, bold only the unmarked headline."""
    if entry.get("estimate") is None:
        return "**–**" if bold else "–"
    text = f"{entry['estimate']:.2f}" + (" (split)" if entry.get("split") else "" if entry.get("low") is None
                                         else f" [{entry['low']:.2f}, {entry['high']:.2f}]")
    if entry.get("marked"):
        return text + "†"
    return f"**{text}**" if bold else text


def _readme_exponent_table_is_the_json_s(out: dict) -> None:
    readme = README.read_text()
    for e in out["exponents"]:
        by = {b["threshold"]: b for b in e["by_threshold"]}
        mean = {b["threshold"]: b for b in e["sensitivity"]["by_threshold"]}[0.9]
        row = (f"| {e['k']} | {_LINKS[e['link']]} ({e['q']}) | {', '.join(map(str, e['ds']))} | "
               f"{', '.join(map(str, by[0.9]['fit_ds'])) or '–'} | {_kappa_cell(by[0.8])} | {_kappa_cell(by[0.9], True)} | "
               f"{_kappa_cell(by[0.95])} | {_kappa_cell(e['collapse'])} | "
               f"{_kappa_cell({**mean, 'low': None, 'marked': None})} | {e['kernel_kq']} |")
        assert row in readme, row
    # the prose beside the table quotes the same cells (a rerun that moves them breaks this, not the prose)
    rows = {(e["k"], e["q"]): {b["threshold"]: b for b in e["by_threshold"]} for e in out["exponents"]}
    prose = readme.split("Every κ at 0.9 lies below the kernel's kq")[1].split("<!-- exponent-flatness -->")[0]
    prose = " ".join(prose.replace("**", "").split())
    for target, t in (((1, 2), 0.9), ((1, 2), 0.95), ((2, 3), 0.9), ((2, 2), 0.9), ((2, 4), 0.8)):
        cell = _kappa_cell(rows[target][t])
        assert cell.replace("**", "") in prose or cell.split(" ", 1)[1] in prose, (target, t, cell)
    assert all(e["estimate"] is None or e["estimate"] < e["kernel_kq"] for e in out["exponents"])
    low, high = rows[1, 2][0.95]["low"], rows[1, 2][0.95]["high"]
    assert low <= 2 <= high and "at 0.95 its interval, [" in prose  # holds kq = 2


def _grid(name: str) -> specs.SweepSpec:
    return next(g for g in specs.grids(presets.preset("exponents")) if g.name == name)


@pytest.mark.process
def test_the_transfer_table_answers_from_the_shipped_bundle_and_carries_the_claim(tmp_path):
    """`transfer --preset transfer --json` on a fresh clone: every (d, N, link) with transfer, scratch and kernel
    over the preset's 3 seeds; for both links the transfer beats both in every cell, and half of E[h'^2] is
    explained at an N that differs by at most 4× across d."""
    env = {**os.environ, "HIERPOLY_CACHE_DIR": str(tmp_path / "store"), "HIERPOLY_LOAD_PRECOMPUTED": "1"}
    res = subprocess.run([sys.executable, "-m", "hierpoly", "transfer", "--preset", "transfer", "--json"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    spec = presets.transfer()
    cells = {(c["d"], c["n"], c["link"], c["role"]): c for c in out["cells"]}
    assert set(cells) == {(d, n, link, role) for d, n, link in spec.cells() for role in ("transfer", "scratch", "kernel")}
    assert all(c["seeds"] == spec.seeds and c["test_loss"] is not None and c["test_loss_se"] > 0 for c in cells.values())
    assert all(c["outside_loss_share"] is not None for key, c in cells.items() if key[3] == "transfer")
    for link in spec.links:
        claim = out["claims"][link]
        assert claim["beats_everywhere"] is True and len(claim["beats"]) == 20, claim  # d = 8 … 20 × N = 16 … 4096
        assert claim["beats_every_seed"] is True, claim
        assert None not in claim["half_n"].values() and claim["half_n_spread"] <= 4, claim
    _readme_transfer_numbers_are_the_json_s(cells)


def _readme_transfer_numbers_are_the_json_s(cells: dict) -> None:
    """The README's transfer sentences, each number read from the JSON (medians over seeds, the tail's share)."""
    readme = README.read_text()
    shares = [c["outside_loss_share"] for (d, n, link, role), c in cells.items() if role == "transfer" and n == 4096]
    assert f"where that share is {min(shares):.0%}–{max(shares):.0%}".replace("%–", "–") in readme
    median = {key: c["test_loss_median"] for key, c in cells.items()}
    q = "quadratic"
    assert (f"(quadratic, N = 256: {median[12, 256, q, 'transfer']:.3f} at d = 12, "
            f"{median[16, 256, q, 'transfer']:.2f} at\n  d = 16)") in readme
    assert (f"(quadratic: {median[8, 4096, q, 'transfer']:.3f} at d = 8, "
            f"{median[20, 4096, q, 'transfer']:.4f} at d = 20)") in readme
    assert median[8, 4096, q, "transfer"] > median[20, 4096, q, "transfer"] == min(
        median[d, 4096, q, "transfer"] for d in (8, 12, 16, 20))
    assert "In all 20 cells of each link, every d\n  from 8 and every N from 16" in readme
    assert "at a given N its loss does not rise with d" not in readme


def test_the_readme_quotes_the_retrained_sources_as_the_shipped_transfers_record_them():
    records = {}
    results = bundles.read_bundle((PRECOMPUTED / "transfer.zip").read_bytes())
    for result in results.values():
        source = result.meta.get("extra", {}).get("source")
        if source and source["first_block"].startswith("retrained"):
            records[result.config.d] = source
    d8, d12 = records[8], records[12]
    text = README.read_text() + (REPO / "hierpoly" / "jobs" / "runner.py").read_text()
    assert f"test loss {d8['retrained_test_loss']:.4f} against the stored {d8['stored_test_loss']:.4f}" in README.read_text()
    assert f"correlation {d8['retrained_feature_corr']:.5f} against\n{d8['stored_feature_corr']:.5f}" in README.read_text()
    assert f"{d12['retrained_test_loss']:.4f} against {d12['stored_test_loss']:.4f}" in README.read_text()
    assert f"test loss {d8['retrained_test_loss']:.4f} retrained vs {d8['stored_test_loss']:.4f}" in text
    assert f"d = 12: {d12['retrained_test_loss']:.4f} vs {d12['stored_test_loss']:.4f}" in text


@pytest.mark.slow
def test_the_readme_says_what_seed_4_does_to_the_mean_from_the_shipped_runs(tmp_path):
    from hierpoly.study import kappa_fit

    store = Store(tmp_path / "fresh")
    bundles.load_precomputed(store, PRECOMPUTED)
    runs = specs.stored_runs(presets.preset("cpu"), store)
    net = runs[runs["arch"] == "three_layer"]

    def without(cells):
        drop = (net["seed"] == 4) & pd.Series([(d, n) in cells for d, n in zip(net["d"], net["n"])], index=net.index)
        return kappa_fit.exponent(net[~drop], 0.9, statistic="mean", n_boot=10).estimate

    one, two = without({(8, 512)}), without({(8, 512), (12, 864)})
    assert (f"without seed 4's d = 8, n = 512 run it is {one:.2f}, without both that run and\n"
            f"d = 12, n = 864 it is {two:.2f}") in README.read_text()
    assert without({(20, 8000)}) == pytest.approx(without(set()))  # "changes nothing"


@pytest.mark.process
def test_the_readme_s_reasons_for_kappa_below_3_are_the_json_s_measured_sentences(cpu_report):
    """The README's sentences on why κ < 3 are exactly the ones `figure2` generates from the JSON's readings
    (the shift in n/d^3, the width, κ by threshold, which ratio is flat, the local slopes' caption): they name
    only quantities the JSON holds, and a rerun that moves a number breaks this test, not the README's truth."""
    from hierpoly.study import readings

    readme = README.read_text()
    block = readme.split("<!-- why-kappa-below-3 -->")[1].split("<!-- /why-kappa-below-3 -->")[0]
    said = [line[2:] for line in block.strip().splitlines()]
    rd = {**cpu_report["readings"], "per_d": cpu_report["per_d"]}
    generated = [*readings.why_below_k(rd), *(readings.flatness_sentence(rd, t) for t in (0.8, 0.9, 0.95)),
                 readings.slope_caption(cpu_report["kappa"], 3)]
    assert said == generated
    # each quantity those sentences name is a field of the JSON
    assert {"n_star_over_dk", "n_star_over_count", "n_star_over_homogeneous", "width_95_50"} <= set(rd["per_d"][0])
    assert {"slopes", "width_slope", "kappa_by_threshold"} <= set(rd) and cpu_report["kappa"]["local_slopes"]
    assert "sharpen" not in readme and "falls on one curve" not in readme
    assert readings.markdown_table(readings.per_d_frame(cpu_report["per_d"], 3)) in readme
    # the intro's numbers: n*/d³ at 0.9 from the first d to the last, and κ
    first, last = rd["per_d"][0]["n_star_over_dk"]["estimate"], rd["per_d"][-1]["n_star_over_dk"]["estimate"]
    assert (f"(n*/d³ at 0.9\nfalls from {first:.2f} at d = 8 to {last:.2f} at d = {rd['per_d'][-1]['d']}), so the fitted κ, "
            f"{cpu_report['kappa']['estimate']:.2f}") in readme


@pytest.mark.process
def test_the_predictions_of_n_star_at_32_are_the_committed_ones(cpu_report):
    pred = cpu_report["predictions"]
    assert (pred["d"], pred["threshold"], pred["fit_ds"], pred["statistic"]) == (32, 0.9, [8, 12, 16, 20, 24], "median")
    for name, (estimate, low, high) in CPU_PREDICTIONS.items():
        got = pred["readings"][name]
        assert (got["estimate"], got["low"], got["high"]) == pytest.approx((estimate, low, high), abs=1), name
    assert pred["readings"]["power_law"]["kappa"] == pytest.approx(PREDICTION_KAPPA, abs=0.005)
    # n*/d³ at d = 24 rests on one d: its 1000 replicates take 10 values, so its interval is marked
    assert pred["readings"]["flat_dk"]["marked"] == "10 distinct replicate values (< 30)"
    measured = pred["measured"]
    assert (measured["estimate"], measured["low"], measured["high"]) == pytest.approx(CPU_MEASURED_32, abs=1)
    assert measured["marked"] == "12 distinct replicate values (< 30)"  # one d, two crossing cells of 5 seeds
    assert measured["estimate"] == next(e["n_star"] for e in cpu_report["kappa"]["n_star"] if e["d"] == 32)
