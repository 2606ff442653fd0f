"""Configs: validation messages, default resolution, stable keys."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hierpoly.config import JOINT_CAP, ConfigError, RunConfig, poly_space_dim

REPO = Path(__file__).resolve().parent.parent


def test_defaults_resolve_to_the_same_key():
    assert RunConfig(d=8, n=4096).key() == RunConfig(d=8, n=4096, m1=64, steps=JOINT_CAP, lr=1e-2, n_eval=2**20, link="0,0,0,1").key()
    assert RunConfig(d=8, n=4096, lr=1).key() == RunConfig(d=8, n=4096, lr=1.0).key()


def test_layerwise_default_width_spans_degree_k_polynomials():
    cfg = RunConfig(d=8, n=1000, mode="layerwise")
    assert cfg.m1 == poly_space_dim(8, 3) == 165
    assert cfg.warnings() == []
    assert "m1 ≥ 165" in RunConfig(d=8, n=1000, mode="layerwise", m1=50).warnings()[0]


def test_every_field_changes_the_key():
    base, layerwise = RunConfig(d=8, n=4096), RunConfig(d=8, n=4096, mode="layerwise")
    changes = dict(
        d=9, n=4097, k=2, link="linear", sigma1="relu", m1=65, m2=999, arch="kernel", mode="layerwise",
        steps=10, lr=5e-2, weight_decay=1e-3, tol=1e-2, patience=7, lr_drops=0, lr_decay=0.5, feature_tol=0.0,
        b_scale=3.0, seed=1, n_test=100, n_eval=4096,
    )
    stage2 = dict(steps2=10, lr2=5e-2, weight_decay2=1e-3)  # layer-wise only
    transfer = dict(source="f" * 64)  # transfer only (test_transfer.py: the source changes a transfer's key)
    assert set(changes) | set(stage2) | set(transfer) == {f.name for f in dataclasses.fields(RunConfig)}
    keys = {base.key(), layerwise.key()}
    for name, value in changes.items():
        keys.add(dataclasses.replace(base, **{name: value}).key())
    for name, value in stage2.items():
        keys.add(dataclasses.replace(layerwise, **{name: value}).key())
    assert len(keys) == len(changes) + len(stage2) + 2


def test_stage2_fields_resolve_so_one_run_has_one_key():
    lw = dict(d=6, n=1000, mode="layerwise")
    cfg = RunConfig(**lw, steps=300, weight_decay=1e-3)
    assert (cfg.steps2, cfg.weight_decay2, cfg.lr2) == (300, 1e-3, None)  # lr None: stage 2's own 1/L
    assert cfg.total_steps == 600
    assert cfg.key() == RunConfig(**lw, steps=300, steps2=300, weight_decay=1e-3, weight_decay2=0.001).key()
    assert RunConfig(**lw, lr=0.1).lr2 == 0.1
    assert RunConfig(**lw, lr=0.1).key() == RunConfig(**lw, lr=0.1, lr2=0.1).key()
    assert RunConfig(**lw, lr=0.1).key() != RunConfig(**lw, lr=0.1, lr2=0.2).key()
    assert RunConfig(**lw, lr2=1).key() == RunConfig(**lw, lr2=1.0).key() != RunConfig(**lw).key()
    assert RunConfig(**lw, steps2=40).total_steps == 5040
    assert RunConfig.from_dict(RunConfig(**lw, steps2=40).to_dict()).key() == RunConfig(**lw, steps2=40).key()
    assert RunConfig(d=8, n=4096).total_steps == JOINT_CAP and RunConfig(d=8, n=4096).steps2 is None


@pytest.mark.parametrize("name,value", [("steps2", 100), ("lr2", 0.1), ("weight_decay2", 1e-3)])
def test_joint_mode_refuses_stage2_fields(name, value):
    with pytest.raises(ConfigError, match=f"{name} applies to layerwise training only"):
        RunConfig(d=4, n=64, **{name: value})
    assert getattr(RunConfig(d=4, n=64, mode="layerwise", **{name: value}), name) == value


@pytest.mark.process
def test_key_is_stable_across_processes():
    code = "from hierpoly.config import RunConfig; print(RunConfig(d=12, n=999, link='1,0,2', seed=3).key())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outs = {subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)}
    assert outs == {RunConfig(d=12, n=999, link="1,0,2", seed=3).key()}
    assert len(outs.pop()) == 64


def test_round_trip_through_dict():
    cfg = RunConfig(d=5, n=300, link="0.5,1", mode="layerwise")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config fields: bogus"):
        RunConfig.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(d=0, n=10), "d must be between 1 and 4096"),
        (dict(d=4, n=1), "n must be at least 2"),
        (dict(d=4, n=10, m1=0), "m1 must be at least 1"),
        (dict(d=4, n=10, m2=0), "m2 must be at least 1"),
        (dict(d=4, n=10, lr=0.0), "lr must be positive"),
        (dict(d=4, n=10, lr=-1.0), "lr must be positive"),
        (dict(d=4, n=10, lr=float("inf")), "lr must be a finite number"),
        (dict(d=4, n=10, lr=float("nan")), "lr must be a finite number"),
        (dict(d=4, n=10, k=5), "k must be one of 1, 2, 3, 4"),
        (dict(d=4, n=10, link="z**3"), "neither a preset"),
        (dict(d=4, n=10, sigma1="tanh"), "sigma1 must be one of"),
        (dict(d=4, n=10, mode="both"), "mode must be one of"),
        (dict(d=4, n=10, arch="cnn"), "arch must be one of"),
        (dict(d=4.5, n=10), "d must be a whole number"),
        (dict(d=4, n=10, steps=0), "steps must be at least 1"),
        (dict(d=4, n=10, mode="layerwise", steps2=0), "steps2 must be at least 1"),
        (dict(d=4, n=10, mode="layerwise", steps2=2.5), "steps2 must be a whole number"),
        (dict(d=4, n=10, mode="layerwise", steps2=True), "steps2 must be a whole number"),
        (dict(d=4, n=10, mode="layerwise", lr2=0.0), "lr2 must be positive"),
        (dict(d=4, n=10, mode="layerwise", lr2=float("inf")), "lr2 must be a finite number"),
        (dict(d=4, n=10, mode="layerwise", weight_decay2=-1e-3), "weight_decay2 must be at least 0"),
        (dict(d=4, n=10, mode="layerwise", weight_decay2=float("nan")), "weight_decay2 must be a finite number"),
        (dict(d=4, n=10, mode="layerwise", weight_decay2="0.1"), "weight_decay2 must be a finite number"),
        (dict(d=4, n=10, seed=-1), "seed must be between 0 and 2\\^31 - 1"),
        (dict(d=4, n=10, seed=99999999999999999999999), "seed must be between 0 and 2\\^31 - 1"),  # a worker would overflow
    ],
)
def test_bad_values_refused_with_clear_messages(fields, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**fields)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig(d=4, n=10).d = 5


@pytest.mark.parametrize("changes,message", [
    (dict(lr_drops=-1), "lr_drops must be between 0 and 10"), (dict(lr_drops=1.5), "lr_drops must be a whole number"),
    (dict(lr_decay=0.0), r"lr_decay must be in \(0, 1\]"), (dict(lr_decay=1.5), r"lr_decay must be in \(0, 1\]"),
    (dict(feature_tol=-0.1), r"feature_tol must be in \[0, 1\)"), (dict(feature_tol=float("nan")), "feature_tol must be a finite"),
])
def test_the_convergence_settings_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(d=4, n=64, **changes)


def test_settings_a_run_never_reads_stay_out_of_its_key():
    kernel = RunConfig(d=6, n=500, arch="kernel")
    assert RunConfig(d=6, n=500, arch="kernel", steps=7, lr=0.5, tol=0.2, patience=3, feature_tol=0.5).key() == kernel.key()
    layerwise = RunConfig(d=6, n=500, mode="layerwise")
    assert RunConfig(d=6, n=500, mode="layerwise", tol=0.2, lr_drops=0, feature_tol=0.0).key() == layerwise.key()
    joint = RunConfig(d=6, n=500)  # joint training reads them all
    assert len({joint.key(), RunConfig(d=6, n=500, tol=0.2).key(), RunConfig(d=6, n=500, feature_tol=0.0).key()}) == 3
    with pytest.raises(ConfigError, match="tol must be in"):  # bad values are refused before they are dropped
        RunConfig(d=6, n=500, arch="kernel", tol=2.0)
    for arch in ("kernel", "two_layer"):
        with pytest.raises(ConfigError, match=f"the {arch} baseline is trained as a whole"):
            RunConfig(d=6, n=500, arch=arch, mode="layerwise")
