"""Hierarchical targets h = g ∘ p and their exact normalisation.

- ``h_k = He_k / sqrt(k!)``: normalised probabilists' Hermite polynomials, so
  ``E[h_k(z)^2] = 1`` for ``z ~ N(0, 1)`` **[seed]**.
- Feature ``p(x) = Σ_i λ_i h_k(x_i)`` with ``λ_i`` uniform on ``{-1, +1}`` **[seed]**
  (the paper fixes k = 3; k = 1..4 is our generalisation).
- Link ``g(z) = C · Σ_j coef_j z^j`` applied to the raw feature ``p(x)``; the
  paper's link is ``C z^3`` **[seed]**. ``C`` makes ``E_x[h(x)^2] = 1`` exactly.
  A link written ``std:LINK`` means LINK applied to the standardised ``p/√d`` (E[p²] = d),
  the units of the theory's fixed g: a mixed link such as z + z² on the raw p changes
  shape with d (its z² part dominates as d grows), on ``p/√d`` it does not. A run
  resolves it to raw coefficients for its own d (``raw_link``).

Exactness: ``p`` is a sum of ``d`` independent terms, so its cumulants add,
``κ_m(p) = Σ_i κ_m(λ_i h_k)``; moments follow from cumulants. Everything is done
in rational arithmetic on ``He_k`` (integer coefficients) and converted to float
once at the end. Monte Carlo badly underestimates these moments (heavy tails),
so it is used only in tests as a sanity check.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

SUPPORTED_K = (1, 2, 3, 4)

# Named links, coefficients in ascending powers of z (before normalisation).
LINK_PRESETS: dict[str, tuple[float, ...]] = {
    "cubic": (0.0, 0.0, 0.0, 1.0),  # the paper's g(z) = C z^3
    "linear": (0.0, 1.0),  # h = C p: no hierarchy, a sanity baseline
    "quadratic": (0.0, 0.0, 1.0),
    "cubic+linear": (0.0, 1.0, 0.0, 1.0),
    "quartic": (0.0, 0.0, 0.0, 0.0, 1.0),
    # h_1 + h_q: E[g'] = 1 and, on a Gaussian z, half the variance in the degree-1 part
    "h1+h2": (-1 / math.sqrt(2), 1.0, 1 / math.sqrt(2)),
    "h1+h4": (3 / math.sqrt(24), 1.0, -6 / math.sqrt(24), 0.0, 1 / math.sqrt(24)),
}
STANDARD = "std:"  # prefix: the link acts on p/√d instead of p
MAX_LINK_DEGREE = 6
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class TargetError(ValueError):
    """A target setting that cannot be used, with a message for a person."""


def hermite_coefficients(k: int) -> tuple[int, ...]:
    """Integer coefficients (ascending powers) of He_k, by He_{k+1} = z He_k - k He_{k-1}."""
    prev, cur = (1,), (0, 1)
    if k == 0:
        return prev
    for j in range(1, k):
        nxt = [0] * (j + 2)
        for i, c in enumerate(cur):
            nxt[i + 1] += c
        for i, c in enumerate(prev):
            nxt[i] -= j * c
        prev, cur = cur, tuple(nxt)
    return cur


def hermite(k: int, z):
    """Normalised Hermite polynomial h_k(z) = He_k(z)/sqrt(k!), for numpy or jax arrays."""
    prev, cur = 1.0 + 0.0 * z, z
    if k == 0:
        return prev
    for j in range(1, k):
        prev, cur = cur, z * cur - j * prev
    return cur / math.sqrt(math.factorial(k))


def parse_link(text: str) -> tuple[float, ...]:
    """A preset name, or comma-separated numbers c0, c1, ... meaning Σ c_j z^j. Never evaluated.

    A ``std:`` link gives its coefficients in units of p/√d (same degree and parity).
    """
    name = text.strip().lower()
    if name.startswith(STANDARD):
        name = name[len(STANDARD):].strip()
    if name in LINK_PRESETS:
        return LINK_PRESETS[name]
    parts = [p.strip() for p in name.replace(";", ",").split(",")]
    if not name or not all(_NUMBER.match(p) for p in parts):
        raise TargetError(
            f"link {text!r} is neither a preset ({', '.join(LINK_PRESETS)}) nor a "
            "comma-separated list of numbers c0, c1, ... (g(z) = c0 + c1 z + c2 z^2 + ...)"
        )
    coefs = [float(p) for p in parts]
    if not all(math.isfinite(c) for c in coefs):
        raise TargetError(f"link coefficients must be finite numbers, got {text!r}")
    while len(coefs) > 1 and coefs[-1] == 0.0:
        coefs.pop()
    if len(coefs) - 1 > MAX_LINK_DEGREE:
        raise TargetError(f"link degree {len(coefs) - 1} is above the supported {MAX_LINK_DEGREE}")
    if all(c == 0.0 for c in coefs[1:]):
        raise TargetError("the link must depend on z: at least one of c1, c2, ... must be non-zero")
    return tuple(coefs)


def canonical_link(text: str) -> str:
    """The preset name if the link is one, else its coefficients written canonically (``std:`` kept)."""
    coefs = parse_link(text)
    prefix = STANDARD if is_standard(text) else ""
    for name, preset in LINK_PRESETS.items():
        if preset == coefs:
            return prefix + name
    return prefix + ",".join(repr(c) for c in coefs)


def is_standard(text: str) -> bool:
    """Whether the link is written in units of p/√d (``std:``)."""
    return text.strip().lower().startswith(STANDARD)


def raw_link(text: str, d: int) -> str:
    """The link on the raw p for dimension d: a ``std:`` link's c_j become c_j d^((q-j)/2), canonical.

    g(p/√d) = Σ c_j d^(-j/2) p^j; the common factor d^(q/2) keeps the numbers near 1, and C absorbs it.
    """
    if not is_standard(text):
        return canonical_link(text)
    if d < 1:
        raise TargetError(f"dimension d must be at least 1, got {d}")
    coefs = parse_link(text)
    q = len(coefs) - 1
    return canonical_link(",".join(repr(c * d ** ((q - j) / 2)) for j, c in enumerate(coefs)))


def link_name(link: str, d: int) -> str:
    """How to write a run's resolved link (``raw_link``) for people and URLs: the preset it is, or ``std:NAME``
    when it is a preset on p/√d resolved at this d, else its coefficients.

    ``std:h1+h2`` at d = 10 resolves to raw coefficients that mean another target at d = 12; its name
    means the same target at every d, so a link that reopens the run at another d keeps the meaning.
    """
    text = canonical_link(link)
    if text in LINK_PRESETS:
        return text
    for name in LINK_PRESETS:
        if raw_link(STANDARD + name, d) == text:
            return STANDARD + name
    return text


@cache
def check_link(text: str, d: int, k: int) -> None:
    """TargetError (one line) unless the link parses and gives a target that can be normalised at this d and k,
    as the ``target`` command checks it: every config is validated so, wherever its link came from."""
    if k not in SUPPORTED_K or d < 1:
        return  # the config's own checks name these
    coefs = parse_link(raw_link(text, d))
    normalisation(d, k, coefs, 0)
    if k % 2 == 0:  # h_k even: C depends on how many λ_i are -1
        normalisation(d, k, coefs, d)


def lambdas(key, d: int):
    """λ_i uniform on {-1, +1}, as float32 (jax array)."""
    import jax

    return jax.random.rademacher(key, (d,), dtype="float32")


def feature(x, lam, k: int):
    """p(x) = Σ_i λ_i h_k(x_i); x: (..., d), lam: (d,)."""
    return hermite(k, x) @ lam


def link(z, coefs: tuple[float, ...], scale: float):
    """g(z) = scale · Σ_j coef_j z^j (Horner)."""
    out = 0.0 * z
    for c in reversed(coefs):
        out = out * z + c
    return scale * out


# ---------------------------------------------------------------- exact moments
def _gaussian_moment(m: int) -> int:
    """E[z^m] for z ~ N(0,1): (m-1)!! for even m, 0 for odd."""
    return 0 if m % 2 else math.prod(range(m - 1, 0, -2))


def _poly_mul(a, b):
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


@cache
def _hermite_moments(k: int, order: int) -> tuple[int, ...]:
    """E[He_k(z)^m] for m = 0..order, exact integers."""
    he = list(hermite_coefficients(k))
    power, out = [1], []
    for _ in range(order + 1):
        out.append(sum(c * _gaussian_moment(i) for i, c in enumerate(power)))
        power = _poly_mul(power, he)
    return tuple(out)


def _cumulants_from_moments(moments) -> list[Fraction]:
    """κ_1..κ_M from raw moments m_0..m_M (m_n = Σ_j C(n-1,j-1) κ_j m_{n-j})."""
    kappa = [Fraction(0)]
    for n in range(1, len(moments)):
        s = sum(math.comb(n - 1, j - 1) * kappa[j] * moments[n - j] for j in range(1, n))
        kappa.append(Fraction(moments[n]) - s)
    return kappa


def _moments_from_cumulants(kappa) -> list[Fraction]:
    moments = [Fraction(1)]
    for n in range(1, len(kappa)):
        moments.append(sum(math.comb(n - 1, j - 1) * kappa[j] * moments[n - j] for j in range(1, n + 1)))
    return moments


def feature_moments(d: int, k: int, n_minus: int, order: int) -> list[float]:
    """Exact E[p(x)^m], m = 0..order, for p with n_minus of the d signs λ_i equal to -1.

    κ_m(λ h_k) = λ^m κ_m(h_k), and κ_m(p) = (n_plus + (-1)^m n_minus) κ_m(h_k).
    """
    if not 0 <= n_minus <= d:
        raise TargetError(f"n_minus must be in [0, d], got {n_minus}")
    kappa_he = _cumulants_from_moments(_hermite_moments(k, order))
    n_plus = d - n_minus
    kappa_p = [Fraction(0)] + [(n_plus + (-1) ** m * n_minus) * kappa_he[m] for m in range(1, order + 1)]
    scale = math.factorial(k)  # p = p_He / sqrt(k!): E[p^m] = E[p_He^m] / k!^(m/2)
    return [float(mo) / scale ** (m / 2) for m, mo in enumerate(_moments_from_cumulants(kappa_p))]


@dataclass(frozen=True)
class Normalisation:
    """The constant C with E[(C · poly(p))^2] = 1, and the moments it came from."""

    C: float
    moments: tuple[float, ...]  # E[p^m], m = 0..2q
    second_moment_unscaled: float  # E[poly(p)^2]


def normalisation(d: int, k: int, coefs: tuple[float, ...], n_minus: int = 0) -> Normalisation:
    """Exact C for link coefficients ``coefs`` (ascending) and feature degree k.

    For odd k the result does not depend on the signs λ (h_k is odd); for even k
    pass how many λ_i are -1.
    """
    if k not in SUPPORTED_K:
        raise TargetError(f"feature degree k must be one of {SUPPORTED_K}, got {k}")
    if d < 1:
        raise TargetError(f"dimension d must be at least 1, got {d}")
    q = len(coefs) - 1
    moments = feature_moments(d, k, n_minus if k % 2 == 0 else 0, 2 * q)
    second = sum(ci * cj * moments[i + j] for i, ci in enumerate(coefs) for j, cj in enumerate(coefs))
    if not math.isfinite(second):
        raise TargetError("this link's coefficients are too large: the target's second moment overflows "
                          "(scale them down: C rescales the target anyway)")
    if not second > 0:
        raise TargetError("this link gives a target that is identically zero")
    return Normalisation(C=1.0 / math.sqrt(second), moments=tuple(moments), second_moment_unscaled=second)
