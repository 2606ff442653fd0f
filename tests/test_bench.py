"""`bench`: the reference and production paths compute the same training, and `--quick` reports every figure."""
import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import bench, loop, model, train
from hierpoly.engine.data import keys, make_data


@pytest.mark.slow
def test_reference_and_production_take_the_same_steps():
    cfg = RunConfig(d=5, n=3000, m2=120, n_test=16)  # n not a multiple of the sample block
    data, params = make_data(cfg), model.init(keys(cfg.seed)["init"], cfg)
    state, lr = loop.adam_state(params), jnp.float32(cfg.lr)
    (ref_params, _), ref_losses = bench.reference_steps(params, state[1], data.x_train, data.y_train, lr, n_steps=20)
    (prod_params, _), clock = loop.chunk(
        state, loop.start_clock(), (data.x_train, data.y_train), {"lr": lr}, loop.rules(2**30), jnp.int32(20),
        step=train.joint_step, forward=model.Forward(cfg.sigma1),
    )
    assert int(clock.step) == 20 and float(clock.last_loss) == pytest.approx(float(ref_losses[-1]), rel=1e-4)
    assert float(ref_losses[-1]) < float(ref_losses[0])  # it trains
    for name in params:
        np.testing.assert_allclose(prod_params[name], ref_params[name], rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.slow
@pytest.mark.process
def test_quick_bench_reports_every_figure():
    out = bench.run_bench(quick=True, log=lambda line: None)
    (case,) = out["cases"]
    assert case["speedup"] == pytest.approx(case["ms_per_step_reference"] / case["ms_per_step"])
    assert set(case["breakdown"]) >= {"first_block_share", "first_block_peak_fraction", "second_block_share",
                                      "optimizer_share", "round_trip_ms"}
    assert all(v > 0 for v in case["breakdown"].values())
    assert "lax.scan of optax Adam" in out["reference"] and "seconds_batched" in out["seed_batching"]
    assert "\n" in bench.format_report(out)
