"""The shipped results: on a fresh clone, Figure 2 appears from cache/precomputed with no training."""
import json
import os
import subprocess
import sys
from pathlib import Path

from hierpoly.runs import bundles, sweeps
from hierpoly.runs.store import Store

PRECOMPUTED = Path(__file__).resolve().parent.parent / "cache" / "precomputed"


def test_the_shipped_bundles_are_small_and_import_cleanly(tmp_path):
    paths = sorted(PRECOMPUTED.glob("*.zip"))
    assert paths, "cache/precomputed holds no bundles"
    assert sum(p.stat().st_size for p in paths) < 20 << 20
    store = Store(tmp_path / "fresh")
    added = bundles.load_precomputed(store, PRECOMPUTED)
    assert len(added) == len(store) > 0
    assert bundles.load_precomputed(store, PRECOMPUTED) == []  # second start: nothing to do


def test_figure2_answers_from_the_shipped_bundles_alone(tmp_path):
    env = {**os.environ, "HIERPOLY_CACHE_DIR": str(tmp_path / "empty")}
    env.pop("HIERPOLY_LOAD_PRECOMPUTED", None)  # a fresh clone loads them on first start
    res = subprocess.run([sys.executable, "-m", "hierpoly", "figure2", "--preset", "cpu", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    spec = sweeps.preset("cpu")
    assert len(out["cells"]) == len(spec.cells()) == 28
    assert all(cell["seeds"] >= 3 for cell in out["cells"])
    assert out["kappa"]["estimate"] is not None
    # the transition is there: correlation rises from the smallest n to the largest, for every d
    for d in spec.ds:
        rows = sorted((c for c in out["cells"] if c["d"] == d), key=lambda c: c["n"])
        assert rows[0]["feature_corr_mean"] < 0.7 < 0.9 < rows[-1]["feature_corr_mean"], d
