"""The plain formulation: equation (1)'s loss written out, and full-batch Adam on it, one step at a time.

The network h_θ(x) = g(x) + (1/m2) Σ_j c_j ReLU(a_j g(x) + b_j), g(x) = (1/m1) Σ_i u_i (v_i·x + s_i)³,
trained jointly on the mean squared error. No chunks, no pair products, no sample blocks, no stopping
rules: the training a researcher would write first. The production path (``model``, ``loop``,
``train``) takes the same steps faster; ``hierpoly.bench`` times the two against each other
(``reference_steps``: these steps in one ``lax.scan``, the plain formulation at its best), and the
tests hold them equal.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from hierpoly.config import RunConfig
from hierpoly.engine import model
from hierpoly.engine.data import keys, make_data


def reference_loss(params, x, y):
    """L̂(θ): x Vᵀ + s, cube, the dense (n, m2) ReLU matrix, the skip connection, the mean squared error.

    Products and sums are einsums: XLA's CPU backend runs their gradients as matmuls, where the
    broadcasting form (`g[:, None] * a`, `... @ c`) leaves row and column reductions; measured
    about 1.3× faster at d = 16, n = 16384, so this is the reference at its best.
    """
    m1, m2 = params["u"].shape[0], params["c"].shape[0]
    pre = jnp.einsum("nd,md->nm", x, params["V"]) + params["s"]
    g = jnp.einsum("nm,m->n", pre**3, params["u"]) / m1
    relu = jax.nn.relu(jnp.einsum("n,j->nj", g, params["a"]) + params["b"])
    h = g + jnp.einsum("nj,j->n", relu, params["c"]) / m2
    return jnp.mean((h - y) ** 2)


@jax.jit
def adam_step(params, opt_state, x, y, lr):
    """One full-batch Adam step on `reference_loss`: the new parameters and optimizer state, and the loss before it."""
    loss, grads = jax.value_and_grad(reference_loss)(params, x, y)
    updates, opt_state = optax.adam(lr).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train_reference(cfg: RunConfig, steps: int | None = None):
    """Train cfg's network (joint, sigma1 = cube) for `steps` steps (default cfg.steps): (params, losses).

    The data and the paper's initialisation are the engine's (``make_data``, ``model.init``), so a
    production run of the same config starts from the same θ(0) on the same samples.
    """
    data = make_data(cfg)
    params = model.init(keys(cfg.seed)["init"], cfg)
    opt_state = optax.adam(cfg.lr).init(params)
    lr = jnp.float32(cfg.lr)
    losses = []
    for _ in range(cfg.steps if steps is None else steps):
        params, opt_state, loss = adam_step(params, opt_state, data.x_train, data.y_train, lr)
        losses.append(float(loss))
    return params, losses


@partial(jax.jit, static_argnames=("n_steps",))
def reference_steps(params, opt_state, x, y, lr, *, n_steps: int):
    """`adam_step` n_steps times in one `lax.scan` (what the bench times); the losses before each step."""
    tx = optax.adam(lr)

    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(reference_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return jax.lax.scan(step, (params, opt_state), None, length=n_steps)
