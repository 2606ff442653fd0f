"""The sorted/prefix-sum ReLU sum agrees with the dense reference: values and every gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import model, train
from hierpoly.engine.piecewise import relu_sum_fast

RTOL = 1e-5


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _loss(relu_sum):
    """A scalar loss whose cotangent g is random, so every gradient path is exercised."""

    def loss(z, a, b, c, w):
        return jnp.sum(w * relu_sum(z, a, b, c))

    return loss


# built once, so that inputs of one shape compile once per path
_GRADS = {rs: jax.value_and_grad(_loss(rs), argnums=(0, 1, 2, 3)) for rs in (relu_sum_fast, model.relu_sum_dense)}
_JITTED = {rs: jax.jit(lambda *args, rs=rs: (rs(*args[:4]), _GRADS[rs](*args))) for rs in _GRADS}


def _value_and_grads(relu_sum, z, a, b, c, w, jit=True):
    """(f(z), (loss, (∂z, ∂a, ∂b, ∂c)))."""
    if jit:
        return _JITTED[relu_sum](z, a, b, c, w)
    return relu_sum(z, a, b, c), _GRADS[relu_sum](z, a, b, c, w)


def _close(fast, dense, name):
    fast, dense = np.asarray(fast), np.asarray(dense)
    scale = max(np.abs(dense).max(), 1e-30)
    # relative to the largest entry: an entry that cancels to ~0 is judged on the array's scale
    err = np.abs(fast - dense).max() / scale
    assert err <= RTOL, f"{name}: relative error {err:.2e} > {RTOL}"


def _check(z, a, b, c, seed=0, jit=True):
    z, a, b, c = (jnp.asarray(v, jnp.float64) for v in (z, a, b, c))
    w = jax.random.normal(jax.random.PRNGKey(seed), z.shape, jnp.float64)
    f_fast, (v_fast, g_fast) = _value_and_grads(relu_sum_fast, z, a, b, c, w, jit)
    f_dense, (v_dense, g_dense) = _value_and_grads(model.relu_sum_dense, z, a, b, c, w, jit)
    _close(f_fast, f_dense, "value")
    _close(v_fast, v_dense, "loss")
    for name, gf, gd in zip("zabc", g_fast, g_dense):
        _close(gf, gd, f"d/d{name}")


def _random(key, n, m2):
    kz, ka, kb, kc = jax.random.split(jax.random.PRNGKey(key), 4)
    return (
        jax.random.normal(kz, (n,), jnp.float64) * 2,
        jax.random.normal(ka, (m2,), jnp.float64),
        jax.random.uniform(kb, (m2,), jnp.float64, -4, 4),
        jax.random.normal(kc, (m2,), jnp.float64),
    )


@pytest.mark.parametrize("n, m2", [(1, 1), (1, 50), (50, 1), (400, 64), pytest.param(2048, 1000, marks=pytest.mark.slow)])
def test_random_inputs_match_dense(x64, n, m2):
    _check(*_random(n + m2, n, m2), seed=n)


def test_rademacher_a_as_at_init(x64):
    z, _, b, c = _random(7, 400, 64)
    a = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(8), 0.5, (64,)), 1.0, -1.0)
    _check(z, a, b, c)


def _grid_case(key):
    """Exact ties: a in {±1/2, ±1, ±2}, b and z on a dyadic grid, so a z + b = 0 exactly at kinks."""
    rng = np.random.default_rng(key)
    a = rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], size=64)
    b = rng.integers(-8, 9, size=64) / 4.0
    z = rng.integers(-16, 17, size=400) / 4.0
    c = rng.normal(size=64)
    return z, a, b, c


def test_ties_between_samples_and_breakpoints(x64):
    z, a, b, c = _grid_case(1)
    t = -b / a
    assert np.isin(z, t).sum() > 50  # many samples sit exactly on a kink
    _check(z, a, b, c)


def test_duplicate_breakpoints(x64):
    z, a, b, c = _random(3, 400, 64)
    _check(z, jnp.tile(a[:16], 4), jnp.tile(b[:16], 4), c)
    # and the same breakpoint reached by units of both orientations
    _check(z, jnp.array([1.0, -1.0, 2.0, -0.5]), jnp.array([-1.0, 1.0, -2.0, 0.5]), c[:4])


def test_zero_slopes_and_zero_biases(x64):
    z, a, b, c = _random(4, 400, 64)
    a = a.at[::3].set(0.0)  # constant units ReLU(b_j), some with b_j > 0, some < 0
    b = b.at[::5].set(0.0)  # a_j = b_j = 0 at j = 0, 15, 30, 45, 60: ReLU(0) = 0, gradient 0
    _check(z, a, b, c)
    _check(z, jnp.zeros(64), b, c)  # every unit constant


def test_all_samples_equal(x64):
    _, a, b, c = _random(5, 1, 64)
    _check(jnp.full(400, 0.75), a, b, c)
    _check(jnp.zeros(400), a, b, c)  # z = 0 sits on every breakpoint with b_j = 0 below
    _check(jnp.zeros(400), a, jnp.zeros(64), c)


def test_all_active_and_none_active(x64):
    z, a, _, c = _random(6, 400, 64)
    z = jnp.clip(z, -1, 1)
    _check(z, a, jnp.full(64, 5.0), c)  # a_j z + b_j > 0 everywhere
    _check(z, a, jnp.full(64, -5.0), c)  # never active: value and gradients vanish


def test_float32_agrees_to_float_rounding():
    z, a, b, c = (v.astype(jnp.float32) for v in _random_f32(11, 4096, 1000))
    w = jax.random.normal(jax.random.PRNGKey(1), z.shape)
    _, (_, g_fast) = _value_and_grads(relu_sum_fast, z, a, b, c, w)
    _, (_, g_dense) = _value_and_grads(model.relu_sum_dense, z, a, b, c, w)
    for name, gf, gd in zip("zabc", g_fast, g_dense):
        err = np.abs(np.asarray(gf) - np.asarray(gd)).max() / np.abs(np.asarray(gd)).max()
        assert err < 1e-4, f"float32 d/d{name}: relative error {err:.2e}"


def _random_f32(key, n, m2):
    kz, ka, kb, kc = jax.random.split(jax.random.PRNGKey(key), 4)
    return (
        jax.random.normal(kz, (n,)) * 2,
        jax.random.rademacher(ka, (m2,), jnp.float32),
        jax.random.uniform(kb, (m2,), minval=-4, maxval=4),
        jax.random.normal(kc, (m2,)),
    )


def test_vmap_over_a_batch_axis(x64):
    """Seed batching vmaps the whole step, custom_vjp included."""
    zs, as_, bs, cs = (jnp.stack(v) for v in zip(*[_random(20 + s, 64, 32) for s in range(3)]))
    w = jnp.ones(64)
    fn = lambda rs: jax.jit(jax.vmap(jax.grad(_loss(rs), argnums=(0, 1, 2, 3)), in_axes=(0, 0, 0, 0, None)))(zs, as_, bs, cs, w)
    for name, gf, gd in zip("zabc", fn(relu_sum_fast), fn(model.relu_sum_dense)):
        _close(gf, gd, f"vmapped d/d{name}")


@pytest.mark.slow
def test_whole_model_gradient_matches_dense(x64):
    cfg = RunConfig(d=5, n=512, m2=200, n_test=64)
    data = train.make_data(cfg)
    params = model.init(train.keys(0)["init"], cfg)
    # move away from init (u = c = 0) so every path carries a gradient
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params = {**params, "u": jax.random.normal(k1, (cfg.m1,)) * 3, "c": jax.random.normal(k2, (cfg.m2,)) * 3}
    params = {k: v.astype(jnp.float64) for k, v in params.items()}
    x, y = data.x_train.astype(jnp.float64), data.y_train.astype(jnp.float64)
    grad = jax.jit(jax.value_and_grad(train.joint_loss), static_argnums=(3, 4, 5))
    # production: chunked first block (n = 512 is not a multiple of 96) and sorted second block
    l_fast, g_fast = grad(params, x, y, "cube", relu_sum_fast, 96)
    l_dense, g_dense = grad(params, x, y, "cube", model.relu_sum_dense, None)
    _close(l_fast, l_dense, "loss")
    for name in params:
        _close(g_fast[name], g_dense[name], f"d/d{name}")
