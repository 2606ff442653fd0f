"""The examples as a user runs them: the quickstart notebook executed by a real kernel, the scripts' fast variants.

The Ray script's test lives beside the other cluster tests (test_cluster.py), on their `ray start` cluster.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hierpoly import RunConfig, Store

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PLOTLY = "application/vnd.plotly.v1+json"


def _text(cell) -> str:
    """A code cell's text output: its prints and the text/plain of its value."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _cell(nb, starts: str):
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts))


@pytest.mark.slow
@pytest.mark.process
def test_quickstart_notebook_runs_in_a_kernel(tmp_path, monkeypatch):
    import nbformat  # requirements-test.txt (requirements.txt includes it)
    from nbclient import NotebookClient

    store = tmp_path / "store"
    monkeypatch.setenv("HIERPOLY_CACHE_DIR", str(store))
    monkeypatch.delenv("HIERPOLY_LOAD_PRECOMPUTED", raising=False)  # the notebook reads the shipped Figure 2
    monkeypatch.setenv("QUICKSTART_FAST", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    run = _text(_cell(nb, "r = hierpoly.run("))
    assert re.search(r"Result\(d=6 n=864 .*: done, .*params stored: u, s, V;", run), run
    assert Store(store).has(RunConfig(d=6, n=864, m2=200, steps=300).key())
    assert "κ = 2.54 [2.37, 2.72]" in _text(_cell(nb, 'fig2 = hierpoly.figure2("cpu")'))
    rows = _text(_cell(nb, "if FAST:"))
    assert rows.count("done") == 2 and "failed" not in rows, rows
    assert re.search(r"Figure2\(custom: 2 cells, d = 4, 6; (κ = |no κ)", _text(_cell(nb, "mine = "))), "custom grid"
    figures = [c for c in nb.cells if c.cell_type == "code" and any(PLOTLY in o.get("data", {}) for o in c.outputs)]
    assert len(figures) == 3  # the feature scatter, the shipped Figure 2, the custom grid's


def _script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.process
def test_transfer_example_fast_compares_three_fits_on_the_shipped_tour_feature(tmp_path):
    out = _script("transfer.py", "--fast", "--store", str(tmp_path / "store"))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = re.findall(r"^N =\s+64\s+(\w+)\s+test loss (\S+) ± (\S+)$", out.stdout, re.M)
    assert [role for role, _, _ in lines] == ["transfer", "scratch", "kernel"]
    assert all(float(loss) > 0 and float(se) > 0 for _, loss, se in lines)
    assert "'first_block': 'stored with the source'" in out.stdout  # the tour run's own block: no retraining
    runs = Store(tmp_path / "store").summaries()
    new = runs[runs["d"].eq(6) & runs["n"].eq(64)]
    assert sorted(new["arch"]) == ["kernel", "three_layer", "transfer"]  # the transfer, scratch and kernel, stored


@pytest.mark.process
def test_examples_parse_their_arguments_and_refuse_bad_ones():
    for name in ("transfer.py", "ray_sweep.py"):
        out = _script(name, "--no-such-option")
        assert out.returncode == 2 and "unrecognized arguments: --no-such-option" in out.stderr, out.stderr


def test_the_notebook_is_stored_without_outputs():
    nb = json.loads((EXAMPLES / "quickstart.ipynb").read_text())
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
