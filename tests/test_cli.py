"""The CLI as a user runs it: JSON on the last line, clean one-line refusals.

Argument checks run in-process through ``cli.main`` (fast); a few real subprocesses
check what only a process shows: the exit status, stdout kept clean, no traceback.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hierpoly import cli as hierpoly_cli

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("cpu", "gpu", "cuda", "rocm", "tpu")


def cli(*args, cache_dir=None, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    if cache_dir is not None:
        env["HIERPOLY_CACHE_DIR"] = str(cache_dir)
    return subprocess.run([sys.executable, "-m", "hierpoly", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def test_target_json_gives_the_paper_constant(capsys):
    assert hierpoly_cli.main(["target", "--d", "16", "--k", "3", "--link", "cubic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["C"] == pytest.approx(8.96178e-4, rel=1e-5)
    assert out["moments"]["E[p^6]"] == pytest.approx(1245120, rel=1e-12)
    assert out["normalised_moments"]["E[(p/sqrt(d))^6]"] == pytest.approx(304, rel=1e-3)


@pytest.mark.process
def test_run_json_schema(tmp_path):
    res = cli("run", "--d", "3", "--n", "256", "--m2", "20", "--steps", "100", "--n-test", "256", "--n-eval", "4096",
              "--json", cache_dir=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("key", "config", "status", "test_loss", "feature_corr", "train_loss", "steps", "seconds",
                 "device", "versions"):
        assert name in out, name
    assert out["status"] == "done" and out["steps"] == 100 and len(out["key"]) == 64
    assert out["config"]["m1"] == 9 and out["device"]["backend"] in BACKENDS
    assert {"jax", "optax", "hierpoly"} <= set(out["versions"])
    # the command's numbers are the library's: the same config run in this process gives the same metrics
    from hierpoly.config import RunConfig
    from hierpoly.jobs.runner import execute

    direct = execute(RunConfig.from_dict(out["config"])).result.metrics
    assert (out["test_loss"], out["feature_corr"]) == (direct["test_loss"], direct["feature_corr"])


BAD_ARGUMENTS = [
    (["run", "--d", "0", "--n", "100"], "d must be between 1 and 4096"),
    (["run", "--d", "4", "--n", "1"], "n must be at least 2"),
    (["run", "--d", "4", "--n", "100", "--lr", "-1"], "lr must be positive"),
    (["run", "--d", "4", "--n", "100", "--lr", "nan"], "finite"),
    (["run", "--d", "4", "--n", "100", "--k", "9"], "k must be one of"),
    (["run", "--d", "4", "--n", "100", "--link", "__import__('os')"], "neither a preset"),
    (["run", "--d", "4", "--n", "100", "--m1", "0"], "m1 must be at least 1"),
    (["run", "--d", "four", "--n", "100"], "invalid int value"),
    (["run", "--n", "100"], "required"),
    (["run", "--d", "4", "--n", "100", "--steps2", "50"], "steps2 applies to layerwise training only"),
    (["run", "--d", "4", "--n", "100", "--mode", "layerwise", "--lr2", "0"], "lr2 must be positive"),
    (["target", "--d", "4", "--k", "7"], "k must be one of"),
    (["target", "--d", "4", "--seed", "99999999999999999999"], "seed must be from 0 to 2^31 - 1"),
    (["run", "--d", "4", "--n", "100", "--seed", "2147483648"], "seed must be from 0 to 2^31 - 1"),
    (["figure2", "--d", "4", "--multiples", "inf"], "must be a finite number"),
    (["figure2", "--d", "4", "--multiples", "1e308"], "must be a finite number"),
    (["sweep", "--d", "4", "--multiples", "inf"], "must be a finite number"),
    (["sweep", "--d", "4", "--multiples", "1e308"], "must be a finite number"),
    (["check-convergence", "--preset", "cpu", "--seeds", "-3"], "seed must be from 0"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("args,message", BAD_ARGUMENTS)
def test_bad_arguments_one_line_no_traceback(args, message, capsys):
    try:
        code = hierpoly_cli.main(args)
    except SystemExit as exit_:  # argparse errors leave through SystemExit with our one line
        code = exit_.code
    assert code != 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert message in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""


@pytest.mark.process
@pytest.mark.parametrize("args,message", [BAD_ARGUMENTS[0], BAD_ARGUMENTS[7], BAD_ARGUMENTS[12], BAD_ARGUMENTS[15],
                                         BAD_ARGUMENTS[-1]])
def test_bad_arguments_in_a_real_process(args, message, tmp_path):
    res = cli(*args, cache_dir=tmp_path)
    assert res.returncode != 0
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert res.stdout == ""


def test_stage2_flags_reach_the_config():
    args = hierpoly_cli.build_parser().parse_args(
        ["run", "--d", "4", "--n", "100", "--mode", "layerwise", "--steps", "30", "--steps2", "70", "--lr2", "0.5",
         "--weight-decay", "1e-4", "--weight-decay2", "0.02"])
    cfg = hierpoly_cli.config_from_args(args)
    stages = (cfg.steps, cfg.steps2, cfg.lr, cfg.lr2, cfg.weight_decay, cfg.weight_decay2)
    assert stages == (30, 70, None, 0.5, 1e-4, 0.02)
    plain = hierpoly_cli.config_from_args(hierpoly_cli.build_parser().parse_args(
        ["run", "--d", "4", "--n", "100", "--mode", "layerwise", "--steps", "30"]))
    assert (plain.steps2, plain.lr2, plain.weight_decay2) == (30, None, plain.weight_decay)
