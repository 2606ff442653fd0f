"""The public API beyond its doctests: what it refuses, what a Result says about its parameters, and that a
notebook's process is left alone (no JAX imported, no JAX setting changed) while its runs train elsewhere."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hierpoly
from hierpoly.study import specs

REPO = Path(__file__).resolve().parent.parent
TOUR = "e5f07c607038"  # the Learn tour's shipped run: a three-layer run stored with its first block


@pytest.fixture(scope="module")
def shipped():
    return hierpoly.demo_store()


def test_a_result_says_which_trained_parameters_it_keeps(shipped):
    [key] = [k for k in shipped.keys() if k.startswith(TOUR)]
    tour = shipped.get(key)
    assert sorted(tour.params) == ["V", "s", "u"]
    m1, d = tour.config.m1, tour.config.d
    assert [tour.params[n].shape for n in ("u", "s", "V")] == [(m1,), (m1,), (m1, d)]
    assert "params stored: u, s, V;" in repr(tour)
    old = hierpoly.run(d=8, n=4096, store=shipped)  # shipped before first blocks were stored
    assert old.params == {} and "params stored: none;" in repr(old)
    tour.params.clear()  # a copy: the Result keeps its arrays
    assert tour.params


def test_bad_requests_are_one_line_errors(shipped):
    with pytest.raises(TypeError, match="config must be a RunConfig"):
        hierpoly.run({"d": 6}, store=shipped)
    with pytest.raises(ValueError, match="a family of grids: exponents"):
        hierpoly.figure2("exponents", shipped)
    with pytest.raises(ValueError, match="0 stored runs match 'ffffffff'"):
        hierpoly.transfer("ffffffff", store=shipped)
    with pytest.raises(specs.SweepError, match="unknown preset 'nope'"):
        hierpoly.figure2("nope", shipped)


def test_settings_replace_a_config_s_fields(shipped):
    base = hierpoly.RunConfig(d=8, n=2048)
    handle = hierpoly.run(base, n=4096, store=shipped, wait=False)
    assert handle.config == hierpoly.RunConfig(d=8, n=4096) and handle.job.status == "done"


def test_runs_filters_by_value_and_by_list(shipped):
    both = hierpoly.stored(shipped, d=8, n=4096, arch=["kernel", "two_layer"], link="cubic")
    assert sorted(set(both["arch"])) == ["kernel", "two_layer"] and (both["d"] == 8).all()


@pytest.mark.process
def test_a_run_leaves_the_callers_jax_alone(tmp_path):
    """A notebook that calls run() imports no JAX; a worker trains (here: a stored config answers at once)."""
    code = ("import sys, hierpoly; s = hierpoly.demo_store(); r = hierpoly.run(d=8, n=4096, store=s); "
            "print(sorted(m for m in ('jax', 'jaxlib') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
