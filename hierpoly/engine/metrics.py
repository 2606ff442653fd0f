"""What a run is judged by: square loss and feature correlation."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def mse(pred, target):
    """Mean square error; since E[h^2] = 1, predicting 0 scores about 1."""
    return jnp.mean((pred - target) ** 2)


def relative_test_loss(pred, target):
    """Square loss relative to the zero predictor's on the same points: mse(pred, h) / mean(h^2).

    E[h^2] = 1 exactly, so this estimates the paper's test loss E[(h_θ - h)^2]; but h is
    heavy-tailed (E[h^4] is in the thousands at d = 8), so the plain mean over 8192 test
    points swings by a factor of 3 between seeds, and the same tail sits in both numerator
    and denominator. The ratio is stable: the zero predictor scores exactly 1 on any test set.

    Stable is not unbiased: a few thousand points rarely see the far tail where a ReLU
    network, linear beyond its training data, misses a cubic link most. At d = 8 a run's
    loss over 8192 points is typically half its loss over 2^20 (see `from_sums`).
    """
    return mse(pred, target) / jnp.mean(target**2)


def pearson(a, b):
    """Pearson correlation of two vectors; 0 when either is constant (e.g. g = 0 at init)."""
    a = a - a.mean()
    b = b - b.mean()
    denom = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(denom > 0, jnp.sum(a * b) / jnp.where(denom > 0, denom, 1.0), 0.0)


# Streaming the final evaluation: sums per chunk, combined in float64 on the host.
SUM_NAMES = ("err2", "y2", "g", "p", "g2", "p2", "gp")


def chunk_sums(pred, y, g, p):
    """The sums `from_sums` needs, over one chunk of evaluation points: (7,)."""
    return jnp.stack([jnp.sum((pred - y) ** 2), jnp.sum(y * y), g.sum(), p.sum(), jnp.sum(g * g), jnp.sum(p * p), jnp.sum(g * p)])


def from_sums(sums, count: int) -> tuple[float, float]:
    """(relative test loss, Pearson(g, p)) from `chunk_sums` added over `count` points.

    The same two numbers as `relative_test_loss` and `pearson` on all the points at once,
    without holding them: the final metrics of a run use 2^20 points (RunConfig.n_eval),
    enough for the heavy tail to show (the loss over 8192 points is biased low, above).
    """
    err2, y2, g, p, g2, p2, gp = (float(v) for v in np.asarray(sums, np.float64))
    var_g, var_p = g2 / count - (g / count) ** 2, p2 / count - (p / count) ** 2
    cov = gp / count - (g / count) * (p / count)
    corr = cov / np.sqrt(var_g * var_p) if var_g > 0 and var_p > 0 else 0.0
    return err2 / y2, float(np.clip(corr, -1.0, 1.0))
