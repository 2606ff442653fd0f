"""The cubic first block as a tensor contraction: the same g and the same gradients, from pair products.

With σ1 = z³ the learned feature is a cubic polynomial of x whose coefficients are built
from the parameters (model.py, equation (1)):

    g(x) = (1/m1) Σ_i u_i (v_i·x + s_i)³ = T3[x,x,x] + T2[x,x] + T1·x + T0,

    T3 = (1/m1) Σ u_i v_i⊗v_i⊗v_i,   T2 = (3/m1) Σ u_i s_i v_i⊗v_i,
    T1 = (3/m1) Σ u_i s_i² v_i,       T0 = (1/m1) Σ u_i s_i³.

All four are blocks of one symmetric tensor in D = d + 1 dimensions: with x̃ = (x, 1) and
ṽ_i = (v_i, s_i), v_i·x + s_i = ṽ_i·x̃, so

    g(x) = T[x̃,x̃,x̃],   T = (1/m1) Σ_i u_i ṽ_i⊗ṽ_i⊗ṽ_i                           (T)

(the entries of T with one, two or three indices at the constant coordinate are T2/3, T1/3 and T0).
Grouping the first two indices by the unordered pair {a, b}, a ≤ b (weight w_ab = 2 if a < b,
else 1, for the two orders):

    g(x) = Σ_c x̃_c Σ_{a≤b} x̃_a x̃_b W_{ab,c},   W_{ab,c} = w_ab T_abc = (1/m1) Σ_i u_i w_ab ṽ_ia ṽ_ib ṽ_ic.   (W)

The data enter only through the pair products Q = (x̃_a x̃_b)_{a≤b}: (n, P), P = D(D+1)/2,
fixed for a dataset, so they are built once (`pair_products`). Per step, g over n points is
one matmul Q W, (n × P) by (P × D), then a row-wise dot with x̃ (which is in Q: the pairs
(a, D)); the data part of the gradient, ∂W = Qᵀ (ḡ ⊙ x̃), is the transposed matmul. About
2·n·D³ flops in two well-shaped matmuls, against 6·n·d·m1 (= 6·n·d³ at m1 = d²) in thin
ones, and no (n × m1) array. The parameters enter only through W (m1·D³ work, independent
of n), and JAX differentiates its construction, so ∂u, ∂s, ∂V and Adam's updates are those
of the direct formulation (`model.feature`) up to float rounding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def pair_index(d: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a, b), a ≤ b, of the D = d + 1 homogeneous coordinates: (P,), (P,).

    The pairs within x come first; the last D are (a, D), x̃_a · 1, so x̃ is Q's last D columns
    (a contiguous slice: a gather there costs a measurable share of the step).
    """
    a, b = np.triu_indices(d)
    return np.concatenate([a, np.arange(d + 1)]), np.concatenate([b, np.full(d + 1, d)])


def homogeneous(x: jax.Array) -> jax.Array:
    """x̃ = (x, 1): (n, D)."""
    return jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), x.dtype)], axis=-1)


def pair_products(x: jax.Array) -> jax.Array:
    """Q = (x̃_a x̃_b)_{a≤b} of equation (W): (n, P); a dataset's, built once."""
    a, b = pair_index(x.shape[-1])
    xh = homogeneous(x)
    return xh[..., a] * xh[..., b]


def inputs_from_pairs(pairs: jax.Array, d: int) -> jax.Array:
    """x̃ read back from Q: the columns of the pairs (a, D), x̃_a · 1: (n, D)."""
    return pairs[..., pairs.shape[-1] - (d + 1):]


def coefficients(params: dict[str, jax.Array]) -> jax.Array:
    """W of equation (W) from (u, s, V): (P, D). Differentiable; m1·P·D work, no n."""
    m1, d = params["V"].shape
    a, b = pair_index(d)
    vh = jnp.concatenate([params["V"], params["s"][:, None]], axis=1)  # ṽ_i = (v_i, s_i): (m1, D)
    weight = np.where(a < b, 2.0, 1.0).astype(np.float32)  # w_ab: both orders of an unordered pair
    pair_v = vh[:, a] * vh[:, b] * weight  # (m1, P): w_ab ṽ_ia ṽ_ib
    return pair_v.T @ (vh * (params["u"] / m1)[:, None])  # Σ_i over the width, (T) → (W)


def contract(pairs: jax.Array, weights: jax.Array) -> jax.Array:
    """g = Σ_c x̃_c (Q W)_c, equation (W), for the rows of Q: (n,)."""
    d = weights.shape[1] - 1
    return jnp.sum((pairs @ weights) * inputs_from_pairs(pairs, d), axis=-1)


def feature_from_pairs(params: dict[str, jax.Array], pairs: jax.Array, block: int | None = None) -> jax.Array:
    """The learned feature g on the points whose pair products are `pairs`: (n,).

    `block`: contract `block` rows of Q at a time (the rest of the step's (n,)-vectors then stay in
    cache); the gradient is accumulated over the blocks by autodiff of the map.
    """
    weights = coefficients(params)
    n = pairs.shape[0]
    if block is None or n <= block:
        return contract(pairs, weights)
    blocks = jnp.pad(pairs, ((0, -n % block), (0, 0))).reshape(-1, block, pairs.shape[1])  # zero rows: g = 0, dropped
    return jax.lax.map(lambda rows: contract(rows, weights), blocks).reshape(-1)[:n]


def pair_bytes(n: int, d: int) -> int:
    """Memory of a dataset's pair products: n·P float32."""
    return 4 * n * (d + 1) * (d + 2) // 2
