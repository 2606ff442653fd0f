"""The installable package: pyproject matches the checkout, and a wheel works in a fresh venv outside any checkout.

The wheel is built from a copy of what it is made of (no build/ folder left in the checkout) with
this machine's setuptools (no download); the venv sees this machine's packages (--system-site-packages), so only
the wheel installs: JAX from the network would take minutes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.ray_cluster import free_ports

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TEST_ONLY = {"pytest", "playwright"}  # requirements.txt pins them for the tests; the package does not need them
RUN = "import hierpoly; r = hierpoly.run(d=6, n=864, m2=200, steps=300); print(r.metrics['feature_corr'])"


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):  # -r another file: not a package
            name = re.match(r"[A-Za-z0-9_.\-\[\],]+", line).group(0)
            pins[name.split("[")[0].lower()] = line
    return pins


def test_dependencies_are_requirements_txt_less_the_test_tools():
    wanted = {name: pin for name, pin in _pins((REPO / "requirements.txt").read_text().splitlines()).items()
              if name not in TEST_ONLY}
    assert _pins(PYPROJECT["project"]["dependencies"]) == wanted
    ray = _pins((REPO / "requirements-ray.txt").read_text().splitlines())
    assert _pins(PYPROJECT["project"]["optional-dependencies"]["ray"]) == ray


def test_every_package_folder_is_listed_and_the_mapped_data_exists():
    tool = PYPROJECT["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "hierpoly").rglob("__init__.py")}
    mapped = tool["package-dir"]
    assert set(tool["packages"]) == on_disk | set(mapped)
    assert (REPO / mapped["hierpoly._app"] / "app.py").is_file()
    for package, patterns in tool["package-data"].items():
        for pattern in patterns:
            assert list((REPO / mapped[package]).glob(pattern)), f"{package}: nothing matches {pattern}"


def test_the_console_command_is_python_m_hierpoly():
    from hierpoly import __main__, cli

    assert PYPROJECT["project"]["scripts"] == {"hierpoly": "hierpoly.__main__:main"}
    assert __main__.main is cli.main


def test_a_checkout_finds_its_own_app_and_bundles():
    from hierpoly import locations

    assert locations.checkout() == REPO
    assert locations.app_dir() == REPO and locations.precomputed_dir() == REPO / "cache" / "precomputed"
    assert REPO.as_posix() in locations.child_pythonpath().split(os.pathsep)


SHIPPED = ("pyproject.toml", "README.md", "app.py", "pages", ".streamlit", "cache/precomputed", "hierpoly")


def _source_copy(dest: Path) -> Path:
    """What pyproject.toml builds from, copied (compiled files left out): the build writes there, not here."""
    for name in SHIPPED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    return path / "bin"


def _outside_env(home: Path) -> dict:
    """No checkout on the path, no store chosen: the installed package's defaults, in a throwaway cache folder."""
    drop = {"PYTHONPATH", "HIERPOLY_CACHE_DIR", "HIERPOLY_LOAD_PRECOMPUTED"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "XDG_CACHE_HOME": str(home / "xdg"),
            "PYTHONUNBUFFERED": "1"}


def _ok(*command, cwd: Path, env: dict) -> str:
    out = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _pip(bin_dir: Path, *args) -> None:
    out = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
@pytest.mark.process
def test_wheel_in_a_fresh_venv_runs_caches_and_reports_from_its_own_bundles(tmp_path):
    source = _source_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("hierpoly_explorer-*.whl"))
    bin_dir = _venv(tmp_path / "v")
    _pip(bin_dir, str(wheel))
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = _outside_env(tmp_path)
    where = _ok(bin_dir / "python", "-c", "import hierpoly.locations as l, hierpoly.results.bundles as b;"
                "print(l.checkout(), l.PACKAGE, b.PRECOMPUTED, l.default_store_dir(), sep='\\n')", cwd=away, env=env).split("\n")
    assert where[0] == "None" and where[1].startswith(str(tmp_path / "v"))
    assert where[2] == where[1] + "/_precomputed" and where[3] == str(tmp_path / "xdg" / "hierpoly" / "store")

    runs = [subprocess.run([str(bin_dir / "python"), "-c", RUN], cwd=away, env=env, capture_output=True, text=True,
                           timeout=600) for _ in range(2)]
    for out in runs:
        assert out.returncode == 0, out.stderr[-2000:]
    first, second = (float(out.stdout.strip().splitlines()[-1]) for out in runs)
    assert 0 < first <= 1 and second == first
    store = tmp_path / "xdg" / "hierpoly" / "store"
    assert len(list((store / "jobs" / "logs").glob("*.log"))) == 1  # one worker trained; the second answer was stored
    trained = _ok(bin_dir / "python", "-c", "import hierpoly; r = hierpoly.stored(d=6, n=864, m2=200, steps=300);"
                  "print(len(r), hierpoly.Store().get(r.key[0]).meta['git_commit'])", cwd=away, env=env)
    assert trained.split() == ["1", "None"]  # its worker ran the installed package, not a checkout

    fig = subprocess.run([str(bin_dir / "hierpoly"), "figure2", "--preset", "cpu", "--json"], cwd=away, env=env,
                         capture_output=True, text=True, timeout=300)
    assert fig.returncode == 0, fig.stderr
    report = json.loads(fig.stdout.strip().splitlines()[-1])
    assert report["kappa"]["estimate"] == pytest.approx(2.5388, abs=1e-3)  # the shipped cpu grid's κ
    assert report == _checkout_figure2()  # the same bundles as the checkout's, every cell and reading
    _serves_the_app(bin_dir, away, env)


def _checkout_figure2() -> dict:
    import hierpoly
    from hierpoly.study import figure2, presets

    report, _ = figure2.figure2_json(presets.cpu(), hierpoly.demo_store())
    return json.loads(json.dumps(report))


def _serves_the_app(bin_dir: Path, cwd: Path, env: dict) -> None:
    """`hierpoly app` starts Streamlit on the installed app.py: its health endpoint answers, its page is served."""
    (port,) = free_ports(1)
    proc = subprocess.Popen([str(bin_dir / "hierpoly"), "app", "--server.port", str(port)], cwd=cwd,
                            env={**env, "HIERPOLY_WARM": "0"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as answer:
                    assert answer.read() == b"ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, "hierpoly app did not answer within 120 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert b"<html" in page.read().lower()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.mark.process
def test_editable_install_keeps_the_checkout_layout(tmp_path):
    source = _source_copy(tmp_path / "src")
    bin_dir = _venv(tmp_path / "v")
    _pip(bin_dir, "-e", str(source))
    out = _ok(bin_dir / "python", "-c", "import hierpoly.locations as l, hierpoly.results.store as s;"
              "print(l.checkout(), l.app_dir(), s.default_dir(), sep='\\n')", cwd=tmp_path, env=_outside_env(tmp_path))
    assert out.split() == [str(source), str(source), str(source / "cache" / "store")]
    help_text = _ok(bin_dir / "hierpoly", "--help", cwd=tmp_path, env=_outside_env(tmp_path))
    assert "app" in help_text and "figure2" in help_text


def test_no_public_name_hides_a_module_of_the_package():
    import hierpoly

    package = REPO / "hierpoly"
    hidden = [name for name in hierpoly.__all__ if (package / name).is_dir() or (package / f"{name}.py").is_file()]
    assert hidden == []  # `import hierpoly.NAME.x as y` would find the function, not the module
    import hierpoly.results.bundles as bundles  # the form that a function named `results` broke

    assert bundles.PRECOMPUTED.is_dir()
