"""Sweep grids, the local executor end to end (real worker processes) and `figure2` from the store."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hierpoly.runs import jobs, sweeps
from hierpoly.runs.store import Store

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ grids
def test_cpu_and_paper_grids_are_the_issue_s():
    cpu = sweeps.preset("cpu")
    assert cpu.seeds == 3 and cpu.baselines and cpu.mode == "joint" and cpu.m2 == 1000
    assert cpu.n_values(8) == (64, 128, 256, 512, 1024, 2048, 4096)
    assert cpu.n_values(20) == tuple(8000 * 2**j // 8 for j in range(7))
    assert len(cpu.cells()) == 28 and len(cpu.configs()) == 28 * 3 * 3
    paper = sweeps.preset("paper", seeds=4, baselines=False)
    assert paper.ds == (16, 24, 32, 40) and paper.n_values(40)[-1] == 512000 and len(paper.configs()) == 28 * 4
    assert all(c.m1 == c.d**2 and c.steps == 4000 and c.n_eval == 2**20 for c in paper.configs())
    for name in sweeps.PRESETS:  # each preset says how to run it and what it should show
        assert "Run:" in sweeps.preset(name).doc and "show" in sweeps.preset(name).doc


def test_baseline_configs_share_everything_but_arch():
    spec = sweeps.preset("tiny")
    net = spec.config(4, 32, seed=0)
    kernel = spec.config(4, 32, seed=0, arch="kernel")
    assert kernel == dataclasses.replace(net, arch="kernel") and kernel.key() != net.key()
    keys = [c.key() for c in spec.configs()]
    assert len(set(keys)) == len(keys) == 12
    assert [c.key() for c in sweeps.preset("tiny").configs()] == keys  # stable


def test_custom_grids_and_errors():
    spec = sweeps.custom([4, 5], ns=[100, 50, 100], seeds=2, baselines=False)
    assert spec.n_values(5) == (50, 100) and len(spec.configs()) == 2 * 2 * 2
    spec = sweeps.custom([4], multiples=[1, 2], mode="layerwise", steps=10)
    assert spec.n_values(4) == (64, 128) and all(c.mode == "layerwise" for c in spec.configs())
    for kwargs, message in [
        (dict(ds=[4]), "either n values or multiples"),
        (dict(ds=[4], ns=[10], multiples=[1]), "either n values or multiples"),
        (dict(ds=[], ns=[10]), "at least one d"),
        (dict(ds=[4], ns=[1]), "n values must be"),
        (dict(ds=[4], ns=[10], seeds=0), "seeds must be"),
        (dict(ds=[4], ns=[10], mode="sgd"), "mode must be"),
        (dict(ds=[4], ns=[10], link="banana"), "link"),
    ]:
        with pytest.raises(sweeps.SweepError, match=message):
            sweeps.custom(**kwargs)
    with pytest.raises(sweeps.SweepError, match="unknown preset"):
        sweeps.preset("huge")


def test_unknown_executor(tmp_path):
    with pytest.raises(sweeps.SweepError, match="unknown executor 'nope'"):
        sweeps.run_sweep(sweeps.custom([4], ns=[8], steps=1, n_test=16), executor="nope", store=Store(tmp_path))


# ------------------------------------------------------- end to end (tiny)
def _env(store_dir: Path, jax_cache: Path) -> dict:
    env = dict(os.environ, HIERPOLY_CACHE_DIR=str(store_dir), HIERPOLY_MAX_WORKERS="2")
    # workers are fresh interpreters: share compiled programs between them (speed only)
    env.update(JAX_COMPILATION_CACHE_DIR=str(jax_cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def _cli(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "hierpoly", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """`python -m hierpoly sweep --preset tiny --json` into an empty store, once for this module."""
    root = tmp_path_factory.mktemp("sweep")
    env = _env(root / "store", root / "jax")
    proc = _cli(["sweep", "--preset", "tiny", "--json"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"env": env, "store": Store(root / "store"), "out": json.loads(proc.stdout), "stderr": proc.stderr}


def test_tiny_sweep_stores_every_run(tiny_sweep):
    out, store = tiny_sweep["out"], tiny_sweep["store"]
    spec = sweeps.preset("tiny")
    cells = out["cells"]
    assert [c["key"] for c in cells] == [c.key() for c in spec.configs()]
    assert {c["arch"] for c in cells} == {"three_layer", "kernel", "two_layer"}
    for c in cells:
        assert c["status"] == "done" and not c["cached"]
        result = store.get(c["key"])
        assert result is not None and result.config.arch == c["arch"]
        assert c["test_loss"] == result.metrics["test_loss"] and c["feature_corr"] == result.metrics["feature_corr"]
        assert 0 <= c["test_loss"] < 1.5 and -1 <= c["feature_corr"] <= 1
    assert "sweep tiny" in tiny_sweep["stderr"]  # the progress bar
    # one job per config went through the job system (the app sees them)
    listed = jobs.list_jobs(store)
    assert sorted(j.key for j in listed) == sorted(c["key"] for c in cells)


def test_rerun_is_a_no_op(tiny_sweep):
    store = tiny_sweep["store"]
    before = len(jobs.list_jobs(store))
    rows = sweeps.run_sweep(sweeps.preset("tiny"), store=store)
    assert all(r["cached"] and r["status"] == "done" for r in rows) and len(rows) == 12
    proc = _cli(["sweep", "--preset", "tiny"], tiny_sweep["env"])
    assert proc.returncode == 0 and "12 already stored, 0 run now" in proc.stdout
    assert len(jobs.list_jobs(store)) == before
    assert sweeps.missing(sweeps.preset("tiny"), store) == []


def test_figure2_json_from_the_store(tiny_sweep):
    store = tiny_sweep["store"]
    proc = _cli(["figure2", "--preset", "tiny", "--json"], tiny_sweep["env"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["missing"] == [] and report["k"] == 3
    cells = {(c["d"], c["n"]): c for c in report["cells"]}
    assert sorted(cells) == [(4, 32), (4, 128), (6, 108), (6, 432)]
    spec = sweeps.preset("tiny")
    for (d, n), c in cells.items():
        assert c["seeds"] == 1 and c["n_over_dk"] == pytest.approx(n / d**3)
        for arch, prefix in (("three_layer", ""), ("kernel", "kernel_"), ("two_layer", "two_layer_")):
            metrics = store.get(spec.config(d, n, 0, arch).key()).metrics
            assert c[f"{prefix}test_loss_mean"] == pytest.approx(metrics["test_loss"])
            assert c[f"{prefix}feature_corr_mean"] == pytest.approx(metrics["feature_corr"])
        assert c["test_loss_std"] is None  # one seed: no spread
    kappa = report["kappa"]
    assert set(kappa) >= {"estimate", "low", "high"}
    if kappa["estimate"] is None:
        assert kappa["reason"]
    # asking for more seeds than stored reports the gap, it is not an error
    proc = _cli(["figure2", "--preset", "tiny", "--seeds", "2", "--json"], tiny_sweep["env"])
    missing = json.loads(proc.stdout)["missing"]
    assert proc.returncode == 0 and len(missing) == 12 and all(m["stored"] == 1 and m["wanted"] == 2 for m in missing)


def test_figure2_never_trains_and_writes_html(tiny_sweep, tmp_path):
    env = dict(tiny_sweep["env"], HIERPOLY_CACHE_DIR=str(tmp_path / "empty"))
    proc = _cli(["figure2", "--preset", "cpu", "--json", "--out", str(tmp_path / "fig.png")], env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kappa"]["estimate"] is None and "at least two d" in report["kappa"]["reason"]
    assert (tmp_path / "fig.html").stat().st_size > 1000
    assert "fig.png" in proc.stderr  # written, or a note on how to get images
    assert jobs.list_jobs(Store(tmp_path / "empty")) == []  # nothing was submitted
    html = tmp_path / "tiny.html"
    proc = _cli(["figure2", "--preset", "tiny", "--out", str(html)], tiny_sweep["env"])
    assert proc.returncode == 0 and "κ" in proc.stdout and html.stat().st_size > 1000


def test_stored_runs_match_configs_exactly(tiny_sweep):
    store = tiny_sweep["store"]
    assert len(sweeps.stored_runs(sweeps.preset("tiny"), store)) == 12
    assert len(sweeps.stored_runs(sweeps.preset("tiny", baselines=False), store)) == 4
    other = dataclasses.replace(sweeps.preset("tiny"), steps=201)  # a different grid at the same (d, n)
    assert sweeps.stored_runs(other, store).empty
    cover = sweeps.coverage(sweeps.preset("tiny", seeds=3), store)
    assert len(cover) == 12 and (cover["stored"] == 1).all() and (cover["wanted"] == 3).all()


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, HIERPOLY_CACHE_DIR=str(tmp_path))
    for args in (["sweep", "--preset", "tiny", "--d", "4"], ["sweep"], ["figure2", "--d", "4"], ["sweep", "--preset", "tiny", "--executor", "nope"]):
        proc = _cli(args, env, timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:"), (args, proc.stderr)
