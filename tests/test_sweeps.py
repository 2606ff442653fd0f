"""Sweep grids, the local executor end to end (real worker processes) and `figure2` from the store."""
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hierpoly import targets
from hierpoly.config import JOINT_CAP
from hierpoly.jobs import executors, records
from hierpoly.results.store import Store
from hierpoly.study import figure2, presets, specs, sweep

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ grids
def test_cpu_and_paper_grids_are_the_issue_s():
    cpu = presets.preset("cpu")
    assert cpu.seeds == 3 and cpu.baselines and cpu.mode == "joint" and cpu.m2 == 1000
    assert cpu.n_values(8) == (64, 128, 256, 512, 1024, 2048, 4096)
    assert cpu.n_values(20) == tuple(8000 * 2**j // 8 for j in range(7))
    assert cpu.ds == (8, 12, 16, 20, 24, 32) and cpu.n_values(32) == tuple(32**3 * 2**j // 8 for j in range(7))
    assert len(cpu.cells()) == 42 and len(cpu.configs()) == 42 * 3 * 2 + 42 + 25 * 2  # test_the_cpu_grid_has_five…
    paper = presets.preset("paper", seeds=4, baselines=False)
    assert paper.ds == (16, 24, 32, 40) and paper.n_values(40)[-1] == 512000 and len(paper.configs()) == 28 * 4
    assert all(c.m1 == c.d**2 and c.steps == JOINT_CAP and c.n_eval == 2**20 for c in paper.configs())
    for name in presets.PRESETS:  # each preset says how to run it and what it should show
        assert "Run:" in presets.preset(name).doc and "show" in presets.preset(name).doc


def test_baseline_configs_share_everything_but_arch():
    spec = presets.preset("tiny")
    net = spec.config(4, 32, seed=0)
    kernel = spec.config(4, 32, seed=0, arch="kernel")
    assert kernel == dataclasses.replace(net, arch="kernel") and kernel.key() != net.key()
    keys = [c.key() for c in spec.configs()]
    assert len(set(keys)) == len(keys) == 12
    assert [c.key() for c in presets.preset("tiny").configs()] == keys  # stable


def test_custom_grids_and_errors():
    spec = specs.custom([4, 5], ns=[100, 50, 100], seeds=2, baselines=False)
    assert spec.n_values(5) == (50, 100) and len(spec.configs()) == 2 * 2 * 2
    spec = specs.custom([4], multiples=[1, 2], mode="layerwise", steps=10)
    assert spec.n_values(4) == (64, 128)
    assert {(c.arch, c.mode) for c in spec.configs()} == {("three_layer", "layerwise"), ("kernel", "joint"), ("two_layer", "joint")}
    for kwargs, message in [
        (dict(ds=[4]), "either n values or multiples"),
        (dict(ds=[4], ns=[10], multiples=[1]), "either n values or multiples"),
        (dict(ds=[], ns=[10]), "at least one d"),
        (dict(ds=[4], ns=[1]), "n values must be"),
        (dict(ds=[4], ns=[10], seeds=0), "seeds must be"),
        (dict(ds=[4], ns=[10], mode="sgd"), "mode must be"),
        (dict(ds=[4], ns=[10], link="banana"), "link"),
    ]:
        with pytest.raises(executors.SweepError, match=message):
            specs.custom(**kwargs)
    with pytest.raises(executors.SweepError, match="unknown preset"):
        presets.preset("huge")


def test_custom_grids_for_any_target():
    spec = specs.custom([6, 8], multiples=[1, 4], k=2, link="quartic", m1=20, m2=50, sigma1="square", baselines=False)
    assert spec.n_values(6) == (36, 144) and spec.n_values(8) == (64, 256)  # multiples of d^k, k = 2
    assert spec.q == 4 and spec.target == {"k": 2, "q": 4, "link": "quartic", "sigma1": "square", "mode": "joint"}
    assert all((c.k, c.link, c.m1, c.m2, c.sigma1) == (2, "quartic", 20, 50, "square") for c in spec.configs())
    assert specs.custom([6], ns=[50], link="0,0,0,0,1").configs()[0].link == "quartic"  # one key per link
    std = specs.custom([4, 16], ns=[50], k=1, link="std:h1+h2", baselines=False)  # g on p/√d: raw links per d
    assert std.target["link"] == "std:h1+h2" and std.q == 2
    assert [c.link for c in std.configs()] == [targets.raw_link("std:h1+h2", d) for d in (4, 16)]
    for cfg in std.configs():  # h1 + h2 on p/√d, times d: (-d/√2, √d, 1/√2) on p
        d = cfg.d
        assert targets.parse_link(cfg.link) == pytest.approx((-d / math.sqrt(2), math.sqrt(d), 1 / math.sqrt(2)))
    assert {c.key() for c in specs.custom([6, 8], ns=[50], link="std:cubic").configs()} == {
        c.key() for c in specs.custom([6, 8], ns=[50]).configs()}  # a monomial is the same target either way
    for kwargs, message in [
        (dict(k=7), "feature degree k must be one of 1, 2, 3, 4, got 7"),
        (dict(link="0"), "the link must depend on z"),
        (dict(m1=0), "m1 must be at least 1"),
        (dict(sigma1="tanh"), "sigma1 must be one of"),
    ]:
        with pytest.raises(executors.SweepError, match=message):
            specs.custom([6], ns=[50], **kwargs)


def test_exponents_preset_reuses_the_cpu_runs_and_brackets_k():
    family = presets.preset("exponents")
    targets = [(g.k, g.q) for g in family.grids]
    assert targets == [(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4), (3, 3)]
    assert all(g.seeds >= 3 and not g.baselines for g in family.grids) and "Run:" in family.doc
    cpu_keys = {c.key() for c in presets.preset("cpu").configs()}
    k3 = family.grids[-1]
    assert k3.ds == (8, 12, 16, 20, 24, 32)  # the cpu grid's
    assert {c.key() for c in k3.configs()} <= cpu_keys and len(k3.configs()) == 126 + 25 * 2  # the network runs, crossing cells with 5 seeds
    for grid in family.grids:  # n = d^k · 2^j, from below d^k to well above it
        for d in grid.ds:
            ratios = [n / d**grid.k for n in grid.n_values(d)]
            assert ratios[0] <= 1 and ratios[-1] >= 8 and all(abs(math.log2(r) - round(math.log2(r))) < 0.02 for r in ratios)
    configs = family.configs()
    assert len({c.key() for c in configs}) == len(configs) == sum(len(g.configs()) for g in family.grids)
    assert [c.k for c in configs] == sorted(c.k for c in configs)  # grid after grid: a stopped sweep leaves whole grids
    assert presets.preset("exponents", seeds=5).seeds == 5 and presets.preset("exponents", baselines=True).grids[0].baselines


def test_unknown_executor(tmp_path):
    with pytest.raises(executors.SweepError, match="unknown executor 'nope'"):
        sweep.run_sweep(specs.custom([4], ns=[8], steps=1, n_test=16), executor="nope", store=Store(tmp_path))


# ------------------------------------------------------- end to end (tiny)
def _env(store_dir: Path) -> dict:
    return dict(os.environ, HIERPOLY_CACHE_DIR=str(store_dir), HIERPOLY_MAX_WORKERS="2", PYTHONPATH=str(REPO))


def _cli(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "hierpoly", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """`python -m hierpoly sweep --preset tiny --json` into an empty store, once for this module."""
    root = tmp_path_factory.mktemp("sweep")
    env = _env(root / "store")
    proc = _cli(["sweep", "--preset", "tiny", "--json"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"env": env, "store": Store(root / "store"), "out": json.loads(proc.stdout), "stderr": proc.stderr}


@pytest.mark.process
def test_tiny_sweep_stores_every_run(tiny_sweep):
    out, store = tiny_sweep["out"], tiny_sweep["store"]
    spec = presets.preset("tiny")
    cells = out["cells"]
    assert [c["key"] for c in cells] == [c.key() for c in spec.configs()]
    assert {c["arch"] for c in cells} == {"three_layer", "kernel", "two_layer"}
    for c in cells:
        assert c["status"] == "done" and not c["cached"]
        result = store.get(c["key"])
        assert result is not None and result.config.arch == c["arch"]
        assert c["test_loss"] == result.metrics["test_loss"] and c["feature_corr"] == result.metrics["feature_corr"]
    assert "sweep tiny" in tiny_sweep["stderr"]  # the progress bar
    # one job per config went through the job system (the app sees them)
    listed = records.list_jobs(store)
    assert sorted(j.key for j in listed) == sorted(c["key"] for c in cells)


@pytest.mark.process
def test_rerun_is_a_no_op(tiny_sweep):
    store = tiny_sweep["store"]
    before = len(records.list_jobs(store))
    rows = sweep.run_sweep(presets.preset("tiny"), store=store)
    assert all(r["cached"] and r["status"] == "done" for r in rows) and len(rows) == 12
    proc = _cli(["sweep", "--preset", "tiny"], tiny_sweep["env"])
    assert proc.returncode == 0 and "12 already stored, 0 run now" in proc.stdout
    assert len(records.list_jobs(store)) == before
    assert specs.missing(presets.preset("tiny"), store) == []


@pytest.mark.process
def test_figure2_json_from_the_store(tiny_sweep):
    store = tiny_sweep["store"]
    proc = _cli(["figure2", "--preset", "tiny", "--json"], tiny_sweep["env"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["missing"] == [] and report["k"] == 3
    cells = {(c["d"], c["n"]): c for c in report["cells"]}
    assert sorted(cells) == [(4, 32), (4, 128), (6, 108), (6, 432)]
    spec = presets.preset("tiny")
    for (d, n), c in cells.items():
        assert c["seeds"] == 1 and c["n_over_dk"] == pytest.approx(n / d**3)
        for arch, prefix in (("three_layer", ""), ("kernel", "kernel_"), ("two_layer", "two_layer_")):
            metrics = store.get(spec.config(d, n, 0, arch).key()).metrics
            assert c[f"{prefix}test_loss_mean"] == pytest.approx(metrics["test_loss"])
            assert c[f"{prefix}feature_corr_mean"] == pytest.approx(metrics["feature_corr"])
        assert c["test_loss_std"] is None  # one seed: no spread
    # κ as the library computes it from the same stored runs (the CLI adds nothing of its own)
    assert report["kappa"] == json.loads(json.dumps(figure2.figure2_json(spec, store)[0]["kappa"]))
    assert report["kappa"]["statistic"] == "median"
    # asking for more seeds than stored reports the gap, it is not an error
    proc = _cli(["figure2", "--preset", "tiny", "--seeds", "2", "--json"], tiny_sweep["env"])
    missing = json.loads(proc.stdout)["missing"]
    assert proc.returncode == 0 and len(missing) == 12 and all(m["stored"] == 1 and m["wanted"] == 2 for m in missing)


@pytest.mark.process
def test_figure2_never_trains_and_writes_html(tiny_sweep, tmp_path):
    env = dict(tiny_sweep["env"], HIERPOLY_CACHE_DIR=str(tmp_path / "empty"))
    proc = _cli(["figure2", "--preset", "cpu", "--json", "--out", str(tmp_path / "fig.png")], env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kappa"]["estimate"] is None and "at least two d" in report["kappa"]["reason"]
    assert (tmp_path / "fig.html").stat().st_size > 1000
    assert "fig.png" in proc.stderr  # written, or a note on how to get images
    assert records.list_jobs(Store(tmp_path / "empty")) == []  # nothing was submitted
    html = tmp_path / "tiny.html"
    proc = _cli(["figure2", "--preset", "tiny", "--out", str(html)], tiny_sweep["env"])
    assert proc.returncode == 0 and "κ" in proc.stdout and html.stat().st_size > 1000


@pytest.mark.process
def test_stored_runs_match_configs_exactly(tiny_sweep):
    store = tiny_sweep["store"]
    assert len(specs.stored_runs(presets.preset("tiny"), store)) == 12
    assert len(specs.stored_runs(presets.preset("tiny", baselines=False), store)) == 4
    other = dataclasses.replace(presets.preset("tiny"), steps=201)  # a different grid at the same (d, n)
    assert set(specs.stored_runs(other, store)["arch"]) == {"kernel"}  # a closed-form fit has no step cap
    cover = specs.coverage(presets.preset("tiny", seeds=3), store)
    assert len(cover) == 12 and (cover["stored"] == 1).all() and (cover["wanted"] == 3).all()


@pytest.mark.process
def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, HIERPOLY_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    for args in (["sweep", "--preset", "tiny", "--k", "2"], ["figure2", "--d", "4", "--n", "10", "--k", "7"],
                 ["sweep", "--d", "4", "--n", "10", "--link", "banana"], ["sweep", "--d", "4", "--n", "10", "--m1", "0"],["sweep", "--preset", "tiny", "--d", "4"], ["sweep"], ["figure2", "--d", "4"], ["sweep", "--preset", "tiny", "--executor", "nope"]):
        proc = _cli(args, env, timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:"), (args, proc.stderr)


@pytest.mark.process
def test_cli_custom_grid_of_another_target_runs_and_reads_back(tmp_path):
    """A k = 2, quartic-link grid through `sweep` (real worker processes), read back by `figure2` with the same options."""
    env = _env(tmp_path / "store")
    grid = ["--d", "4", "6", "--multiples", "1", "4", "--k", "2", "--link", "quartic", "--seeds", "1",
            "--steps", "30", "--m2", "50", "--n-test", "256", "--n-eval", "4096", "--no-baselines"]
    proc = _cli(["sweep", *grid, "--json"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)["cells"]
    assert sorted((r["d"], r["n"]) for r in rows) == [(4, 16), (4, 64), (6, 36), (6, 144)]
    store = Store(tmp_path / "store")
    for r in rows:
        cfg = store.get(r["key"]).config
        assert (cfg.k, cfg.link, cfg.m2, cfg.n_eval, cfg.steps) == (2, "quartic", 50, 4096, 30) and r["status"] == "done"
    proc = _cli(["figure2", *grid, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["k"], report["q"], report["link"], report["missing"]) == (2, 4, "quartic", [])
    assert [(c["d"], c["n"], c["seeds"]) for c in report["cells"]] == [(4, 16, 1), (4, 64, 1), (6, 36, 1), (6, 144, 1)]
    assert [e["kernel_kq"] for e in report["exponents"]] == [8] and report["kappa"]["criterion"] == "feature_corr"
    other = _cli(["figure2", *grid[:-1], "--json"], env)  # with baselines: another grid, none of it stored
    assert len(json.loads(other.stdout)["missing"]) == 8


def test_the_cpu_grid_has_five_network_seeds_around_the_crossings():
    spec = presets.cpu()
    seeds = {(c.d, c.n, c.arch): 0 for c in spec.configs()}
    for c in spec.configs():
        seeds[(c.d, c.n, c.arch)] += 1
    assert seeds[(16, 2048, "three_layer")] == 5 and seeds[(16, 2048, "kernel")] == 3
    assert seeds[(16, 512, "three_layer")] == 3 and seeds[(20, 16000, "three_layer")] == 5
    assert seeds[(16, 2048, "two_layer")] == 1
    assert seeds[(24, 3456, "three_layer")] == seeds[(24, 27648, "three_layer")] == 5 and seeds[(24, 55296, "three_layer")] == 3
    # d = 32, d³/8 … 8d³: its d³/8 too, where the seed median crosses 0.8 (at d ≤ 24 every crossing is above d³/4)
    assert [seeds[(32, 2**j, "three_layer")] for j in range(12, 19)] == [5, 5, 5, 5, 5, 3, 3]
    assert all(seeds[(32, 2**j, "kernel")] == 3 for j in range(12, 19))
    assert len(spec.configs()) == 42 * 3 * 2 + 42 + 25 * 2  # 25 crossing cells with two more network seeds
    assert presets.cpu(seeds=6).seeds_for(16, 2048) == 6  # never fewer than the grid's own count
    assert specs.seeds_text(spec) == "3 seeds, 5 for the network around the crossings, 1 for the two-layer baseline"
    assert specs.seeds_text(presets.tiny()) == "1 seed"

    cells = pd.DataFrame({"d": [8, 8, 32], "n": [64, 128, 8192]})
    counts = specs.n_counts(presets.cpu(), cells)
    assert counts == {8: (2, 7), 32: (1, 7)}
    assert specs.ds_text([8, 32], [8, 32, 40], {32: (1, 7)}) == "d = 8, 32; d = 32 at 1 of 7 n; d = 40 not run yet"
    assert specs.ds_text([8, 32], [8, 32], {8: (7, 7), 32: (7, 7)}) == "d = 8, 32"
    with pytest.raises(executors.SweepError, match="multiples"):
        specs.custom((4,), ns=(64,), crossing_multiples=(1.0,))
    with pytest.raises(executors.SweepError, match="crossing_cells must be"):
        specs.custom((4, 8), multiples=(1.0, 2.0), crossing_cells=((16, 1.0),))  # a d the grid does not have
    with pytest.raises(executors.SweepError, match="crossing_cells must be"):
        specs.custom((4, 8), multiples=(1.0, 2.0), crossing_cells=((8, 4.0),))  # a multiple it does not have
