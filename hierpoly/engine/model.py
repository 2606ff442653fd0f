"""The ResNet-like three-layer network of the paper's equation (1).

    g_{u,s,V}(x) = (1/m1) Σ_i u_i σ1(v_i·x + s_i)                 (learned feature)
    h_θ(x)       = g(x) + (1/m2) Σ_j c_j σ2(a_j g(x) + b_j)        (1), σ2 = ReLU

Initialisation **[seed]**: u = 0, c = 0, a_j ~ Unif{-1, +1}, s_i ~ N(0, 1/2),
v_i ~ Unif(S^{d-1}(1/√2)) so that v_i·x + s_i ~ N(0, 1); b_j ~ τ_b, which the seed
leaves open: we take Uniform[-b_scale, b_scale] (config ``b_scale``, default 4,
covering the learned feature's range: it ends near ±4 standard deviations of a
unit-variance feature). At init the network outputs exactly 0.

µP **[reconstructed]** (Yang & Hu 2021, Adam column): the two width-m sums are
readout layers, so they carry the multipliers 1/m1 and 1/m2 written above (the
µP "output weight" scaling with zero init); every parameter then takes the same
Adam base rate, which is width-independent: V, s (input layer, fan-in d, not a
width) and a, b (fan-in 1) need no width scaling, and u, c are scaled by their
multipliers. Hence one `lr` transfers across m1 and m2.

Parameters are a plain dict of arrays: u (m1,), s (m1,), V (m1, d), a (m2,),
b (m2,), c (m2,).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from hierpoly.config import RunConfig, first_block_by_pairs
from hierpoly.engine import tensor
from hierpoly.engine.piecewise import relu_sum_fast

Params = dict[str, jax.Array]

ACTIVATIONS = {
    "cube": lambda z: z**3,  # the paper's σ1
    "square": lambda z: z**2,
    "relu": jax.nn.relu,
}


def init(key: jax.Array, cfg: RunConfig) -> Params:
    """Draw θ(0) as in the paper (see module docstring); one compiled program per shape."""
    return _init(key, jnp.float32(cfg.b_scale), m1=cfg.m1, d=cfg.d, m2=cfg.m2)


@partial(jax.jit, static_argnames=("m1", "d", "m2"))
def _init(key: jax.Array, b_scale: jax.Array, *, m1: int, d: int, m2: int) -> Params:
    k_v, k_s, k_a, k_b = jax.random.split(key, 4)
    V = jax.random.normal(k_v, (m1, d))
    V = V / jnp.linalg.norm(V, axis=1, keepdims=True) / jnp.sqrt(2.0)  # uniform on S^{d-1}(1/√2)
    return {
        "u": jnp.zeros(m1),
        "s": jax.random.normal(k_s, (m1,)) * jnp.sqrt(0.5),
        "V": V,
        "a": jax.random.rademacher(k_a, (m2,), dtype=jnp.float32),
        "b": jax.random.uniform(k_b, (m2,), minval=-b_scale, maxval=b_scale),
        "c": jnp.zeros(m2),
    }


def first_features(params: Params, x: jax.Array, sigma1: str) -> jax.Array:
    """σ1(V x + s): (n, m1)."""
    return ACTIVATIONS[sigma1](x @ params["V"].T + params["s"])


def feature(params: Params, x: jax.Array, sigma1: str) -> jax.Array:
    """The learned feature g_{u,s,V}(x): (n,)."""
    return first_features(params, x, sigma1) @ params["u"] / params["u"].shape[0]


# Samples per block of the first layer: a (1024, m1) block of activations stays in cache,
# where the whole (n, m1) matrix would stream through memory (measured: `hierpoly bench`).
SAMPLE_CHUNK = 1024


def feature_chunked(params: Params, x: jax.Array, sigma1: str, chunk: int = SAMPLE_CHUNK) -> jax.Array:
    """`feature` computed `chunk` samples at a time; each block is recomputed in the backward pass: (n,).

    The same math as `feature`: the backward pass redoes the block's forward matmul instead of
    storing (n, m1) activations, hence ≈ 6·n·d·m1 flops per step instead of 4, but all in cache.
    """
    n = x.shape[0]
    if n <= chunk:
        return feature(params, x, sigma1)
    blocks = jnp.pad(x, ((0, -n % chunk), (0, 0))).reshape(-1, chunk, x.shape[1])  # zero rows, dropped below
    block_feature = jax.checkpoint(lambda xb: feature(params, xb, sigma1))
    return jax.lax.map(block_feature, blocks).reshape(-1)[:n]


def relu_sum_dense(z: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """(1/m2) Σ_j c_j ReLU(a_j z + b_j), materialising the (n, m2) matrix: the reference path."""
    return jax.nn.relu(z[:, None] * a + b) @ c / c.shape[0]


def link_out(params: Params, z: jax.Array, relu_sum=relu_sum_dense) -> jax.Array:
    """The second block with its skip connection: z + (1/m2) Σ_j c_j ReLU(a_j z + b_j)."""
    return z + relu_sum(z, params["a"], params["b"], params["c"])


def apply(
    params: Params, x: jax.Array, sigma1: str, relu_sum=relu_sum_dense, sample_chunk: int | None = None
) -> jax.Array:
    """h_θ(x), equation (1): (n,). `sample_chunk`: compute the feature in blocks (`feature_chunked`)."""
    g = feature(params, x, sigma1) if sample_chunk is None else feature_chunked(params, x, sigma1, sample_chunk)
    return link_out(params, g, relu_sum)


@dataclass(frozen=True)
class Forward:
    """How h_θ is computed: static structure only, hashable, so compiled programs key on it.

    ``Forward(sigma1, relu_sum_dense, None)`` is the plain formulation (dense (n, m2) ReLU matrix,
    no sample blocks) the tests and bench compare with; `training_forward` picks the production path.

    The training loss sees its inputs through `encode` (once per dataset) and `train_feature`:
    with ``by_pairs`` those are the pair products and the tensor contraction of tensor.py (σ1 = cube
    only); otherwise x itself and `feature`. Everything else (monitor, probe of raw x, final
    evaluation) calls `feature` on x.
    """

    sigma1: str = "cube"
    relu_sum: Callable = relu_sum_fast  # (z, a, b, c) -> (1/m2) Σ c_j ReLU(a_j z + b_j)
    sample_chunk: int | None = SAMPLE_CHUNK
    by_pairs: bool = False  # training inputs are pair products, g = T[x̃,x̃,x̃] (tensor.py)
    pair_blocks: int = 1  # with by_pairs: sample blocks whose forward and backward run together (tensor.pair_blocks)

    def __post_init__(self):
        if self.by_pairs and self.sigma1 != "cube":
            raise ValueError(f"the pair-product first block needs σ1 = cube, got {self.sigma1!r}")

    def feature(self, params: Params, x: jax.Array) -> jax.Array:
        """g(x): (n,)."""
        if self.sample_chunk is None:
            return feature(params, x, self.sigma1)
        return feature_chunked(params, x, self.sigma1, self.sample_chunk)

    def encode(self, x: jax.Array) -> jax.Array:
        """The training inputs as `train_feature` takes them: with ``by_pairs`` the pair products in
        `pair_blocks` sample blocks (blocks, P, n / blocks), else x (n, d)."""
        return tensor.blocked(_pair_products(x), self.pair_blocks) if self.by_pairs else x

    def first_points(self, inputs: jax.Array, count: int) -> jax.Array:
        """The encoded inputs of the first `count` points."""
        return tensor.first_points(inputs, count) if self.by_pairs else inputs[:count]

    def train_feature(self, params: Params, inputs: jax.Array) -> jax.Array:
        """g on encoded training inputs (`encode`): (n,)."""
        if self.by_pairs:
            return tensor.feature_from_blocks(params, inputs)
        return self.feature(params, inputs)

    def link_out(self, params: Params, g: jax.Array) -> jax.Array:
        """h_θ from the feature g: (n,)."""
        return link_out(params, g, self.relu_sum)


_pair_products = jax.jit(tensor.pair_products)


def training_forward(cfg: RunConfig, relu_sum=relu_sum_fast, by_pairs: bool | None = None) -> Forward:
    """The production path of cfg's joint training; `by_pairs` None: where `first_block_by_pairs` says it pays.

    Sample blocks (`tensor.pair_blocks`) only on a CPU: they keep a block in its cache between the two
    matmuls, and an accelerator would only run them one after another.
    """
    by_pairs = first_block_by_pairs(cfg) if by_pairs is None else by_pairs
    blocks = tensor.pair_blocks(cfg.n, cfg.d) if by_pairs and jax.default_backend() == "cpu" else 1
    return Forward(cfg.sigma1, relu_sum, by_pairs=by_pairs, pair_blocks=blocks)
