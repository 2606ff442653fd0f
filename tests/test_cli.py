"""The CLI as a user runs it: real subprocesses, JSON on the last line, clean refusals."""
import json
import os
import subprocess
import sys

import pytest


def cli(*args, cache_dir=None, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cache_dir is not None:
        env["HIERPOLY_CACHE_DIR"] = str(cache_dir)
    return subprocess.run([sys.executable, "-m", "hierpoly", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_target_json_gives_the_paper_constant():
    res = cli("target", "--d", "16", "--k", "3", "--link", "cubic", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["C"] == pytest.approx(8.96178e-4, rel=1e-5)
    assert out["moments"]["E[p^6]"] == pytest.approx(1245120, rel=1e-12)
    assert out["normalised_moments"]["E[(p/sqrt(d))^6]"] == pytest.approx(304, rel=1e-3)


def test_run_json_schema(tmp_path):
    res = cli("run", "--d", "3", "--n", "256", "--m2", "20", "--steps", "100", "--n-test", "256", "--json",
              cache_dir=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("key", "config", "status", "test_loss", "feature_corr", "train_loss", "steps", "seconds",
                 "device", "versions"):
        assert name in out, name
    assert out["status"] == "done" and out["steps"] == 100 and len(out["key"]) == 64
    assert out["config"]["m1"] == 9 and out["device"]["backend"] == "cpu"
    assert {"jax", "optax", "hierpoly"} <= set(out["versions"])
    assert 0 <= out["test_loss"] < 10 and -1 <= out["feature_corr"] <= 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--d", "0", "--n", "100"], "d must be at least 1"),
        (["run", "--d", "4", "--n", "1"], "n must be at least 2"),
        (["run", "--d", "4", "--n", "100", "--lr", "-1"], "learning rate must be positive"),
        (["run", "--d", "4", "--n", "100", "--lr", "nan"], "finite"),
        (["run", "--d", "4", "--n", "100", "--k", "9"], "k must be one of"),
        (["run", "--d", "4", "--n", "100", "--link", "__import__('os')"], "neither a preset"),
        (["run", "--d", "4", "--n", "100", "--m1", "0"], "m1 must be at least 1"),
        (["run", "--d", "four", "--n", "100"], "invalid int value"),
        (["run", "--n", "100"], "required"),
        (["target", "--d", "4", "--k", "7"], "k must be one of"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_one_line_no_traceback(args, message, tmp_path):
    res = cli(*args, cache_dir=tmp_path)
    assert res.returncode != 0
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert message in lines[0] and "Traceback" not in res.stderr
    assert res.stdout == ""
