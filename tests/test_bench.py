"""`bench`: the reference and production paths compute the same training, and `--quick` reports every figure."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.bench import projections, report
from hierpoly.config import RunConfig
from hierpoly.engine import loop, model, reference, train
from hierpoly.engine.data import keys, make_data


@pytest.mark.slow
def test_reference_and_production_take_the_same_steps():
    cfg = RunConfig(d=5, n=3000, m2=120, n_test=16)  # n not a multiple of the sample block
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    state, lr = loop.adam_state(params), jnp.float32(cfg.lr)
    (ref_params, _), ref_losses = reference.reference_steps(params, state[1], data.x_train, data.y_train, lr, n_steps=20)
    (prod_params, _), clock = loop.chunk(
        state, loop.start_clock(), (data.x_train, data.y_train), {"lr": lr}, loop.rules(2**30), jnp.int32(20),
        step=train.joint_step, forward=model.Forward(cfg.sigma1),
    )
    assert int(clock.step) == 20 and float(clock.last_loss) == pytest.approx(float(ref_losses[-1]), rel=1e-4)
    assert float(ref_losses[-1]) < float(ref_losses[0])  # it trains
    for name in params:
        np.testing.assert_allclose(prod_params[name], ref_params[name], rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.slow
def test_reference_and_the_pair_product_path_take_the_same_steps():
    cfg = RunConfig(d=5, n=3000, m2=120, n_test=16)
    forward = model.training_forward(cfg, by_pairs=True)
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    state, lr = loop.adam_state(params), jnp.float32(cfg.lr)
    (ref_params, _), ref_losses = reference.reference_steps(params, state[1], data.x_train, data.y_train, lr, n_steps=20)
    (prod_params, _), clock = loop.chunk(
        state, loop.start_clock(), (forward.encode(data.x_train), data.y_train), {"lr": lr}, loop.rules(2**30),
        jnp.int32(20), step=train.joint_step, forward=forward,
    )
    assert float(clock.last_loss) == pytest.approx(float(ref_losses[-1]), rel=1e-4)
    for name in params:
        np.testing.assert_allclose(prod_params[name], ref_params[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_the_readable_loop_takes_the_scanned_steps():
    """engine.reference.train_reference, step by step, is the lax.scan the bench times: the same floats."""
    cfg = RunConfig(d=3, n=128, m2=16, n_test=16, steps=5)
    params, losses = reference.train_reference(cfg)
    data, start = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    state = loop.adam_state(start)
    (scanned, _), scan_losses = reference.reference_steps(start, state[1], data.x_train, data.y_train,
                                                          jnp.float32(cfg.lr), n_steps=5)
    assert len(losses) == 5 and losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses, np.asarray(scan_losses), rtol=1e-5)
    for name in params:
        np.testing.assert_allclose(params[name], scanned[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_chunk_count_follows_the_loop():
    """The projection counts a run's chunks with the loop's own sizing: as many as a real run's history rows."""
    cfg = RunConfig(d=4, n=256, m2=50, n_test=64, n_eval=4096, steps=200, tol=0.0, feature_tol=0.0)
    result = train.run(cfg)
    assert result.steps == 200
    assert len(result.history) - 1 == projections.chunk_count(200, 200, 0.1)  # the step-0 row, then one per chunk
    assert projections.chunk_count(20000, 40000, 50.0) > projections.chunk_count(20000, 40000, 1.0)  # slower steps, more chunks


@pytest.mark.slow
@pytest.mark.process
def test_quick_bench_reports_every_figure():
    out = report.run_bench(quick=True, log=lambda line: None)
    (case,) = out["cases"]
    # the figures, not a speed: how fast production runs against the reference is the bench's own report, read
    # where the bench runs (a CI machine's load decides nothing here)
    assert math.isfinite(case["speedup"]) and case["speedup"] > 0
    assert set(case["breakdown"]) >= {"first_block_share", "first_block_peak_fraction", "second_block_share",
                                      "loss_share", "optimizer_share", "round_trip_ms", "rest_ms", "accounted_share"}
    parts = sum(case["breakdown"][f"{name}_ms"] for name in ("first_block", "second_block", "loss", "optimizer", "round_trip",
                                                             "rules"))
    assert parts + case["breakdown"]["rest_ms"] == pytest.approx(case["ms_per_step"])  # the parts and the rest: the step
    assert case["first_block"] == "pairs" and case["speedup_over_direct"] > 0  # d = 6
    assert all(v > 0 for k, v in case["breakdown"].items() if k not in ("rest_ms", "rules_ms", "rules_share"))
    assert case["breakdown"]["rules_ms"] >= 0  # a chunk of steps that compute nothing, less its round trip: may be ~0
    (path,) = out["first_block_paths"]
    assert path["rule_picks_pairs"] is False and path["ms_per_step_direct"] > 0 < path["ms_per_step_pairs"]
    assert "lax.scan of optax Adam" in out["reference"] and "seconds_batched" in out["seed_batching"]
    assert out["cpu_preset_projected_minutes"] is None  # quick: nothing projected
    assert "\n" in report.format_report(out)


@pytest.mark.slow
def test_a_projected_cell_measures_both_plans_and_takes_the_one_the_executor_picks():
    import dataclasses

    cfgs = [dataclasses.replace(RunConfig(d=4, n=256, m2=50, n_test=64, n_eval=4096), seed=s) for s in range(2)]
    out = projections.project_cell(cfgs, [300, 900], log=lambda line: None)
    assert out["plan"] == "sequential" and not train.seeds_batch_pays(cfgs)  # on a CPU
    assert out["projected_seconds"] == out["sequential"]["projected_seconds"]
    assert out["steps"] == [300, 900] and out["steps_slowest"] == 900
    for plan in ("batched", "sequential"):
        p = out[plan]
        assert p["seconds_probe_cold"] > 0 < p["seconds_probe_warm"] and p["ms_per_step"] > 0
        assert p["projected_seconds"] > p["seconds_probe_cold"]  # steps beyond the probe's cost something


def test_the_paper_projection_takes_each_multiples_steps_from_the_largest_d_that_has_it():
    def runs(d, n, steps):
        return [(RunConfig(d=d, n=n, seed=s), k, 1.0) for s, k in enumerate(steps)]

    shipped = {(8, 512): runs(8, 512, [10, 30, 90]), (12, 1728): runs(12, 1728, [5, 7, 9, 11, 100]),
               (12, 216): runs(12, 216, [4])}
    assert projections.steps_by_multiple(shipped) == {0.125: 4, 1.0: 9}


@pytest.mark.slow
def test_the_bench_reads_the_shipped_cpu_preset_runs_from_every_bundle():
    from hierpoly.study import presets

    shipped = projections.shipped_runs()
    spec = presets.cpu()
    assert set(shipped) <= set(spec.cells()) and len(shipped) == 40 and {(24, 110592), (32, 4096), (32, 65536)} <= set(shipped)
    for (d, n), runs in shipped.items():
        assert len(runs) == spec.seeds_for(d, n) and all(cfg.key() == spec.config(d, n, cfg.seed).key() for cfg, _, _ in runs)


@pytest.mark.slow
def test_the_page_bench_reports_each_store_size():
    """`bench --page --quick`: every figure of the page bench, whatever they read (a benchmark, not a speed test)."""
    from hierpoly.bench import page

    out = page.measure_page(quick=True, log=lambda line: None)
    assert [row["results"] for row in out["stores"]] == list(page.QUICK["sizes"])
    assert all(0 < row["min_s"] <= row["median_s"] <= row["max_s"] for row in out["stores"])
    assert out["jobs"] == page.QUICK["jobs"] and f"{page.QUICK['sizes'][-1]} stored results" in page.format_page(out)
