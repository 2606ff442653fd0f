"""The numbers behind the Learn page's guided tour (numpy only; no JAX, no Streamlit).

Everything here runs in well under a second on a laptop CPU. Sampling uses an
explicit ``numpy.random.Generator`` seed, so the pages are reproducible.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hierpoly.config import RunConfig
from hierpoly.targets import hermite, normalisation, parse_link

# The tour's small run: d = 6, n = 4·d^3, seconds on a laptop CPU (joint Adam).
TOUR_CONFIG = dict(d=6, n=864, m2=200, steps=1000, n_test=2048)


def tour_config(**overrides) -> RunConfig:
    """The config of the tour's small run, with optional overrides."""
    return RunConfig(**{**TOUR_CONFIG, **overrides})


def hermite_curves(ks=(1, 2, 3, 4), lo: float = -3.5, hi: float = 3.5, points: int = 281) -> pd.DataFrame:
    """h_k(z) on a grid, long format (columns z, k, value)."""
    z = np.linspace(lo, hi, points)
    return pd.concat([pd.DataFrame({"z": z, "k": k, "value": hermite(k, z)}) for k in ks], ignore_index=True)


def hermite_gram(ks=(0, 1, 2, 3, 4)) -> pd.DataFrame:
    """E[h_i(z) h_j(z)] for z ~ N(0, 1), by Gauss-Hermite quadrature: the identity matrix (orthonormality)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(len(ks) + 4)
    weights = weights / weights.sum()  # probabilists' weight e^{-z²/2}, normalised to a density
    table = [[float(np.sum(weights * hermite(i, nodes) * hermite(j, nodes))) for j in ks] for i in ks]
    return pd.DataFrame(np.round(table, 12) + 0.0, index=[f"h_{i}" for i in ks], columns=[f"h_{j}" for j in ks])


def sample_target(d: int, k: int = 3, link: str = "cubic", n: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Draw x ~ N(0, I_d) and return p(x), p(x)/√d and h(x) = C·poly(p(x)) with the exact C (columns p, p_scaled, h)."""
    rng = np.random.default_rng(seed)
    lam = rng.choice([-1.0, 1.0], size=d)
    x = rng.standard_normal((n, d))
    p = hermite(k, x) @ lam
    coefs = parse_link(link)
    n_minus = int(np.sum(lam < 0)) if k % 2 == 0 else 0
    C = normalisation(d, k, coefs, n_minus).C
    h = C * np.polynomial.polynomial.polyval(p, coefs)
    return pd.DataFrame({"p": p, "p_scaled": p / math.sqrt(d), "h": h})


def density_histogram(values: np.ndarray, bins: int = 60, clip: float = 5.0) -> pd.DataFrame:
    """A density histogram on [-clip, clip] with the N(0, 1) density at the bin centres.

    Mass outside the window is left out of the bars but kept in the normalisation,
    so bars and curve are comparable (columns center, width, density, gaussian).
    """
    values = np.asarray(values, dtype=float)
    counts, edges = np.histogram(values, bins=bins, range=(-clip, clip))
    width = np.diff(edges)
    center = edges[:-1] + width / 2
    density = counts / (max(len(values), 1) * width)
    gaussian = np.exp(-center**2 / 2) / math.sqrt(2 * math.pi)
    return pd.DataFrame({"center": center, "width": width, "density": density, "gaussian": gaussian})


def tail_probabilities(values: np.ndarray, points: int = 60, t_max: float = 8.0) -> pd.DataFrame:
    """Empirical P(|value| > t) against the Gaussian's, for t in (0, t_max] (columns t, h, gaussian)."""
    values = np.sort(np.abs(np.asarray(values, dtype=float)))
    t = np.linspace(t_max / points, t_max, points)
    above = 1.0 - np.searchsorted(values, t, side="right") / max(len(values), 1)
    gaussian = np.array([math.erfc(v / math.sqrt(2)) for v in t])
    return pd.DataFrame({"t": t, "h": np.where(above > 0, above, np.nan), "gaussian": gaussian})


def moment_table(d_values=(4, 8, 16, 40), k: int = 3, link: str = "cubic") -> pd.DataFrame:
    """Exact E[(p/√d)^4], E[(p/√d)^6] and C per d: p/√d is only approximately Gaussian (Gaussian: 3, 15)."""
    coefs = parse_link(link)
    rows = []
    for d in d_values:
        norm = normalisation(d, k, coefs)
        m = norm.moments
        rows.append({"d": d, "E[(p/√d)^4]": m[4] / d**2 if len(m) > 4 else float("nan"),
                     "E[(p/√d)^6]": m[6] / d**3 if len(m) > 6 else float("nan"), "C": norm.C})
    return pd.DataFrame(rows)


def sample_counts(d_values=(4, 8, 16, 32, 64), k: int = 3, q: int = 3) -> pd.DataFrame:
    """Samples needed, up to constants: d^k for the three-layer network, d^{kq} for kernels (columns d, network, kernel)."""
    d = np.asarray(d_values, dtype=float)
    return pd.DataFrame({"d": d.astype(int), "network": d**k, "kernel": d ** (k * q)})


def link_degree(link: str) -> int:
    """The degree q of the link g."""
    return len(parse_link(link)) - 1
