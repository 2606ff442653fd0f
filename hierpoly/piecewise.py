"""The second block's ReLU sum in O((n + m2) log(n + m2)), with its exact gradients.

    f(z) = (1/m2) Σ_j c_j ReLU(a_j z + b_j)

is piecewise linear in the scalar z with the m2 breakpoints t_j = -b_j / a_j
(PAPER.md §7). Unit j is *active* at z when a_j z + b_j > 0 (strictly: jax.nn.relu
has derivative 0 at 0, and the dense reference follows it), i.e.

    a_j > 0: z > t_j            a_j < 0: z < t_j            a_j = 0: always if b_j > 0, else never.

With A(z) = Σ_{active j} c_j a_j and B(z) = Σ_{active j} c_j b_j, f(z) = (z A(z) + B(z)) / m2,
and A, B at every z come from prefix sums over the units sorted by t (a binary
search per z). The vector-Jacobian product with cotangent g (n,) is

    ∂z_i = g_i A(z_i) / m2
    ∂c_j = (a_j GZ_j + b_j G_j) / m2,   ∂a_j = c_j GZ_j / m2,   ∂b_j = c_j G_j / m2,

with G_j = Σ_{i: j active at z_i} g_i and GZ_j = Σ_{i: j active at z_i} g_i z_i, which
come from prefix sums over the samples sorted by z (a binary search per unit).
`relu_sum_fast` has the same signature and semantics as `model.relu_sum_dense`,
the reference the tests compare it with.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# jnp.searchsorted's "sort" method does one merged sort instead of n serial binary
# searches; it is the fastest on CPU for these sizes (measured by `hierpoly bench`).
_SEARCH = "sort"


def _thresholds(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Breakpoints t_j and whether unit j is active *above* t_j (else below)."""
    above = a >= 0
    safe_a = jnp.where(a == 0, 1.0, a)
    # a_j = 0: the unit is constant, so put its breakpoint at -inf (active for every z) or +inf (never).
    flat = jnp.where(b > 0, -jnp.inf, jnp.inf).astype(b.dtype)
    return jnp.where(a == 0, flat, -b / safe_a), above


def _slopes_at(z: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A(z_i) = Σ_active c_j a_j and B(z_i) = Σ_active c_j b_j for every z_i: (n,), (n,)."""
    t, above = _thresholds(a, b)
    order = jnp.argsort(t)
    t, above = t[order], above[order]
    weights = jnp.stack([c * a, c * b], axis=1)[order]  # (m2, 2)
    zero = jnp.zeros((1, 2), weights.dtype)
    # "above" units active at z: those with t_j < z, a prefix of the sorted breakpoints.
    prefix_above = jnp.concatenate([zero, jnp.cumsum(jnp.where(above[:, None], weights, 0.0), axis=0)])
    # "below" units active at z: those with t_j > z, a suffix.
    below_w = jnp.where(above[:, None], 0.0, weights)
    suffix_below = jnp.concatenate([jnp.cumsum(below_w[::-1], axis=0)[::-1], zero])
    n_lt = jnp.searchsorted(t, z, side="left", method=_SEARCH)  # #{t_j < z}
    n_le = jnp.searchsorted(t, z, side="right", method=_SEARCH)  # #{t_j <= z}
    AB = prefix_above[n_lt] + suffix_below[n_le]
    return AB[:, 0], AB[:, 1]


def _active_sums(z: jax.Array, g: jax.Array, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """G_j = Σ_{i: j active at z_i} g_i and GZ_j = Σ_{i: j active} g_i z_i: (m2,), (m2,)."""
    t, above = _thresholds(a, b)
    order = jnp.argsort(z)
    zs = z[order]
    weights = jnp.stack([g, g * z], axis=1)[order]  # (n, 2)
    prefix = jnp.concatenate([jnp.zeros((1, 2), weights.dtype), jnp.cumsum(weights, axis=0)])
    total = prefix[-1]
    n_le = jnp.searchsorted(zs, t, side="right", method=_SEARCH)  # samples with z_i <= t_j
    n_lt = jnp.searchsorted(zs, t, side="left", method=_SEARCH)  # samples with z_i < t_j
    # above: active for z_i > t_j (a suffix of the sorted samples); below: z_i < t_j (a prefix).
    sums = jnp.where(above[:, None], total - prefix[n_le], prefix[n_lt])
    return sums[:, 0], sums[:, 1]


@jax.custom_vjp
def relu_sum_fast(z: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """(1/m2) Σ_j c_j ReLU(a_j z + b_j) for z (n,) and a, b, c (m2,), by sorting: (n,)."""
    A, B = _slopes_at(z, a, b, c)
    return (z * A + B) / c.shape[0]


def _fwd(z, a, b, c):
    A, B = _slopes_at(z, a, b, c)
    return (z * A + B) / c.shape[0], (z, a, b, c, A)


def _bwd(residuals, g):
    z, a, b, c, A = residuals
    m2 = c.shape[0]
    G, GZ = _active_sums(z, g, a, b)
    return g * A / m2, c * GZ / m2, c * G / m2, (a * GZ + b * G) / m2


relu_sum_fast.defvjp(_fwd, _bwd)
