"""The pair-product first block agrees with the direct formulation: the tensor, values, every gradient, a run."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.bench import timing
from hierpoly.config import RunConfig, first_block_by_pairs
from hierpoly.engine import loop, model, tensor, train
from hierpoly.engine.data import make_data
from hierpoly.jobs import budget

RTOL = 1e-9  # float64: the two formulations differ by rounding only


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _params(d, m1, m2=30, seed=0, u_scale=1.0):
    """θ with s ≠ 0 (as drawn at init) and, unless u_scale = 0, u away from its zero init; float64."""
    cfg = RunConfig(d=d, n=8, m1=m1, m2=m2)
    params = model.init(jax.random.PRNGKey(seed), cfg)
    k_u, k_c = jax.random.split(jax.random.PRNGKey(seed + 1))
    params = {**params, "u": jax.random.normal(k_u, (m1,)) * u_scale, "c": jax.random.normal(k_c, (m2,))}
    return {k: v.astype(jnp.float64) for k, v in params.items()}


def _x(n, d, seed=2):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, d), jnp.float64)


def _close(fast, direct, name, rtol=RTOL):
    fast, direct = np.asarray(fast), np.asarray(direct)
    err = np.abs(fast - direct).max() / max(np.abs(direct).max(), 1e-30)
    assert err <= rtol, f"{name}: relative error {err:.2e} > {rtol}"


def test_pair_products_are_the_pairs_of_the_homogeneous_inputs(x64):
    x = _x(7, 3)
    pairs = tensor.pair_products(x)
    a, b = tensor.pair_index(3)
    assert pairs.shape == (10, 7) and len(set(zip(a, b))) == 10 and np.all(a <= b)
    xh = np.concatenate([np.asarray(x), np.ones((7, 1))], axis=1)
    np.testing.assert_array_equal(pairs, (xh[:, a] * xh[:, b]).T)
    np.testing.assert_array_equal(tensor.inputs_from_pairs(pairs, 3), xh.T)
    np.testing.assert_array_equal(tensor.first_points(tensor.blocked(pairs, 1), 2)[0], (xh[:2, a] * xh[:2, b]).T)


def test_blocked_pair_products_keep_the_points_in_order(x64):
    pairs = tensor.pair_products(_x(12, 3))
    blocks = tensor.blocked(pairs, 4)
    assert blocks.shape == (4, 10, 3)
    np.testing.assert_array_equal(blocks[2], pairs[:, 6:9])  # point j: block j // 3, column j % 3
    np.testing.assert_array_equal(tensor.first_points(blocks, 7), pairs[None, :, :7])  # across blocks
    p = _params(3, 9)
    np.testing.assert_array_equal(tensor.feature_from_blocks(p, blocks), tensor.feature_from_pairs(p, pairs))


def test_sample_blocks_divide_n_fit_the_cache_and_start_where_q_leaves_it():
    from hierpoly.config import pair_count

    assert tensor.pair_blocks(16000, 20) == 1  # Q 15 MB: stays in the L3 between the two matmuls
    for n, d in [(64000, 20), (32000, 20), (27648, 24), (110592, 24), (512000, 40)]:
        blocks = tensor.pair_blocks(n, d)
        assert n % blocks == 0 and 4 * pair_count(d) * n // blocks <= tensor.BLOCK_BYTES, (n, d, blocks)
        assert 4 * pair_count(d) * n // (blocks - 1) > tensor.BLOCK_BYTES or n % (blocks - 1), (n, d)  # the fewest
    assert tensor.pair_blocks(64000, 20) == 8 and tensor.pair_blocks(512000, 40) == 250
    assert tensor.pair_blocks(100003, 20) == 1  # a prime n has no blocks: the unblocked step


@pytest.mark.parametrize("u_scale", [1.0, 0.0])
def test_the_step_block_by_block_has_the_whole_loss_gradient(x64, u_scale):
    """Each sample block's forward and backward together, summed: the dense reference's value and every gradient."""
    cfg = RunConfig(d=5, n=500, m2=200, n_test=64)
    data = make_data(cfg)
    p = _params(cfg.d, cfg.m1, cfg.m2, u_scale=u_scale)
    x, y = data.x_train.astype(jnp.float64), data.y_train.astype(jnp.float64)
    dense = jax.value_and_grad(train.joint_loss)(p, x, y, "cube", model.relu_sum_dense, None, False)
    blocked = model.Forward("cube", by_pairs=True, pair_blocks=5)
    value, grads = jax.jit(train.network_value_and_grad, static_argnums=2)(p, (blocked.encode(x), y), blocked)
    _close(value, dense[0], "loss", 1e-7)
    for name in p:
        if u_scale == 0 and name in ("s", "V"):
            assert not np.any(np.asarray(grads[name]))
        else:
            _close(grads[name], dense[1][name], f"d/d{name}", 1e-7)  # 1e-7: the sorted second block's prefix sums


def test_the_benchs_first_block_in_blocks_is_the_whole_read_out_and_its_gradient(x64):
    """`bench` times the first block as the step computes it: in blocks, the same value and gradient as in one."""
    n, d = 600, 5
    p, x = _params(d, d * d), _x(n, d)
    cotangent = jax.random.normal(jax.random.PRNGKey(3), (n,), jnp.float64)
    whole = jax.value_and_grad(lambda q: jnp.vdot(cotangent, tensor.feature_from_pairs(q, tensor.pair_products(x))))(p)
    forward = model.Forward("cube", by_pairs=True, pair_blocks=4)
    value, grads = timing._first_block(p, forward.encode(x), cotangent=cotangent, forward=forward)
    _close(value, whole[0], "read-out")
    for name in ("u", "s", "V"):
        _close(grads[name], whole[1][name], f"d/d{name}")


def test_a_chunk_in_sample_blocks_takes_the_unblocked_steps():
    cfg = RunConfig(d=6, n=3000, m2=100, n_test=64)
    data, params = make_data(cfg), model.init(jax.random.PRNGKey(0), cfg)
    ends = []
    for blocks in (1, 6):
        forward = model.Forward("cube", by_pairs=True, pair_blocks=blocks)
        (state, _), clock = loop.chunk(loop.adam_state(params), loop.start_clock(), (forward.encode(data.x_train), data.y_train),
                                       {"lr": jnp.float32(cfg.lr)}, loop.rules(2**30), jnp.int32(40), step=train.joint_step,
                                       forward=forward)
        ends.append((state, float(clock.last_loss)))
    assert ends[1][1] == pytest.approx(ends[0][1], rel=1e-5)
    for name in params:
        np.testing.assert_allclose(ends[1][0][name], ends[0][0][name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_coefficients_are_the_paper_tensors(x64):
    """W_{ab,c} = w_ab T_abc, and T's blocks are T3, T2/3, T1/3 and T0 of the module docstring."""
    d, m1 = 4, 11
    p = _params(d, m1)
    u, s, V = (np.asarray(p[k]) for k in ("u", "s", "V"))
    vh = np.concatenate([V, s[:, None]], axis=1)
    T = np.einsum("i,ia,ib,ic->abc", u / m1, vh, vh, vh)
    np.testing.assert_allclose(T[:d, :d, :d], np.einsum("i,ia,ib,ic->abc", u / m1, V, V, V), rtol=1e-12)
    np.testing.assert_allclose(3 * T[:d, :d, d], 3 / m1 * np.einsum("i,ia,ib->ab", u * s, V, V), rtol=1e-12)
    np.testing.assert_allclose(3 * T[:d, d, d], 3 / m1 * (u * s**2) @ V, rtol=1e-12)
    assert T[d, d, d] == pytest.approx(np.sum(u * s**3) / m1, rel=1e-12)
    a, b = tensor.pair_index(d)
    _close(tensor.coefficients(p), np.where(a < b, 2.0, 1.0)[:, None] * T[a, b, :], "W")


def _grads(fn, p, data, n):
    """The value and gradients of a random read-out w·g of a feature g over n points."""
    w = jax.random.normal(jax.random.PRNGKey(5), (n,), data.dtype)
    return jax.jit(jax.value_and_grad(lambda p, data: jnp.vdot(w, fn(p, data))))(p, data)


@pytest.mark.parametrize("u_scale", [1.0, 0.0])  # u = 0 as at init: g = 0, ∂s = ∂V = 0, ∂u ≠ 0
def test_feature_and_its_gradients_match_the_direct_formulation(x64, u_scale):
    d, m1, n = 5, 25, 500
    p, x = _params(d, m1, u_scale=u_scale), _x(n, d)
    assert np.all(np.asarray(p["s"]) != 0)
    direct = model.feature(p, x, "cube")
    pairs = tensor.pair_products(x)
    _close(tensor.feature_from_pairs(p, pairs), direct, "g")
    assert u_scale or not np.any(np.asarray(tensor.feature_from_pairs(p, pairs)))  # exactly 0 at init
    value_fast, grads_fast = _grads(tensor.feature_from_pairs, p, pairs, n)
    value_direct, grads_direct = _grads(lambda p, x: model.feature(p, x, "cube"), p, x, n)
    assert abs(float(value_fast - value_direct)) <= 1e-9 * max(1.0, abs(float(value_direct)))
    for name in ("u", "s", "V"):
        if u_scale == 0 and name != "u":
            assert not np.any(np.asarray(grads_fast[name])) and not np.any(np.asarray(grads_direct[name]))
        else:
            _close(grads_fast[name], grads_direct[name], f"d/d{name}")


def test_whole_loss_gradient_matches_the_dense_reference(x64):
    """Every parameter, the second block's a, b, c included, through the loss (dense ReLU, no blocks)."""
    cfg = RunConfig(d=5, n=500, m2=200, n_test=64)
    data = make_data(cfg)
    p = _params(cfg.d, cfg.m1, cfg.m2)
    x, y = data.x_train.astype(jnp.float64), data.y_train.astype(jnp.float64)
    grad = jax.jit(jax.value_and_grad(train.joint_loss), static_argnums=(3, 4, 5, 6))
    l_fast, g_fast = grad(p, x, y, "cube", train.relu_sum_fast, None, True)
    l_dense, g_dense = grad(p, x, y, "cube", model.relu_sum_dense, None, False)
    _close(l_fast, l_dense, "loss", 1e-7)
    for name in p:
        _close(g_fast[name], g_dense[name], f"d/d{name}", 1e-7)  # 1e-7: the sorted second block's prefix sums


def test_float32_gradients_agree_to_float_rounding():
    d, m1, n = 16, 256, 3000
    with jax.enable_x64(True):
        p = {k: v.astype(jnp.float32) for k, v in _params(d, m1).items()}
    x = jax.random.normal(jax.random.PRNGKey(3), (n, d))
    _, grads_fast = _grads(tensor.feature_from_pairs, p, tensor.pair_products(x), n)
    _, grads_direct = _grads(lambda p, x: model.feature(p, x, "cube"), p, x, n)
    for name in ("u", "s", "V"):
        _close(grads_fast[name], grads_direct[name], f"float32 d/d{name}", 2e-5)


def test_vmap_over_seeds_matches_each_seed(x64):
    """Seed batching vmaps the step: stacked pair products, one program."""
    ps = [_params(4, 16, seed=s) for s in range(3)]
    xs = [_x(100, 4, seed=10 + s) for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *ps)
    pairs = jnp.stack([tensor.pair_products(x) for x in xs])
    grad = jax.grad(lambda p, q: jnp.sum(tensor.feature_from_pairs(p, q) ** 2))
    batched = jax.jit(jax.vmap(grad))(stacked, pairs)
    for i, (p, x) in enumerate(zip(ps, xs)):
        one = jax.grad(lambda p, x: jnp.sum(model.feature(p, x, "cube") ** 2))(p, x)
        for name in ("u", "s", "V"):
            _close(batched[name][i], one[name], f"seed {i} d/d{name}")


def test_pairs_only_for_the_cube():
    with pytest.raises(ValueError, match="cube"):
        model.Forward("relu", by_pairs=True)
    assert first_block_by_pairs(RunConfig(d=8, n=100))
    assert not first_block_by_pairs(RunConfig(d=4, n=100))  # tiny matmuls: the bench measured direct faster
    assert not first_block_by_pairs(RunConfig(d=8, n=100, sigma1="relu"))
    assert not first_block_by_pairs(RunConfig(d=8, n=100, mode="layerwise"))
    assert not first_block_by_pairs(RunConfig(d=8, n=100, m1=10))  # a narrow first layer: direct is cheaper
    assert model.training_forward(RunConfig(d=8, n=100)).by_pairs


def test_budget_counts_the_pair_products():
    cfg = RunConfig(d=20, n=64000)
    direct = dataclasses.replace(cfg, m1=10)  # the same data, the direct path
    assert budget.pair_bytes(cfg, cfg.n) == 4 * 64000 * 231 and budget.pair_bytes(direct, direct.n) == 0
    assert budget.memory_bytes(cfg) >= 4 * 64000 * 231
    assert budget.memory_bytes(RunConfig(d=40, n=512000)) > 1.6 * 2**30  # 1.6 GiB of pairs alone


RUN = dict(d=4, n=700, m2=50, n_test=256, n_eval=8192, steps=150, tol=0.0, feature_tol=0.0)


def _reblocked(cfg, monkeypatch):
    """The direct run computed in other sample blocks (256, n = 700): float32 reassociation alone, the yardstick."""
    with monkeypatch.context() as patch:
        patch.setattr(model, "training_forward", lambda cfg, relu_sum, by_pairs: model.Forward(cfg.sigma1, relu_sum, 256))
        return train.run(cfg, chunk=100)


@pytest.mark.slow
def test_a_run_by_pairs_reproduces_the_direct_run(monkeypatch):
    """Same steps; metrics and θ as close to the direct run as the direct run computed in other sample blocks.

    Adam over 150 steps amplifies float32 reassociation to 1e-3..1e-2 relative in some metrics (the
    standard errors, a tiny train loss) whichever way the sums are regrouped: that is the yardstick.
    """
    cfg = RunConfig(**RUN)
    direct, pairs = train.run(cfg, chunk=100, by_pairs=False), train.run(cfg, chunk=100, by_pairs=True)
    yardstick = _reblocked(cfg, monkeypatch)
    assert direct.status == pairs.status == "done" and direct.steps == pairs.steps == yardstick.steps == 150
    assert direct.metrics["feature_corr"] > 0.3  # it learned something, so the comparison means something
    for name, value in direct.metrics.items():
        allowed = 3 * max(abs(yardstick.metrics[name] - value), 2e-3 * abs(value))
        assert abs(pairs.metrics[name] - value) <= allowed, name
    for name, value in direct.params.items():
        allowed = 3 * max(np.abs(yardstick.params[name] - value).max(), 2e-3 * np.abs(value).max())
        assert np.abs(pairs.params[name] - value).max() <= allowed, name


@pytest.mark.slow
def test_batched_seeds_by_pairs_reproduce_the_direct_runs():
    cfgs = [RunConfig(**RUN, seed=s) for s in range(2)]
    direct, pairs = train.run_seeds(cfgs, by_pairs=False), train.run_seeds(cfgs, by_pairs=True)
    for a, b in zip(direct, pairs):
        assert a.steps == b.steps == 150
        for name in ("test_loss", "test_loss_cv", "feature_corr"):
            assert b.metrics[name] == pytest.approx(a.metrics[name], rel=5e-3), name
        for name, value in a.metrics.items():  # standard errors and the train loss: reassociation, amplified
            assert b.metrics[name] == pytest.approx(value, rel=3e-2, abs=1e-6), name
