"""The shipped results: on a fresh clone, Figure 2 appears from cache/precomputed with no training."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hierpoly.engine import baselines
from hierpoly.runs import bundles, sweeps
from hierpoly.runs.store import Store

REPO = Path(__file__).resolve().parent.parent
PRECOMPUTED = REPO / "cache" / "precomputed"

# The shipped cpu bundle is deterministic, so Figure 2 is pinned at the precision
# `python -m hierpoly figure2 --preset cpu` prints: (d, n): (test loss, corr(g, p), kernel test loss,
# two-layer test loss), seed means.
CPU_CELLS = {
    (8, 64): (1.0089, 0.1169, 1.0007), (8, 128): (1.0092, 0.2344, 0.9919), (8, 256): (0.8657, 0.7146, 0.9799),
    (8, 512): (0.6764, 0.9487, 0.9966), (8, 1024): (0.5401, 0.9739, 0.9206), (8, 2048): (0.3689, 0.9885, 0.9094),
    (8, 4096): (0.3285, 0.9739, 0.9439), (12, 216): (0.9930, 0.2278, 0.9995), (12, 432): (0.9521, 0.4396, 0.9877),
    (12, 864): (0.6968, 0.8614, 0.9860), (12, 1728): (0.5160, 0.9595, 0.9658), (12, 3456): (0.3687, 0.9770, 0.9898),
    (12, 6912): (0.2626, 0.9817, 0.9165), (12, 13824): (0.1714, 0.9936, 0.8605), (16, 512): (1.0174, 0.2195, 1.0114),
    (16, 1024): (0.9284, 0.5231, 1.0158), (16, 2048): (0.6618, 0.8374, 1.0897), (16, 4096): (0.4450, 0.9380, 1.0522),
    (16, 8192): (0.2801, 0.9775, 0.9750), (16, 16384): (0.1692, 0.9916, 0.8952), (16, 32768): (0.1215, 0.9963, 0.8430),
    (20, 1000): (1.0579, 0.2340, 1.0027), (20, 2000): (0.8416, 0.6326, 0.9972), (20, 4000): (0.5481, 0.9067, 0.9773),
    (20, 8000): (0.3497, 0.9730, 0.9351), (20, 16000): (0.2163, 0.9889, 0.8912), (20, 32000): (0.1394, 0.9949, 0.8740),
    (20, 64000): (0.1016, 0.9971, 0.8199),
}
# κ (95% whole-seed bootstrap interval, seed 0, 1000 replicates) at each threshold and from the collapse fit
CPU_KAPPA = {0.8: (2.48, 2.39, 2.59), 0.9: (2.51, 2.38, 2.59), 0.95: (2.85, 2.15, 2.99), "collapse": (2.19, 2.13, 2.44)}

@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory) -> dict:
    return _figure2("cpu", tmp_path_factory.mktemp("cpu"))


def _figure2(preset: str, tmp_path) -> dict:
    """`figure2 --preset P --json` in a fresh process on an empty store: what a fresh clone answers."""
    env = {**os.environ, "HIERPOLY_CACHE_DIR": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    env.pop("HIERPOLY_LOAD_PRECOMPUTED", None)  # a fresh clone loads them on first start
    res = subprocess.run([sys.executable, "-m", "hierpoly", "figure2", "--preset", preset, "--json"],
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
    spec = sweeps.preset("cpu")
    assert len(out["cells"]) == len(spec.cells()) == 28
    assert all(cell["seeds"] >= 3 for cell in out["cells"])
    # the transition is there: correlation rises from the smallest n to the largest, for every d
    for d in spec.ds:
        rows = sorted((c for c in out["cells"] if c["d"] == d), key=lambda c: c["n"])
        assert rows[0]["feature_corr_mean"] < 0.7 < 0.9 < rows[-1]["feature_corr_mean"], d
    # the table as printed
    got = {(c["d"], c["n"]): (c["test_loss_mean"], c["feature_corr_mean"], c["kernel_test_loss_mean"],
                              c["two_layer_test_loss_mean"]) for c in out["cells"]}
    assert sorted(got) == sorted(CPU_CELLS)
    for cell, pinned in CPU_CELLS.items():
        assert got[cell] == pytest.approx(pinned, abs=5e-5), cell
    # every network run stopped on a rule, not at the cap
    assert sum(c["converged_fraction"] * c["seeds"] for c in out["cells"]) == pytest.approx(sum(c["seeds"] for c in out["cells"]))
    # κ and its interval at each threshold, and from the collapse
    kappa = out["kappa"]
    assert (kappa["threshold"], kappa["criterion"]) == (0.9, "feature_corr")
    assert (kappa["estimate"], kappa["low"], kappa["high"]) == pytest.approx(CPU_KAPPA[0.9], abs=0.005)
    assert [b["threshold"] for b in kappa["by_threshold"]] == [0.8, 0.9, 0.95]
    for b in kappa["by_threshold"]:
        assert (b["estimate"], b["low"], b["high"]) == pytest.approx(CPU_KAPPA[b["threshold"]], abs=0.005), b
    collapse = kappa["collapse"]
    assert (collapse["estimate"], collapse["low"], collapse["high"]) == pytest.approx(CPU_KAPPA["collapse"], abs=0.005)


@pytest.mark.process
def test_at_the_largest_n_the_network_beats_both_baselines_and_the_kernel_sits_above_its_floor(cpu_report):
    out = cpu_report
    for d in (12, 16, 20):
        top = max((c for c in out["cells"] if c["d"] == d), key=lambda c: c["n"])
        assert top["test_loss_mean"] + 2 * top["test_loss_se"] <= 0.2, top
        assert top["kernel_test_loss_mean"] >= 0.5 and top["two_layer_test_loss_mean"] >= 0.5, top
    for c in out["cells"]:  # a degree-≤3 predictor cannot beat its exact floor, up to seed noise
        se = c["kernel_test_loss_se"]
        assert c["kernel_test_loss_mean"] >= baselines.kernel_floor(c["d"]) - 3 * se, c


def _triple(entry: dict) -> tuple | None:
    return None if entry["estimate"] is None else (entry["estimate"], entry["low"], entry["high"])


@pytest.mark.process
def test_exponent_table_from_the_shipped_bundles_alone_is_its_k3_row(tmp_path):
    """Only the cpu runs are shipped: the family's k = 3 grid is complete, the six others say what is missing."""
    out = _figure2("exponents", tmp_path)
    assert [(e["k"], e["q"]) for e in out["exponents"]] == [(3, 3)]
    row = out["exponents"][0]
    assert row["kernel_kq"] == 9 and row["link"] == "cubic" and row["first_stage_signal"]
    assert _triple(row) == pytest.approx(CPU_KAPPA[0.9], abs=0.005)
    for grid in out["grids"]:
        wanted = len(_grid(grid["name"]).cells())
        assert (grid["missing"] == []) == (grid["k"] == 3), grid["name"]
        if grid["k"] != 3:
            assert grid["cells"] == [] and len({(m["d"], m["n"]) for m in grid["missing"]}) == wanted


def _grid(name: str) -> sweeps.SweepSpec:
    return next(g for g in sweeps.grids(sweeps.preset("exponents")) if g.name == name)
