"""A run's keys and data: what every trainer (network and baselines) draws from a seed.

One seed gives the signs λ, the initialisation, the training set, the monitor (test)
set and the final evaluation's points, each from its own key, split once here. The
target h = C·link(p) with p(x) = Σ λ_i h_k(x_i) is evaluated in a compiled program whose
per-run values (λ, link coefficients, C) are arguments, so a new seed compiles nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly import targets
from hierpoly.config import RunConfig


@dataclass(frozen=True)
class Data:
    """Training and test data of one run, drawn from the run's seed."""

    x_train: jax.Array  # (n, d)
    y_train: jax.Array  # (n,)
    x_test: jax.Array  # (n_test, d)
    y_test: jax.Array  # (n_test,)
    p_test: jax.Array  # (n_test,) true feature on the test points
    lam: jax.Array  # (d,) signs of the feature
    C: float  # exact link normalisation


@dataclass(frozen=True)
class Target:
    """h = C·link(p): the per-run values a compiled program takes as arguments."""

    lam: jax.Array  # (d,)
    coefs: jax.Array  # (degree + 1,) link coefficients c_0..c_q
    C: jax.Array  # () float32
    k: int  # Hermite degree of the feature: structure, not a value


def keys(seed: int) -> dict[str, jax.Array]:
    """The run's PRNG keys, split once: λ, init, train data, test data; and the final evaluation's."""
    k_lam, k_init, k_train, k_test = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {"lam": k_lam, "init": k_init, "train": k_train, "test": k_test, "eval": jax.random.fold_in(k_test, 1)}


def target(cfg: RunConfig, lam: jax.Array) -> Target:
    """The run's target for signs λ, with the exact C."""
    coefs = targets.parse_link(cfg.link)
    n_minus = int(np.sum(np.asarray(lam) < 0))
    C = targets.normalisation(cfg.d, cfg.k, coefs, n_minus).C
    return Target(jnp.asarray(lam), jnp.asarray(coefs, jnp.float32), jnp.float32(C), cfg.k)


def evaluate_target(x: jax.Array, tgt: Target) -> tuple[jax.Array, jax.Array]:
    """(h(x), p(x)) for x (..., d); traceable."""
    p = targets.feature(x, tgt.lam, tgt.k)
    return targets.link(p, tuple(tgt.coefs), tgt.C), p


@partial(jax.jit, static_argnames=("k",))
def _target_values(x, lam, coefs, C, *, k: int):
    return evaluate_target(x, Target(lam, coefs, C, k))


def target_fn(cfg: RunConfig, lam: jax.Array):
    """x ↦ (h(x), p(x)) for this config and signs λ (the program `draw` uses), and the exact C."""
    tgt = target(cfg, lam)
    return partial(_target_values, lam=tgt.lam, coefs=tgt.coefs, C=tgt.C, k=tgt.k), float(tgt.C)


def draw(key: jax.Array, rows: int, tgt: Target) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`rows` Gaussian inputs from `key` and the target on them: x (rows, d), h (rows,), p (rows,)."""
    x = jax.random.normal(key, (rows, tgt.lam.shape[0]))
    return (x, *_target_values(x, tgt.lam, tgt.coefs, tgt.C, k=tgt.k))


def make_data(cfg: RunConfig) -> Data:
    """Draw λ, the training set and the test set (the test set does not depend on n)."""
    k = keys(cfg.seed)
    lam = targets.lambdas(k["lam"], cfg.d)
    tgt = target(cfg, lam)
    x_train, y_train, _ = draw(k["train"], cfg.n, tgt)
    x_test, y_test, p_test = draw(k["test"], cfg.n_test, tgt)
    return Data(x_train, y_train, x_test, y_test, p_test, tgt.lam, float(tgt.C))


def device_info() -> dict:
    """The backend and device a run computes on."""
    dev = jax.devices()[0]
    return {"backend": jax.default_backend(), "device_kind": dev.device_kind, "device_count": jax.device_count()}
