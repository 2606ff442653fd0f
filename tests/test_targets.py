"""Targets against exact facts: quadrature, closed forms, moment recursions."""
import itertools
import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss

from hierpoly import targets
from hierpoly.targets import LINK_PRESETS, TargetError, feature_moments, hermite, normalisation, parse_link


def gauss_expect(fn, points=60):
    """E[fn(z)], z ~ N(0,1), exact for polynomials of degree < 2·points."""
    z, w = hermegauss(points)
    return np.sum(w * fn(z)) / math.sqrt(2 * math.pi)


@pytest.mark.parametrize("j,k", list(itertools.product(range(6), repeat=2)))
def test_hermite_orthonormal(j, k):
    value = gauss_expect(lambda z: hermite(j, z) * hermite(k, z))
    assert value == pytest.approx(float(j == k), abs=1e-10)


def test_hermite_3_closed_form():
    z = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(hermite(3, z), (z**3 - 3 * z) / math.sqrt(6), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 5, 8, 16, 40])
def test_sixth_moment_closed_form_k3(d):
    # the paper, section 2: E[p^6] = 53745 d + 1395 d(d-1) + 15 d(d-1)(d-2)
    expected = 53745 * d + 1395 * d * (d - 1) + 15 * d * (d - 1) * (d - 2)
    assert feature_moments(d, 3, 0, 6)[6] == pytest.approx(expected, rel=1e-12)
    assert feature_moments(d, 3, 0, 6)[2] == pytest.approx(d, rel=1e-12)


def test_paper_constants():
    assert normalisation(16, 3, LINK_PRESETS["cubic"]).C == pytest.approx(8.96178e-4, rel=1e-5)
    assert normalisation(40, 3, LINK_PRESETS["cubic"]).C == pytest.approx(4.37889e-4, rel=1e-5)


@pytest.mark.parametrize("d,expected", [(8, 1002), (16, 304), (40, 81.5)])
def test_heavy_tail_normalised_sixth_moment(d, expected):
    assert feature_moments(d, 3, 0, 6)[6] / d**3 == pytest.approx(expected, rel=2e-3)


def tensor_quadrature_moments(d, k, lam, order, points=40):
    """E[p^m] by tensor-product Gauss–Hermite quadrature (exact for these degrees, small d)."""
    z, w = hermegauss(points)
    w = w / math.sqrt(2 * math.pi)
    grids = np.meshgrid(*([z] * d), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * d), indexing="ij"), axis=0)
    p = sum(lam[i] * hermite(k, grids[i]) for i in range(d))
    return [float(np.sum(weights * p**m)) for m in range(order + 1)]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("lam", [(1, 1), (1, -1), (-1, -1, 1)])
def test_moments_match_quadrature(k, lam):
    order = 8 if k < 4 else 6
    exact = feature_moments(len(lam), k, sum(1 for s in lam if s < 0), order)
    quad = tensor_quadrature_moments(len(lam), k, lam, order)
    np.testing.assert_allclose(exact, quad, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("link", ["cubic", "linear", "quadratic", "cubic+linear", "0.5,-1,0.25,2"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_normalised_target_has_unit_second_moment(link, k):
    coefs = parse_link(link)
    lam = (1, -1)
    norm = normalisation(2, k, coefs, n_minus=1)
    z, w = hermegauss(50)
    w = w / math.sqrt(2 * math.pi)
    x1, x2 = np.meshgrid(z, z, indexing="ij")
    weights = np.outer(w, w)
    p = lam[0] * hermite(k, x1) + lam[1] * hermite(k, x2)
    h = targets.link(p, coefs, norm.C)
    assert np.sum(weights * h**2) == pytest.approx(1.0, rel=1e-8)


def test_monte_carlo_sanity_k3_cubic():
    # Loose: Monte Carlo underestimates heavy-tailed moments; only a sanity check.
    rng = np.random.default_rng(0)
    d = 4
    x = rng.standard_normal((400_000, d))
    lam = np.array([1, -1, 1, 1])
    h = targets.link(hermite(3, x) @ lam, LINK_PRESETS["cubic"], normalisation(d, 3, LINK_PRESETS["cubic"]).C)
    assert 0.7 < np.mean(h**2) < 1.3


def test_odd_k_normalisation_ignores_signs():
    a = normalisation(6, 3, LINK_PRESETS["cubic"], n_minus=0).C
    b = normalisation(6, 3, LINK_PRESETS["cubic"], n_minus=4).C
    assert a == b


def test_even_k_normalisation_depends_on_signs():
    a = normalisation(6, 2, LINK_PRESETS["cubic"], n_minus=0).C
    b = normalisation(6, 2, LINK_PRESETS["cubic"], n_minus=3).C
    assert a != pytest.approx(b, rel=1e-3)


@pytest.mark.parametrize(
    "text", ["", "abc", "1,2,x", "__import__('os').system('true')", "1e400,1", "nan,1", "1", "0,0", "1,,2", "1 2"]
)
def test_bad_links_refused(text):
    with pytest.raises(TargetError):
        parse_link(text)


def test_link_parsing_and_canonical_names():
    assert parse_link(" Cubic ") == (0.0, 0.0, 0.0, 1.0)
    assert parse_link("0, 0, 0, 1, 0") == (0.0, 0.0, 0.0, 1.0)
    assert targets.canonical_link("0,0,0,1") == "cubic"
    assert targets.canonical_link("1, 2.5e-1") == "1.0,0.25"


def test_unsupported_k_refused():
    with pytest.raises(TargetError, match="k must be one of"):
        normalisation(4, 5, LINK_PRESETS["cubic"])


def test_hermite_sum_links_are_h1_plus_hq():
    z = np.linspace(-3, 3, 13)
    for name, q in (("h1+h2", 2), ("h1+h4", 4)):
        coefs = LINK_PRESETS[name]
        assert len(coefs) - 1 == q
        np.testing.assert_allclose(targets.link(z, coefs, 1.0), hermite(1, z) + hermite(q, z), atol=1e-12)


@pytest.mark.parametrize("d,k", [(8, 1), (10, 2), (5, 3)])
def test_standard_link_is_the_link_on_p_over_root_d(d, k):
    """raw_link turns g(p/√d) into coefficients on p: the normalised targets agree at every p."""
    std = (0.5, 1.0, -2.0, 0.0, 0.25)
    raw = parse_link(targets.raw_link("std:" + ",".join(map(str, std)), d))
    p = np.linspace(-3 * math.sqrt(d), 3 * math.sqrt(d), 11)
    h_raw = targets.link(p, raw, normalisation(d, k, raw).C)
    std_on_p = tuple(c * d ** (-j / 2) for j, c in enumerate(std))  # the same g, written on p
    np.testing.assert_allclose(h_raw, targets.link(p, std_on_p, normalisation(d, k, std_on_p).C), rtol=1e-10)
    assert parse_link("std:h1+h4") == LINK_PRESETS["h1+h4"]  # degree and parity are the std link's own
    assert targets.canonical_link(" STD: 0,0,0,1 ") == "std:cubic" and targets.raw_link("std:cubic", d) == "cubic"
    assert targets.raw_link("0,1,1", d) == "0.0,1.0,1.0"  # a raw link is left as written
    with pytest.raises(TargetError):
        parse_link("std:banana")
