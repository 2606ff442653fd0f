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

The data enter only through the pair products Q = (x̃_a x̃_b)_{a≤b}, P = D(D+1)/2 per point,
fixed for a dataset, so they are built once (`pair_products`). Per step, g over n points is
one matmul Wᵀ Q, (D × P) by (P × n), then a column-wise dot with x̃ (which is in Q: the pairs
(a, d) with the constant coordinate x̃_d = 1); the data part of the gradient, ∂W = Q (ḡ ⊙ x̃)ᵀ, is the other matmul. Q is stored
(P, n), points along the minor axis: both matmuls then read it in the layout XLA's CPU GEMM
wants (stored (n, P), the gradient's Qᵀ costs up to twice as much at d = 20, measured). About
2·n·D³ flops in two well-shaped matmuls, against 6·n·d·m1 (= 6·n·d³ at m1 = d²) in thin
ones, and no (n × m1) array. The parameters enter only through W (m1·D³ work, independent
of n), and JAX differentiates its construction, so ∂u, ∂s, ∂V and Adam's updates are those
of the direct formulation (`model.feature`) up to float rounding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly.config import pair_count


def pair_index(d: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a, b), a ≤ b, of the D = d + 1 homogeneous coordinates: (P,), (P,).

    The pairs within x come first; the last D are (a, d), x̃_a · x̃_d = x̃_a · 1, so x̃ is Q's last D rows
    (a contiguous slice: a gather there costs a measurable share of the step).
    """
    a, b = np.triu_indices(d)
    return np.concatenate([a, np.arange(d + 1)]), np.concatenate([b, np.full(d + 1, d)])


def homogeneous(x: jax.Array) -> jax.Array:
    """x̃ = (x, 1): (n, D)."""
    return jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), x.dtype)], axis=-1)


def pair_products(x: jax.Array) -> jax.Array:
    """Q = (x̃_a x̃_b)_{a≤b} of equation (W) for x (n, d): (P, n), one column per point; a dataset's, built once."""
    a, b = pair_index(x.shape[-1])
    xh = homogeneous(x).T  # (D, n)
    return xh[a] * xh[b]


def inputs_from_pairs(pairs: jax.Array, d: int) -> jax.Array:
    """x̃ read back from Q: the rows of the pairs (a, d), x̃_a · 1: (D, n) (or (D, B) for one block)."""
    return pairs[pairs.shape[0] - (d + 1):]


BLOCK_BYTES = 8 << 20  # one sample block's pair products: a quarter of this CPU's 32 MB L3
BLOCK_FROM_BYTES = 24 << 20  # below this Q stays in the L3 between the two matmuls: one block


def pair_blocks(n: int, d: int) -> int:
    """Sample blocks of Q for the training step: the fewest that divide n into blocks of at most BLOCK_BYTES,
    once Q exceeds BLOCK_FROM_BYTES; else 1 (n with no such divisor: 1, the unblocked step).

    Blocked, each block's forward and backward run together (`train.network_value_and_grad`), so Q is
    read from memory once per step instead of twice. Measured per first-block forward + backward, with
    its best block size: 1.75× faster at d = 20, n = 64000 (Q 59 MB), 1.9× at n = 32000, 1.35–1.4× at
    d = 24, n = 27648 and 55296, 1.45× at d = 40, n = 128000; no gain or a loss below about 20 MB
    (d = 20, n = 16000; d = 24, n = 13824).
    """
    size = 4 * n * pair_count(d)
    if size <= BLOCK_FROM_BYTES:
        return 1
    for blocks in range(-(-size // BLOCK_BYTES), n + 1):
        if n % blocks == 0:
            return blocks if blocks < n else 1
    return 1


def blocked(pairs: jax.Array, blocks: int) -> jax.Array:
    """Q (P, n) as `blocks` sample blocks (blocks, P, n / blocks); point j is column j % B of block j // B."""
    count, n = pairs.shape
    return pairs.reshape(count, blocks, n // blocks).transpose(1, 0, 2)


def first_points(blocks: jax.Array, count: int) -> jax.Array:
    """The blocked Q of the first `count` points, as one block: (1, P, count)."""
    size = blocks.shape[2]
    head = blocks[:-(-count // size)]  # the blocks that hold them
    return head.transpose(1, 0, 2).reshape(blocks.shape[1], -1)[None, :, :count]


def coefficients(params: dict[str, jax.Array]) -> jax.Array:
    """W of equation (W) from (u, s, V): (P, D). Differentiable; m1·P·D work, no n."""
    m1, d = params["V"].shape
    a, b = pair_index(d)
    vh = jnp.concatenate([params["V"], params["s"][:, None]], axis=1)  # ṽ_i = (v_i, s_i): (m1, D)
    weight = np.where(a < b, 2.0, 1.0).astype(np.float32)  # w_ab: both orders of an unordered pair
    pair_v = vh[:, a] * vh[:, b] * weight  # (m1, P): w_ab ṽ_ia ṽ_ib
    return pair_v.T @ (vh * (params["u"] / m1)[:, None])  # Σ_i over the width, (T) → (W)


def feature_from_pairs(params: dict[str, jax.Array], pairs: jax.Array) -> jax.Array:
    """g = Σ_c x̃_c (Wᵀ Q)_c, equation (W), at the points whose pair products are the columns of Q: (n,)."""
    return feature_from_weights(coefficients(params), pairs)


def feature_from_weights(weights: jax.Array, pairs: jax.Array) -> jax.Array:
    """g from W (P, D) at the columns of Q (P, n): (n,)."""
    d = weights.shape[1] - 1
    return jnp.sum((weights.T @ pairs) * inputs_from_pairs(pairs, d), axis=0)


def feature_from_blocks(params: dict[str, jax.Array], blocks: jax.Array) -> jax.Array:
    """g at the points of a blocked Q (`blocked`), in their order: (n,)."""
    weights = coefficients(params)
    if blocks.shape[0] == 1:  # one block: the plain matmul (under vmap XLA's CPU GEMM took twice as long, measured)
        return feature_from_weights(weights, blocks[0])
    return jax.vmap(feature_from_weights, (None, 0))(weights, blocks).reshape(-1)


def value_and_grad_by_blocks(block_loss, params: dict[str, jax.Array], rest, blocks: jax.Array, per_block):
    """(Σ_b block_loss(W, rest, Q_b, per_block_b), its gradient in params through W, its gradient in rest).

    Each block's forward and backward run together, its pair products read once while they are in
    cache (`pair_blocks` says where that pays); W = `coefficients(params)` is built once and its
    gradient pulled back once: the sum of the blocks' gradients, since the loss is a sum over them.
    """
    weights, pull_back = jax.vjp(coefficients, params)

    def add_block(total, block):
        value, grads = jax.value_and_grad(block_loss, (0, 1))(weights, rest, *block)
        return jax.tree_util.tree_map(jnp.add, total, (value, *grads)), None

    zero = jax.tree_util.tree_map(jnp.zeros_like, (jnp.zeros((), blocks.dtype), weights, rest))
    (value, d_weights, d_rest), _ = jax.lax.scan(add_block, zero, (blocks, per_block))
    return value, pull_back(d_weights)[0], d_rest
