"""The second block's ReLU sum in O((n + m2) log(n + m2)), with its exact gradients.

    f(z) = (1/m2) Σ_j c_j ReLU(a_j z + b_j)

is piecewise linear in the scalar z with the m2 breakpoints t_j = -b_j / a_j
(the naive form materialises an (n, m2) matrix). Unit j is *active* at z when a_j z + b_j > 0 (strictly: jax.nn.relu
has derivative 0 at 0, and the dense reference follows it), i.e.

    a_j > 0: z > t_j            a_j < 0: z < t_j            a_j = 0: always if b_j > 0, else never.

With A(z) = Σ_{active j} c_j a_j and B(z) = Σ_{active j} c_j b_j, f(z) = (z A(z) + B(z)) / m2,
and A, B at every z come from prefix sums over the units sorted by t (a binary
search per z): O(m2 log m2 + n log m2) forward, O(n + m2) more backward. The vector-Jacobian product with cotangent g (n,) is

    ∂z_i = g_i A(z_i) / m2
    ∂c_j = (a_j GZ_j + b_j G_j) / m2,   ∂a_j = c_j GZ_j / m2,   ∂b_j = c_j G_j / m2,

with G_j = Σ_{i: j active at z_i} g_i and GZ_j = Σ_{i: j active at z_i} g_i z_i, which
come from prefix sums over a histogram of the samples by their place among the sorted
breakpoints (found in the forward pass), so the n samples are never sorted.
`relu_sum_fast` has the same signature and semantics as `model.relu_sum_dense`,
the reference the tests compare it with.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# n binary searches into the m2 sorted breakpoints: jnp.searchsorted's "scan" method is
# the fastest on CPU here; sorting the n samples (XLA's comparator sort) is what we avoid.
_SEARCH = "scan"


def _thresholds(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Breakpoints t_j and whether unit j is active *above* t_j (else below)."""
    above = a >= 0
    safe_a = jnp.where(a == 0, 1.0, a)
    # a_j = 0: the unit is constant, so put its breakpoint at -inf (active for every z) or +inf (never).
    flat = jnp.where(b > 0, -jnp.inf, jnp.inf).astype(b.dtype)
    return jnp.where(a == 0, flat, -b / safe_a), above


def _forward(z, a, b, c):
    """f(z) and what the backward pass needs: the units sorted by breakpoint, and each z's place among them."""
    t, above = _thresholds(a, b)
    order = jnp.argsort(t)
    t, above = t[order], above[order]
    weights = jnp.stack([c * a, c * b], axis=1)[order]  # (m2, 2): what an active unit adds to (A, B)
    zero = jnp.zeros((1, 2), weights.dtype)
    # "above" units active at z are those with t_j < z, a prefix of the sorted breakpoints;
    prefix_above = jnp.concatenate([zero, jnp.cumsum(jnp.where(above[:, None], weights, 0.0), axis=0)])
    # "below" units active at z are those with t_j > z, a suffix.
    below_w = jnp.where(above[:, None], 0.0, weights)
    suffix_below = jnp.concatenate([jnp.cumsum(below_w[::-1], axis=0)[::-1], zero])
    n_lt = jnp.searchsorted(t, z, side="left", method=_SEARCH)  # #{t_j < z_i}
    n_le = jnp.searchsorted(t, z, side="right", method=_SEARCH)  # #{t_j <= z_i}
    AB = prefix_above[n_lt] + suffix_below[n_le]  # (n, 2): A(z_i), B(z_i)
    value = (z * AB[:, 0] + AB[:, 1]) / c.shape[0]
    return value, (z, a, b, c, AB[:, 0], n_lt, n_le, order, above)


@jax.custom_vjp
def relu_sum_fast(z: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """(1/m2) Σ_j c_j ReLU(a_j z + b_j) for z (n,) and a, b, c (m2,), by sorting: (n,)."""
    return _forward(z, a, b, c)[0]


def _bwd(residuals, g):
    z, a, b, c, A, n_lt, n_le, order, above = residuals
    m2 = c.shape[0]
    # G_j and GZ_j without sorting the samples: histogram (g_i, g_i z_i) by each z_i's place
    # among the sorted breakpoints, then prefix sums over the m2 + 1 places.
    w = jnp.stack([g, g * z], axis=1)  # (n, 2)
    by_lt = jax.ops.segment_sum(w, n_lt, num_segments=m2 + 1)
    by_le = jax.ops.segment_sum(w, n_le, num_segments=m2 + 1)
    # sorted unit p, "above": active for z_i > t_p  <=>  #{t < z_i} > p: a suffix over places p+1..m2;
    # "below": active for z_i < t_p  <=>  #{t <= z_i} <= p: a prefix over places 0..p.
    suffix_lt = jnp.cumsum(by_lt[::-1], axis=0)[::-1][1:]
    prefix_le = jnp.cumsum(by_le, axis=0)[:m2]
    sums = jnp.zeros((m2, 2), w.dtype).at[order].set(jnp.where(above[:, None], suffix_lt, prefix_le))
    G, GZ = sums[:, 0], sums[:, 1]
    return g * A / m2, c * GZ / m2, c * G / m2, (a * GZ + b * G) / m2


relu_sum_fast.defvjp(_forward, _bwd)
