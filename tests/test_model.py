"""The network of equation (1): the paper's initialisation, exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import model


@pytest.fixture(scope="module")
def params():
    cfg = RunConfig(d=10, n=100, m1=4000, m2=4000, b_scale=3.0)
    return cfg, model.init(jax.random.PRNGKey(7), cfg)


def test_shapes(params):
    cfg, p = params
    assert {k: v.shape for k, v in p.items()} == {
        "u": (4000,), "s": (4000,), "V": (4000, 10), "a": (4000,), "b": (4000,), "c": (4000,)
    }


def test_rows_of_V_lie_on_the_sphere_of_radius_one_over_root_two(params):
    _, p = params
    np.testing.assert_allclose(np.linalg.norm(p["V"], axis=1), 1 / np.sqrt(2), rtol=1e-5)
    # uniform direction: the mean row is near 0 and the second moment is isotropic, (1/2) I / d
    V = np.asarray(p["V"])
    assert np.abs(V.mean(0)).max() < 0.02
    np.testing.assert_allclose(V.T @ V / len(V), np.eye(10) / 20, atol=0.01)


def test_biases_and_signs(params):
    _, p = params
    assert np.var(p["s"]) == pytest.approx(0.5, rel=0.08)
    assert abs(np.mean(p["s"])) < 0.05
    assert set(np.unique(p["a"]).tolist()) == {-1.0, 1.0}
    assert abs(np.mean(p["a"])) < 0.05
    assert float(p["b"].min()) >= -3.0 and float(p["b"].max()) <= 3.0
    assert np.var(p["b"]) == pytest.approx(9 / 3, rel=0.08)  # Uniform[-3, 3]
    assert not np.any(p["u"]) and not np.any(p["c"])


def test_the_default_biases_are_uniform_on_minus_four_to_four():
    """τ_b as the config leaves it (every other test here sets b_scale = 3)."""
    cfg = RunConfig(d=10, n=100, m1=100, m2=20_000)
    b = np.asarray(model.init(jax.random.PRNGKey(8), cfg)["b"])
    assert b.min() >= -4.0 and b.max() <= 4.0 and min(-b.min(), b.max()) > 3.99  # the whole of [-4, 4]
    assert np.var(b) == pytest.approx(16 / 3, rel=0.03)  # Uniform[-4, 4]; the sample variance's sd is 0.6%
    assert abs(np.mean(b)) < 0.06  # its sd is 4/√(3·20000) = 0.016


def test_preactivations_are_standard_normal(params):
    _, p = params
    x = jax.random.normal(jax.random.PRNGKey(1), (2000, 10))
    pre = np.asarray(x @ p["V"].T + p["s"])
    assert pre.var() == pytest.approx(1.0, rel=0.03)


def test_output_is_zero_at_init(params):
    _, p = params
    x = jax.random.normal(jax.random.PRNGKey(2), (64, 10))
    assert not np.any(np.asarray(model.apply(p, x, "cube")))


def test_skip_connection_passes_the_feature_through_when_c_is_zero(params):
    _, p = params
    p = {**p, "u": jax.random.normal(jax.random.PRNGKey(3), p["u"].shape)}
    x = jax.random.normal(jax.random.PRNGKey(4), (64, 10))
    g = model.feature(p, x, "cube")
    assert np.abs(np.asarray(g)).max() > 0
    np.testing.assert_array_equal(np.asarray(model.apply(p, x, "cube")), np.asarray(g))


def test_second_block_matches_its_definition():
    z = jnp.array([-2.0, -0.5, 0.0, 1.5])
    a = jnp.array([1.0, -1.0, 1.0])
    b = jnp.array([0.5, 1.0, -1.0])
    c = jnp.array([2.0, -1.0, 3.0])
    expected = [sum(ci * max(ai * zi + bi, 0) for ai, bi, ci in zip(a, b, c)) / 3 for zi in z]
    np.testing.assert_allclose(model.relu_sum_dense(z, a, b, c), expected, rtol=1e-6)
