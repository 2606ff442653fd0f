"""What a run is judged by: square loss and feature correlation."""
from __future__ import annotations

import jax.numpy as jnp


def mse(pred, target):
    """Mean square error; since E[h^2] = 1, predicting 0 scores about 1."""
    return jnp.mean((pred - target) ** 2)


def pearson(a, b):
    """Pearson correlation of two vectors; 0 when either is constant (e.g. g = 0 at init)."""
    a = a - a.mean()
    b = b - b.mean()
    denom = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(denom > 0, jnp.sum(a * b) / jnp.where(denom > 0, denom, 1.0), 0.0)
