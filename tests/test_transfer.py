"""Transfer: the frozen first block of a stored run fitted to a new link; its config, key, storage and runner."""
import dataclasses

import numpy as np
import pytest

from hierpoly.config import ConfigError, RunConfig, transfer_config, transfer_mismatch
from hierpoly.results import bundles
from hierpoly.results.codec import StoreError, from_bytes, to_bytes
from hierpoly.results.store import Store

# tiny, seconds-long runs: the machinery, not the science
SOURCE = RunConfig(d=4, n=256, m2=50, steps=300, n_test=256, n_eval=4096)


def test_a_shipped_key_is_unchanged():
    # cache/precomputed/cpu.zip holds this run (d = 8, n = 4 d^3, seed 0): the source field must leave it alone
    assert RunConfig(d=8, n=2048).key().startswith("3d0c9cf6e329f49e")
    assert RunConfig(d=8, n=2048).source is None


def test_transfer_config_copies_the_source_and_its_key_covers_source_link_n_seed():
    cfg = transfer_config(SOURCE, "quadratic", 64, 1)
    assert (cfg.arch, cfg.source, cfg.d, cfg.m1, cfg.m2, cfg.n_eval) == ("transfer", SOURCE.key(), 4, 16, 50, 4096)
    assert transfer_mismatch(cfg, SOURCE) is None
    other_source = dataclasses.replace(SOURCE, seed=1)
    keys = {cfg.key(), transfer_config(SOURCE, "std:h1+h4", 64, 1).key(), transfer_config(SOURCE, "quadratic", 65, 1).key(),
            transfer_config(SOURCE, "quadratic", 64, 2).key(), transfer_config(other_source, "quadratic", 64, 1).key(),
            transfer_config(SOURCE, "quadratic", 64, 1, mode="layerwise").key()}
    assert len(keys) == 6
    wider = dataclasses.replace(SOURCE, m1=20)
    assert "m1 = 16 differs" in transfer_mismatch(dataclasses.replace(cfg, source=wider.key()), wider)
    assert "names source" in transfer_mismatch(cfg, other_source)


@pytest.mark.parametrize("source, message", [
    (dataclasses.replace(SOURCE, arch="kernel"), "three-layer run trained jointly"),
    (dataclasses.replace(SOURCE, mode="layerwise", m1=35), "three-layer layerwise"),
    (dataclasses.replace(SOURCE, sigma1="relu"), "must be cube"),
])
def test_a_source_that_cannot_lend_its_block_is_refused_in_one_line(source, message):
    with pytest.raises(ConfigError, match=message) as err:
        transfer_config(source, "quadratic", 64)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("changes, message", [
    (dict(source="abc"), "64 hex digits"),
    (dict(source=None), "64 hex digits"),
    (dict(steps2=10), "not a transfer setting"),
])
def test_transfer_config_validation(changes, message):
    base = dict(d=4, n=64, m1=16, arch="transfer", source="a" * 64, mode="layerwise")
    with pytest.raises(ConfigError, match=message):
        RunConfig(**{**base, **changes})


def test_source_belongs_to_transfers_only():
    with pytest.raises(ConfigError, match="transfer runs only"):
        RunConfig(d=4, n=64, source="a" * 64)


@pytest.fixture(scope="module")
def source_result():
    from hierpoly.jobs import runner

    ended = runner.execute(SOURCE)
    assert ended.status == "done"
    return ended.result


def test_three_layer_results_keep_their_first_block_and_it_round_trips(source_result):
    block = source_result.first_block
    assert {k: v.shape for k, v in block.items()} == {"u": (16,), "s": (16,), "V": (16, 4)}
    back = from_bytes(to_bytes(source_result))
    assert all(np.array_equal(back.first_block[k], block[k]) for k in block)


@pytest.mark.parametrize("block, message", [
    (dict(u=np.zeros(15, np.float32)), "shape"),
    (dict(u=np.zeros(16, np.float64)), "float32"),
    (dict(V=np.full((16, 4), np.nan, np.float32)), "non-finite"),
])
def test_a_bad_first_block_is_refused(source_result, block, message):
    bad = dataclasses.replace(source_result, first_block={**source_result.first_block, **block})
    with pytest.raises(StoreError, match=message):
        to_bytes(bad)


@pytest.mark.slow
def test_a_transfer_retrains_a_source_without_a_block_exactly_then_reuses_the_stored_one(source_result):
    from hierpoly.jobs import runner

    store = Store()
    store.put(dataclasses.replace(source_result, first_block={}))  # as the shipped results: no parameters
    runner.forget_retrained()
    cfg = transfer_config(SOURCE, "quadratic", 64, 0, mode="layerwise", steps=200)
    ended = runner.execute(cfg, results=store)
    assert ended.status == "done", ended.message
    how = ended.result.meta["extra"]["source"]
    assert how["first_block"] == "retrained from the source's config"
    assert how["retrained_test_loss"] == how["stored_test_loss"]  # same machine, same config: the same run
    assert all(np.array_equal(ended.result.first_block[k], source_result.first_block[k]) for k in "usV")
    m = ended.result.metrics
    assert np.isfinite(m["test_loss"]) and m["test_loss_se"] > 0
    store.put(ended.result)
    runner.forget_retrained()
    again = runner.execute(transfer_config(SOURCE, "quadratic", 64, 1, mode="layerwise", steps=200), results=store)
    assert again.result.meta["extra"]["source"]["first_block"].startswith("stored with transfer")
    joint = runner.execute(transfer_config(SOURCE, "quadratic", 64, 0, steps=300), results=store)
    assert joint.status == "done" and np.isfinite(joint.result.metrics["test_loss"])
    assert joint.result.meta["stopped_by"] in ("plateau", "feature settled", "step cap")
    # the frozen block is the source's, whatever the fit
    assert all(np.array_equal(joint.result.first_block[k], source_result.first_block[k]) for k in "usV")
    # in a bundle, with its first block
    got = bundles.read_bundle(bundles.export_bundle(store, [cfg.key()]))
    assert set(got[cfg.key()].first_block) == {"u", "s", "V"}


def test_a_missing_source_is_one_line():
    from hierpoly.jobs import runner

    with pytest.raises(ConfigError, match="no stored run with key"):
        runner.transfer_source(transfer_config(SOURCE, "quadratic", 64), Store())


def test_the_preset_lists_transfer_scratch_and_kernel_and_reports_missing_runs():
    from hierpoly.study import presets
    from hierpoly.study.transfer import report

    spec = presets.transfer()
    assert spec.ds == (8, 12, 16, 20) and spec.ns == (16, 64, 256, 1024, 4096) and spec.seeds == 3
    assert spec.source(8).key().startswith("3d0c9cf6e329f49e")  # the shipped run
    assert len(spec.configs()) == 4 * 5 * len(spec.links) * 3 * 3
    small = spec.with_options(ds=(8,), ns=(16,), links=("quadratic",), seeds=1)
    rep = report(small, Store())
    assert {m["role"] for m in rep["missing"]} == {"transfer", "scratch", "kernel"}
    assert all(c["test_loss"] is None for c in rep["cells"])


def test_transfer_figure_draws_one_line_per_d_and_role():
    import pandas as pd

    from hierpoly.views.plots import transfer_figure

    def cell(d, n, link, role, loss):
        band = {} if loss is None else {"test_loss_median": loss, "test_loss_min": loss / 2, "test_loss_max": loss * 3}
        return {"d": d, "n": n, "link": link, "role": role, "seeds": 3, "test_loss": loss, "test_loss_se": 0.01,
                "test_loss_median": None, "test_loss_min": None, "test_loss_max": None, **band}

    cells = pd.DataFrame([cell(d, n, "quadratic", role, 0.5 / n**0.5)
                          for d in (8, 12) for n in (16, 64) for role in ("transfer", "scratch", "kernel")]
                         + [cell(8, 16, "other", "transfer", None)])
    fig = transfer_figure(cells, "quadratic")
    assert len(fig.data) == 6
    assert {t.line.dash for t in fig.data} == {"solid", "dash", "dot"}
    line = fig.data[0]  # the median, bars down to the lowest seed and up to the highest
    np.testing.assert_allclose(line.y, [0.125, 0.0625])
    np.testing.assert_allclose(line.error_y.arrayminus, [0.0625, 0.03125])
    np.testing.assert_allclose(line.error_y.array, [0.25, 0.125])


@pytest.mark.parametrize("args, message", [
    (["transfer", "--link", "quadratic", "--n", "64"], "needs --from KEY"),
    (["transfer", "--from", "zz", "--link", "quadratic", "--n", "64"], "prefix of at least 4 hex digits"),
    (["transfer", "--from", "abcd", "--link", "quadratic", "--n", "64"], "no stored run with key abcd"),
    (["transfer", "--preset", "nope"], "unknown transfer preset"),
    (["transfer", "--preset", "transfer", "--out", "fig.png"], ".html"),
    (["transfer", "--preset", "transfer", "--links", "nonsense"], "link"),
])
def test_transfer_command_refuses_bad_input_in_one_line(args, message, capsys, monkeypatch):
    from hierpoly import cli

    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "0")
    assert cli.main(args) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_transfer_command_refuses_a_kernel_source(source_result, capsys, monkeypatch):
    from hierpoly import cli

    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "0")
    kernel = dataclasses.replace(source_result, config=dataclasses.replace(SOURCE, arch="kernel"), first_block={})
    Store().put(kernel)
    assert cli.main(["transfer", "--from", kernel.key[:12], "--link", "quadratic", "--n", "64"]) == 2
    assert "three-layer run trained jointly" in capsys.readouterr().err


def test_the_preset_answers_from_the_store_with_missing_runs_named(capsys, monkeypatch):
    import json

    from hierpoly import cli

    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "0")
    assert cli.main(["transfer", "--preset", "transfer", "--d", "8", "--max-n", "64", "--seeds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {(c["d"], c["n"]) for c in out["cells"]} == {(8, 16), (8, 64)}
    assert len(out["missing"]) == 2 * 2 * 3 and out["sources"][0]["key"].startswith("3d0c9cf6e329f49e")


@pytest.mark.process
@pytest.mark.slow
def test_transfer_command_end_to_end(source_result, cache_dir, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    Store().put(dataclasses.replace(source_result, first_block={}))
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "HIERPOLY_CACHE_DIR": str(cache_dir), "HIERPOLY_LOAD_PRECOMPUTED": "0"}
    res = subprocess.run([sys.executable, "-m", "hierpoly", "transfer", "--from", source_result.key[:10], "--link",
                          "quadratic", "--n", "32", "--seed", "1", "--json"], capture_output=True, text=True, env=env,
                         cwd=repo, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for role in ("transfer", "scratch", "kernel"):
        assert out[role]["status"] == "done" and out[role]["test_loss_se"] > 0
    assert out["transfer"]["source_first_block"]["first_block"] == "retrained from the source's config"


def test_the_tail_counts_the_points_and_their_error_share_as_a_direct_computation():
    import jax

    from hierpoly import targets
    from hierpoly.engine import evaluation, model
    from hierpoly.engine.data import draw, keys, target
    from hierpoly.engine.piecewise import relu_sum_fast

    cfg = SOURCE
    params = model.init(keys(cfg.seed)["init"], cfg)
    params = {**params, "c": jax.random.normal(jax.random.key(1), params["c"].shape)}  # h_θ ≠ g: an error to share
    lam = targets.lambdas(keys(cfg.seed)["lam"], cfg.d)
    forward = model.Forward(cfg.sigma1, relu_sum_fast)
    tgt = target(cfg, lam)
    x, y, _ = draw(jax.random.fold_in(keys(cfg.seed)["eval"], 0), cfg.n_eval, tgt)  # n_eval ≤ one chunk: every point
    pred, g = (np.asarray(a, np.float64) for a in evaluation.network_output(params, x, forward))
    lo, hi = np.quantile(g, [0.1, 0.8])
    err, outside = (pred - np.asarray(y)) ** 2, (g < lo) | (g > hi)
    got = evaluation.population_metrics(cfg, tgt.lam, evaluation.network_output, params, forward, g_range=(lo, hi))
    assert got["outside_points"] == pytest.approx(outside.mean(), abs=2 / cfg.n_eval)
    assert got["outside_loss_share"] == pytest.approx(err[outside].sum() / err.sum(), rel=1e-4)
    assert got["test_loss"] == pytest.approx(err.mean(), rel=1e-4)  # the same pass scores the whole
    everything = evaluation.population_metrics(cfg, tgt.lam, evaluation.network_output, params, forward,
                                               g_range=(np.inf, -np.inf))
    assert (everything["outside_points"], everything["outside_loss_share"]) == (1.0, pytest.approx(1.0))


def test_claims_read_the_half_way_n_and_who_wins_from_the_cells():
    from hierpoly.study.transfer import claims

    def cell(d, n, role, loss, spread=0.0):
        band = {"test_loss_median": loss, "test_loss_min": None if loss is None else loss - spread,
                "test_loss_max": None if loss is None else loss + spread}
        return {"d": d, "n": n, "link": "quadratic", "role": role, "test_loss": loss, **band}

    cells = [cell(12, 64, "transfer", 0.6), cell(12, 256, "transfer", 0.3), cell(12, 256, "scratch", 0.9),
             cell(12, 256, "kernel", 0.8), cell(16, 64, "transfer", 0.45), cell(16, 256, "transfer", 0.2),
             cell(16, 256, "scratch", 0.1), cell(16, 256, "kernel", 1.0), cell(8, 256, "transfer", 0.9),
             cell(8, 256, "scratch", 0.1), cell(8, 256, "kernel", 0.1), cell(20, 16, "transfer", None)]
    got = claims(cells)["quadratic"]
    assert got["half_n"] == {"8": None, "12": 256, "16": 64, "20": None}
    assert got["half_n_spread"] == 4.0
    assert got["beats"] == {"d=8 N=256": False, "d=12 N=256": True, "d=16 N=256": False}  # every cell with all three
    assert got["beats_everywhere"] is False
    assert got["beats_every_seed"] is False


def test_claims_lead_with_the_median_and_ask_the_worst_transfer_seed_to_beat_the_best_rival():
    from hierpoly.study.transfer import claims

    def cell(role, median, lo, hi, mean):
        return {"d": 12, "n": 256, "link": "cubic", "role": role, "test_loss": mean,
                "test_loss_median": median, "test_loss_min": lo, "test_loss_max": hi}

    # one bad transfer seed drags the mean above scratch's; the median still wins, the worst seed does not
    cells = [cell("transfer", 0.2, 0.1, 1.5, 0.6), cell("scratch", 0.5, 0.45, 0.55, 0.5), cell("kernel", 0.8, 0.7, 0.9, 0.8)]
    got = claims(cells)["cubic"]
    assert got["half_n"] == {"12": 256} and got["beats"] == {"d=12 N=256": True}
    assert got["beats_every_seed"] is False
    cells[0] = cell("transfer", 0.2, 0.1, 0.4, 0.25)
    assert claims(cells)["cubic"]["beats_every_seed"] is True


@pytest.mark.slow
def test_a_stored_transfer_carries_its_tail_and_a_share_outside_0_1_is_refused(source_result):
    from hierpoly.jobs import runner

    store = Store()
    store.put(source_result)
    ended = runner.execute(transfer_config(SOURCE, "quadratic", 64, 0, steps=200), results=store)
    m = ended.result.metrics
    assert 0 < m["outside_points"] < 0.2 and 0 <= m["outside_loss_share"] <= 1, m  # g's training range covers most
    store.put(ended.result)
    assert store.get(ended.result.config.key()).metrics["outside_loss_share"] == m["outside_loss_share"]
    bad = dataclasses.replace(ended.result, metrics={**m, "outside_loss_share": 1.5})
    with pytest.raises(StoreError, match="share in"):
        to_bytes(bad)


def test_export_of_the_transfer_preset_takes_its_runs_only(source_result, cache_dir, tmp_path, monkeypatch, capsys):
    from hierpoly import cli
    from hierpoly.study import presets

    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "0")
    scratch = presets.transfer().runs(8, 64, "quadratic", 0)["scratch"]
    store = Store()
    store.put(dataclasses.replace(source_result, config=scratch, first_block={}))  # a grid run (the tiny run's numbers)
    store.put(source_result)  # not a grid run
    out = tmp_path / "transfer.zip"
    assert cli.main(["export", "--preset", "transfer", "--out", str(out)]) == 0
    assert list(bundles.read_bundle(out.read_bytes())) == [scratch.key()]


def test_export_per_source_keeps_one_frozen_block_per_source_and_none_elsewhere(source_result, tmp_path):
    from hierpoly.jobs import runner

    store = Store(tmp_path / "store")
    store.put(source_result)
    runner.forget_retrained()
    transfers = [runner.execute(transfer_config(SOURCE, "quadratic", n, 0, steps=50), results=store).result for n in (32, 64)]
    for result in transfers:
        store.put(result)
    keys = [source_result.key] + [r.key for r in transfers]
    got = bundles.read_bundle(bundles.export_bundle(store, keys, first_blocks="per_source"))
    kept = [key for key, result in got.items() if result.first_block]
    assert len(kept) == 1 and kept[0] in {r.key for r in transfers}  # the source's block once, on a transfer
    everything = bundles.read_bundle(bundles.export_bundle(store, keys))
    assert all(result.first_block for result in everything.values())
    with pytest.raises(bundles.BundleError, match="first_blocks"):
        bundles.export_bundle(store, keys, first_blocks="some")
