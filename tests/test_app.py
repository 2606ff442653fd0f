"""AppTest of every page, with an empty store and with really trained stored results.

Stored results come from real training (``runner.execute``)
of tiny configs in a session fixture; the Explore launch test runs a real worker
process through ``jobs``. The store directory is chosen by HIERPOLY_CACHE_DIR.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hierpoly.config import RunConfig
from hierpoly.fieldspec import MORE, SIDEBAR
from hierpoly.jobs import records, scheduler
from hierpoly.results.bundles import PRECOMPUTED, load_precomputed
from hierpoly.results.store import Store
from hierpoly.study import presets
from hierpoly.views import forms
from hierpoly.views.system import _clear_store_cache

PAGES = ("pages/0_Home.py", "pages/1_Explore.py", "pages/2_Figure_2.py", "pages/3_Results.py", "pages/4_Learn.py")
TINY = dict(d=4, n=256, m2=50, steps=200, n_test=256)
GRID = presets.tiny(seeds=1)  # the Figure 2 page's `tiny` preset: a few of its cells get stored
TIMEOUT = 60
REPO = Path(__file__).resolve().parent.parent


def _stored_configs() -> list[RunConfig]:
    return [
        RunConfig(**TINY),
        GRID.config(4, 32, 0),
        GRID.config(4, 128, 0),
        GRID.config(4, 32, 0, arch="kernel"),
    ]


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """A store holding a few really trained tiny runs (shared read-only; tests copy it)."""
    from hierpoly.jobs.runner import execute

    directory = tmp_path_factory.mktemp("trained") / "store"
    store = Store(directory)
    for cfg in _stored_configs():
        out = execute(cfg)
        assert out.status == "done", out.message
        store.put(out.result)
    store.close()
    return directory


@contextlib.contextmanager
def _app_store(directory, monkeypatch, load_shipped: bool):
    """The app's store at `directory` for one test (shipped bundles loaded on first open or not)."""
    monkeypatch.setenv("HIERPOLY_CACHE_DIR", str(directory))
    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "1" if load_shipped else "0")
    _clear_store_cache()
    try:
        yield
    finally:
        _cancel_live(directory)
        _clear_store_cache()


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    with _app_store(tmp_path / "store", monkeypatch, load_shipped=False):
        yield Store(tmp_path / "store")


@pytest.fixture
def stored_store(trained_dir, tmp_path, monkeypatch):
    shutil.copytree(trained_dir, tmp_path / "store")
    with _app_store(tmp_path / "store", monkeypatch, load_shipped=False):
        yield Store(tmp_path / "store")


@pytest.fixture(scope="session")
def shipped_dir(tmp_path_factory):
    """A store that loaded the shipped bundles on its first open, as on a fresh clone (once per session)."""
    directory = tmp_path_factory.mktemp("shipped") / "store"
    store = Store(directory)
    assert load_precomputed(store, PRECOMPUTED)  # the first open's import, through the same function
    store.close()
    return directory


@pytest.fixture
def bundle_store(shipped_dir, tmp_path, monkeypatch):
    """A copy of that store for one test (the app finds every shipped key and imports nothing more)."""
    shutil.copytree(shipped_dir, tmp_path / "store")
    with _app_store(tmp_path / "store", monkeypatch, load_shipped=True):
        yield tmp_path / "store"


def _cancel_live(directory) -> None:
    store = Store(directory)
    for job in records.list_jobs(store):
        if job.status in records.LIVE:
            scheduler.cancel(job.job_id, store)


def _app(page: str | None = None, params: dict | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    if page is not None:
        if params:
            at.query_params.update(params)
        at.switch_page(page).run()
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ------------------------------------------------------------------ every page
@pytest.mark.parametrize("page", (None, *PAGES))
def test_page_with_empty_store(empty_store, page):
    at = _app(page)
    _ok(at)
    assert len(empty_store) == 0


@pytest.mark.parametrize("page", (None, *PAGES))
def test_page_with_stored_results(stored_store, page):
    at = _app(page)
    _ok(at)
    assert at.title


@pytest.mark.parametrize("page", (None, *PAGES))
def test_page_with_the_shipped_bundle(bundle_store, page):
    at = _app(page)
    _ok(at)
    assert at.title


def _chart_titles(at: AppTest) -> list[str]:
    """Each chart's title as one line (long titles are broken with <br> so they fit a projector)."""
    return [json.loads(c.proto.spec)["layout"]["title"]["text"].replace("<br>", " ") for c in at.get("plotly_chart")]


def test_home_shows_the_collapse_from_the_shipped_bundle(bundle_store):
    at = _app()
    _ok(at)
    titles = _chart_titles(at)
    assert len(titles) == 1 and "Each d against n/d^k" in titles[0]


def test_home_draws_the_cpu_grid_on_a_fresh_clone_and_names_it(bundle_store):
    """The shipped results fill the `cpu` grid, d = 8 to 24, and d = 32 at five n (d³/8 … 2d³); some of
    its runs match the `paper` grid's configs at d = 16, 24 and 32 too, and Home must not call that slice the paper
    grid."""
    at = _app()
    _ok(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = sorted({int(trace["name"].split("=")[1]) for trace in spec["data"] if trace.get("name", "").startswith("d =")})
    assert drawn == [8, 12, 16, 20, 24, 32], drawn
    captions = [c.value for c in at.caption]
    assert any("the `cpu` grid" in c and "(d = 8, 12, 16, 20, 24, 32; d = 32 at 5 of 7 n)" in c for c in captions), captions
    assert not any("`paper`" in c for c in captions), captions


def test_home_without_results_says_where_to_get_them(empty_store):
    at = _app()
    _ok(at)
    assert not at.get("plotly_chart")
    assert any("No Figure 2 grid is stored yet" in i.value for i in at.info)


def test_figure2_exponent_table_shows_the_shipped_row_and_names_the_grids_to_run(bundle_store):
    at = _app("pages/2_Figure_2.py", {"preset": "cpu"})
    _ok(at)
    table = at.dataframe[-1].value
    assert list(zip(table["k"], table["q"])) == [(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4), (3, 3)]
    assert all(pd.notna(kappa) or reason for kappa, reason in zip(table["kappa"], table["reason"]))
    assert (table["kappa"].dropna() < table["kernel_kq"][table["kappa"].notna()]).all()


def test_figure2_link_opens_the_collapse_figure_first(bundle_store):
    at = _app("pages/2_Figure_2.py", {"preset": "cpu", "x": "n_over_dk", "baselines": "kernel"})
    _ok(at)
    assert at.radio(key="f2_x").value == "n_over_dk"
    titles = _chart_titles(at)
    # the figure (median lines by default), the κ-axis view, n*(d) on log–log axes, then the grid's heatmap
    assert titles[0] == "Figure 2 against n / d^3: median over seeds, band min–max"
    assert titles[1].startswith("Where each method learns") and titles[2].startswith("n*(d) on log–log axes")
    assert titles[3].startswith("Stored cells")
    names = {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert "kernel baseline" in names and "two-layer baseline" not in names
    assert {f"d = {d}" for d in (8, 12, 16, 20, 24, 32)} <= names  # d = 32's curve, from its shipped cells
    assert any("d = 32 at 5 of 7 n" in w.value for w in at.warning)  # said above κ
    assert at.query_params["x"] == "n_over_dk" and at.query_params["preset"] == "cpu"
    assert at.query_params["stat"] == "median"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["κ (seed median, at 0.9)"] == "2.54" and metrics["theory"] == "κ ≈ k = 3"


def test_figure2_preset_link_selects_every_preset_the_page_shows(bundle_store):
    """?preset= picks each grid the sidebar lists, the `exponents` table included, and the captions name its d."""
    at = _app("pages/2_Figure_2.py", {"preset": "exponents"})
    _ok(at)
    assert at.radio(key="f2_preset").value == "exponents"
    assert any(h.value.startswith("Exponent table") for h in at.header)
    assert at.query_params["preset"] == "exponents"
    assert list(at.radio(key="f2_preset").options) == ["cpu", "paper", "tiny", "exponents", "custom"]
    at = _app("pages/2_Figure_2.py", {"preset": "paper"})  # the shipped runs fill d = 16, 24 and part of 32
    _ok(at)
    assert at.radio(key="f2_preset").value == "paper"
    assert any("d = 16, 24, 32; d = 32 at 5 of 7 n; d = 40 not run yet" in w.value for w in at.warning), [w.value for w in at.warning]


@pytest.mark.slow
def test_figure2_mean_statistic_from_the_url_says_the_bootstrap_splits(bundle_store):
    at = _app("pages/2_Figure_2.py", {"preset": "cpu", "stat": "mean"})
    _ok(at)
    assert at.radio(key="f2_stat").value == "mean"
    assert _chart_titles(at)[0].endswith("mean over seeds ± its standard error, band min–max")
    assert {m.label: m.value for m in at.metric}["κ (seed mean, at 0.9)"] == "1.96"
    assert any("no single interval: the bootstrap splits by seed 4" in c.value for c in at.caption)
    assert {b.label for b in at.get("download_button")} >= {"Table (CSV)", "Figure (interactive HTML)"}


def test_a_stored_run_shows_its_replay_at_once(stored_store):
    at = _app("pages/1_Explore.py", forms.params_from_config(RunConfig(**TINY)))
    _ok(at)
    slider = at.get("select_slider")
    assert slider and slider[0].key == "ex_replay"


def test_home_reports_the_store(stored_store):
    at = _app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["stored results"] == str(len(stored_store)) == "4"
    assert metrics["jobs queued or running"] == "0"


# ------------------------------------------------------------------ Explore
def test_query_params_restore_a_stored_run(stored_store):
    cfg = RunConfig(**TINY)
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    _ok(at)
    assert at.number_input(key="ex_d").value == 4
    assert at.number_input(key="ex_n").value == 256
    assert at.number_input(key="ex_m2").value == 50
    assert at.number_input(key="ex_steps").value == 200
    # served from the store at once, leading with the feature: found p (green) or not yet (blue)
    assert any("Stored result" in s.value and "found p" in s.value for s in [*at.success, *at.info])
    assert {m.label for m in at.metric} >= {"test loss", "feature correlation"}
    assert len(at.get("plotly_chart")) == 5  # feature scatter, prediction, link, loss, correlation
    assert at.button(key="ex_run").disabled
    assert any("all 200 training steps" in m.value or "It stopped" in m.value for m in at.markdown)  # how it ended


def test_every_config_field_round_trips_through_the_url(empty_store):
    cfg = RunConfig(d=5, n=300, k=2, link="0.5,1,0,2", sigma1="square", m1=40, m2=70, arch="two_layer",
                    mode="joint", steps=150, lr=0.002, weight_decay=1e-5, tol=0.0, patience=300, b_scale=3.0,
                    seed=4, n_test=512)
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    _ok(at)
    assert any(cfg.key()[:12] in m.value for m in at.markdown)  # the page's config is exactly this one
    assert forms.build_config(forms.values_from_params(at.query_params).values).config == cfg
    # the controls are RunConfig's declaration: each field set by hand, labelled as declared, in its group
    shown = {w.key: w.label for kind in ("number_input", "selectbox") for w in at.sidebar.get(kind)}
    more = {w.key for kind in ("number_input", "selectbox") for w in at.sidebar.expander[0].get(kind)}
    groups = forms.form_groups()
    assert set(shown) == {f"ex_{spec.name}" for spec in groups[SIDEBAR] + groups[MORE]} and "ex_source" not in shown
    assert all(shown[f"ex_{spec.name}"].startswith(spec.label) for spec in groups[SIDEBAR] + groups[MORE])
    assert more == {f"ex_{spec.name}" for spec in groups[MORE]}


def test_stage2_settings_round_trip_and_joint_mode_greys_them_out(empty_store):
    cfg = RunConfig(d=4, n=256, mode="layerwise", steps=100, steps2=300, lr2=0.5, weight_decay2=1e-3)
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    _ok(at)
    assert at.number_input(key="ex_steps2").value == 300 and not at.number_input(key="ex_lr2").disabled
    assert forms.build_config(forms.values_from_params(at.query_params).values).config == cfg
    assert any("T1/T2 = 100/300" in m.value for m in at.markdown)
    at.selectbox(key="ex_mode").set_value("joint").run()
    _ok(at)
    assert all(at.number_input(key=f"ex_{name}").disabled for name in ("steps2", "lr2", "weight_decay2"))
    assert not at.error and not set(at.query_params) & {"steps2", "lr2", "weight_decay2"}
    assert forms.build_config(forms.values_from_params(at.query_params).values).config.mode == "joint"


def test_changing_a_control_rewrites_the_url(empty_store):
    at = _app("pages/1_Explore.py", forms.params_from_config(RunConfig(**TINY)))
    at.number_input(key="ex_seed").set_value(3).run()
    _ok(at)
    parsed = forms.values_from_params(at.query_params)
    assert parsed.values["seed"] == 3 and parsed.values["d"] == 4


def test_config_survives_a_visit_to_another_page(empty_store):
    at = _app("pages/1_Explore.py", forms.params_from_config(RunConfig(**TINY)))
    at.number_input(key="ex_seed").set_value(5).run()
    at.query_params.clear()
    at.switch_page("pages/3_Results.py").run()
    at.switch_page("pages/1_Explore.py").run()
    _ok(at)
    assert at.number_input(key="ex_seed").value == 5 and at.number_input(key="ex_d").value == 4


def test_invalid_input_shows_an_error_and_launches_nothing(empty_store):
    at = _app("pages/1_Explore.py", forms.params_from_config(RunConfig(**TINY)))
    at.number_input(key="ex_n").set_value(1).run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert any("n must be at least 2" in e for e in errors), errors
    assert not [b for b in at.button if b.key == "ex_run"]  # no Run button while invalid
    at.number_input(key="ex_n").set_value(256).run()
    at.selectbox(key="ex_link").set_value("custom coefficients").run()
    at.text_input(key="ex_link_text").set_value("1, x").run()
    _ok(at)
    assert any("neither a preset" in e.value for e in at.error)
    assert records.list_jobs(empty_store) == []


def test_invalid_url_is_explained(empty_store):
    at = _app("pages/1_Explore.py", {"d": "four", "n": "256", "k": "9"})
    _ok(at)
    assert any("d must be a whole number" in w.value for w in at.warning)
    assert any("feature degree k" in w.value for w in at.warning)
    assert records.list_jobs(empty_store) == []


def test_classroom_link_locks_the_controls(stored_store):
    params = {**forms.params_from_config(RunConfig(**TINY)), forms.LOCK_PARAM: "1"}
    at = _app("pages/1_Explore.py", params)
    _ok(at)
    assert at.number_input(key="ex_d").disabled and at.selectbox(key="ex_mode").disabled
    assert any("Classroom link" in i.value for i in at.info)


def test_classroom_sidebar_says_when_runs_start_warm(empty_store, monkeypatch):
    from test_warmup import _row

    from hierpoly.jobs import warmup

    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    monkeypatch.delenv("HIERPOLY_WARM")
    monkeypatch.setattr(scheduler, "spawn", lambda *args: pytest.fail("a live warm worker is not started again"))
    _row(empty_store, state="compiling")  # this process stands for a warm worker that is compiling
    at = _app("pages/4_Learn.py")
    _ok(at)
    assert "Preparing runs (compiling)…" in [c.value for c in at.sidebar.caption]
    _row(empty_store, state="ready", seconds=9.0)
    at.run()
    assert "Ready: runs start warm (compiled in 9 s)." in [c.value for c in at.sidebar.caption]
    assert warmup.readiness(empty_store).ready and records.list_jobs(empty_store) == []


@pytest.mark.slow
@pytest.mark.process  # a real worker
def test_explore_launches_a_run_and_shows_it(empty_store):
    cfg = RunConfig(**{**TINY, "seed": 7})
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    at.button(key="ex_run").click().run()
    _ok(at)
    job = records.for_key(cfg.key(), empty_store)
    assert job is not None and job.status in ("queued", "running", "done")
    seen_progress = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        at.run()
        _ok(at)
        seen_progress |= bool(at.get("progress"))
        if _playback(at) is not None:  # the browser plays the training back, then reports it played
            _ok(_played(at, "ex"))
        if any("Stored result" in s.value for s in [*at.success, *at.info]):
            break
        time.sleep(1.0)
    else:
        pytest.fail(f"no result after 180 s: {records.for_key(cfg.key(), empty_store)}")
    assert seen_progress or job.status == "done"
    assert empty_store.has(cfg.key())
    assert len(at.get("plotly_chart")) == 5
    assert [d for d in at.get("download_button")]


@pytest.mark.slow
@pytest.mark.process  # a real worker
def test_explore_cancel(empty_store):
    cfg = RunConfig(**{**TINY, "steps": 20000, "tol": 0.0, "seed": 8})
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    at.button(key="ex_run").click().run()
    at.button(key="ex_cancel").click().run()
    _ok(at)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        at.run()
        if any("cancelled" in e.value for e in at.error):
            break
        time.sleep(1.0)
    else:
        pytest.fail(f"not cancelled: {records.for_key(cfg.key(), empty_store)}")
    assert records.for_key(cfg.key(), empty_store).status == "cancelled"
    assert not empty_store.has(cfg.key())
    assert not at.button(key="ex_run").disabled  # it can be run again


# ------------------------------------------------------------------ Results
def test_results_select_compare_and_delete(stored_store):
    key = RunConfig(**TINY).key()
    at = _app("pages/3_Results.py")
    at.multiselect(key="res_selection").set_value([key]).run()
    _ok(at)
    assert len(at.get("plotly_chart")) == 1
    assert {b.label for b in at.get("download_button")} >= {"Export selection as a bundle"}
    assert at.button(key="res_delete").disabled  # needs the confirmation first
    at.checkbox(key="res_confirm").check().run()
    at.button(key="res_delete").click().run()
    _ok(at)
    assert not stored_store.has(key)
    assert len(stored_store) == 3


def test_results_offers_to_delete_unreadable_results(stored_store):
    stored_store._cache.set("0" * 64, b"not a result")  # e.g. left by an older version
    at = _app("pages/3_Results.py")
    _ok(at)
    assert any("1 stored results cannot be read" in w.value for w in at.warning)
    assert len(at.multiselect(key="res_selection").options) == 4  # the readable ones are all there
    at.button(key="res_delete_unreadable").click().run()
    _ok(at)
    assert not stored_store.has("0" * 64) and len(stored_store) == 4
    assert not at.warning


def test_results_filters(stored_store):
    at = _app("pages/3_Results.py")
    at.multiselect(key="res_filter_n").set_value([128]).run()
    _ok(at)
    assert len(at.multiselect(key="res_selection").options) == 1


# ------------------------------------------------------------------ Figure 2
def test_figure2_shows_whatever_cells_are_stored(stored_store):
    at = _app("pages/2_Figure_2.py")
    at.radio(key="f2_preset").set_value("tiny").run()
    _ok(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # heatmap and the two-panel figure
    assert any("3 of" in m.value and "runs stored" in m.value for m in at.markdown)
    at.radio(key="f2_x").set_value("n_over_dk").run()
    _ok(at)
    assert [b for b in at.get("download_button")]


@pytest.mark.slow
def test_figure2_queues_missing_cells(empty_store):
    at = _app("pages/2_Figure_2.py")
    at.radio(key="f2_preset").set_value("custom").run()
    at.text_input(key="f2_ds").set_value("4").run()
    at.radio(key="f2_by").set_value("n values").run()
    at.text_input(key="f2_ns").set_value("64").run()
    at.number_input(key="f2_seeds_custom").set_value(1).run()
    at.checkbox(key="f2_baselines").uncheck().run()
    at.number_input(key="f2_steps").set_value(200).run()
    _ok(at)
    at.button(key="f2_queue").click().run()
    _ok(at)
    assert len(records.list_jobs(empty_store)) == 1
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(empty_store) == 0:
        time.sleep(1.0)
        at.run()
        _ok(at)
    assert len(empty_store) == 1
    at.run()
    assert any("1 of 1 runs stored" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2


def test_figure2_custom_grid_errors(empty_store):
    at = _app("pages/2_Figure_2.py")
    at.radio(key="f2_preset").set_value("custom").run()
    at.text_input(key="f2_ds").set_value("6, eight").run()
    _ok(at)
    assert any("'eight' is not a number" in e.value for e in at.error)
    assert records.list_jobs(empty_store) == []


# ------------------------------------------------------------------ Learn
def test_learn_tour(empty_store):
    at = _app("pages/4_Learn.py")
    _ok(at)
    assert len(at.get("plotly_chart")) >= 4
    at.slider(key="learn_d").set_value(16).run()
    _ok(at)
    link = [c.value for c in at.code if "lock=1" in c.value]
    assert link and "/Explore?" in link[0] and link[0].startswith("http")
    # this test's server listens on 127.0.0.1 only (.streamlit/config.toml): no class can reach it, and the page
    # says so, gives the command that serves one and shows no QR code that would lead nowhere
    assert any("listens on 127.0.0.1 only" in w.value for w in at.warning), [w.value for w in at.warning]
    assert any(c.value == forms.serve_command(8501) or c.value.startswith(forms.SERVE_COMMAND) for c in at.code)
    assert not at.get("image")
    at.text_input(key="learn_base").set_value("http://10.0.0.5:8501").run()
    _ok(at)
    assert any(c.value.startswith("http://10.0.0.5:8501/Explore?") for c in at.code)
    assert at.get("image")  # the QR code of the teacher's base


def test_learn_ends_by_reusing_the_tour_runs_feature(bundle_store):
    at = _app("pages/4_Learn.py")
    _ok(at)
    headers = [h.value for h in at.header]
    assert [h for h in headers if h[0].isdigit()][-1] == "5 · Reuse the learned feature", headers
    assert any(h.value == "Use this feature for a new target" for h in at.subheader)
    assert at.selectbox(key="learn_tr_n").value == 64 and not at.button(key="learn_tr_run").disabled


@pytest.mark.process
def test_pages_never_import_jax(tmp_path):
    """Every page runs in a fresh interpreter without loading JAX (the web server must not hold the GPU)."""
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('app.py', default_timeout=60); at.run()\n"
        f"for page in {list(PAGES)!r}:\n"
        "    at.switch_page(page).run()\n"
        "    assert not at.exception, (page, [e.value for e in at.exception])\n"
        "print('JAX LOADED' if 'jax' in sys.modules else 'NO JAX')\n"
    )
    env = dict(os.environ, HIERPOLY_CACHE_DIR=str(tmp_path / "store"), HIERPOLY_LOAD_PRECOMPUTED="0")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "NO JAX"


# ------------------------------------------------------------------ bad numbers: one line, never a traceback
@pytest.mark.parametrize("params", [{"d": "4", "n": "256", "seed": "99999999999999999999"},
                                    {"d": "4", "n": "256", "seed": "2147483648"},
                                    {"d": "4", "n": "1e308"}, {"d": "4", "n": "256", "lr": "inf"}])
def test_bad_numbers_in_the_url_are_one_line_each(empty_store, params):
    at = _app("pages/1_Explore.py", params)
    _ok(at)
    messages = [m.value for m in [*at.warning, *at.error]]
    assert messages and all("\n" not in m and "Traceback" not in m for m in messages), messages
    assert records.list_jobs(empty_store) == []


@pytest.mark.parametrize("text", ["inf", "1e308", "-1"])
def test_figure2_custom_multiples_out_of_range_are_one_line(empty_store, text):
    at = _app("pages/2_Figure_2.py")
    at.radio(key="f2_preset").set_value("custom").run()
    at.text_input(key="f2_mult").set_value(text).run()
    _ok(at)
    errors = [e.value for e in at.error]
    assert any("multiples" in e and "\n" not in e for e in errors), errors
    assert records.list_jobs(empty_store) == []


def test_learns_seed_box_at_2_to_the_31_gives_a_line_not_a_traceback(empty_store):
    at = _app("pages/4_Learn.py")
    box = at.number_input(key="learn_c_seed")
    assert box.max == forms.MAX_SEED
    try:
        box.set_value(2**31).run()
    except Exception as err:  # AppTest itself may refuse a value above the box's max, as the browser does
        assert "max" in str(err).lower() or "2147483647" in str(err), err
        return
    _ok(at)


def test_explore_offers_the_feature_for_a_new_target(bundle_store):
    from hierpoly.views import tour

    at = _app("pages/1_Explore.py", forms.params_from_config(tour.tour_config()))  # the shipped tour run found p
    _ok(at)
    assert any(h.value == "Use this feature for a new target" for h in at.subheader)
    assert at.selectbox(key="ex_tr_link").value == "quadratic"
    assert not at.button(key="ex_tr_run").disabled
    table = at.table[0].value
    assert list(table.index) == ["transfer", "scratch", "kernel"] and set(table["test loss ± SE"]) == {"not run"}


def test_explore_offers_no_transfer_from_a_run_that_did_not_find_p(stored_store):
    cfg = GRID.config(4, 32, 0)  # n = d³/2: too few samples to find p
    assert stored_store.get(cfg.key()).metrics["feature_corr"] < 0.9
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    _ok(at)
    assert any(h.value == "Use this feature for a new target" for h in at.subheader)
    assert any("Offered only from a run that found p" in c.value for c in at.caption)
    assert not any(b.key == "ex_tr_run" for b in at.button) and not any(s.key == "ex_tr_link" for s in at.selectbox)


def test_explore_has_no_transfer_for_a_baseline(stored_store):
    at = _app("pages/1_Explore.py", forms.params_from_config(GRID.config(4, 32, 0, arch="kernel")))
    _ok(at)
    assert not any(h.value == "Use this feature for a new target" for h in at.subheader)


@pytest.mark.slow
@pytest.mark.process  # real workers
def test_explore_fits_a_new_link_and_shows_the_comparison(bundle_store):
    from hierpoly.study.transfer import transfer_runs
    from hierpoly.views import tour

    cfg = tour.tour_config()  # the shipped tour run found p: it lends its feature
    at = _app("pages/1_Explore.py", forms.params_from_config(cfg))
    at.selectbox(key="ex_tr_n").set_value(16).run()
    at.button(key="ex_tr_run").click().run()
    _ok(at)
    runs = transfer_runs(cfg, "quadratic", 16, cfg.seed)
    deadline = time.monotonic() + 300
    store = Store(bundle_store)
    while time.monotonic() < deadline and not all(store.has(c.key()) for c in runs.values()):
        time.sleep(2.0)
    at.run()
    _ok(at)
    table = at.table[0].value
    assert all("±" in value for value in table["test loss ± SE"]), table
    assert len(at.get("plotly_chart")) == 6  # the run's five and the transfer's fit


# ------------------------------------------------------------------ gallery
def _texts(at: AppTest) -> list[str]:
    kinds = ("markdown", "success", "info", "warning", "error", "caption", "header", "subheader", "title", "code")
    return [e.value for kind in kinds for e in at.get(kind)] + [b.label for b in at.button]


def test_learn_shows_the_shipped_transfer_grid_with_its_claim_read_from_the_medians(bundle_store):
    at = _app("pages/4_Learn.py")
    _ok(at)
    texts = _texts(at)
    assert "Half of E[h′²] explained by the transfer: N = 16 at d = 8, N = 16 at d = 12, N = 16 at d = 16, " \
           "N = 16 at d = 20 (largest over smallest: 1×)." in texts, texts
    assert any("median test loss over seeds is below both scratch's and the kernel's in 20 of 20 stored cells. "
               "Even its worst seed beats the best seed of both in every one." in t for t in texts), texts
    assert any("Reusing the learned feature for quadratic" in c.proto.spec for c in at.get("plotly_chart"))


def test_gallery_on_a_fresh_store_shows_the_shipped_tour_run_and_no_run_wording(bundle_store, monkeypatch):
    """Every Learn step has something to show from the shipped bundles, and nothing invites a run or a link."""
    from hierpoly.views import tour

    monkeypatch.setenv("HIERPOLY_MODE", "gallery")
    at = _app("pages/4_Learn.py")
    _ok(at)
    assert Store(bundle_store).has(tour.tour_config().key())  # tour.zip ships the tour's run
    assert any("found p (correlation" in s.value for s in at.success)  # step 3: the stored run, feature first
    assert len(at.get("plotly_chart")) >= 6  # Hermite, p, tail, the run's scatter and correlation, sample counts
    texts = _texts(at)
    assert not [t for t in texts if "lock=1" in t or "classroom link" in t.lower()], texts
    assert not [t for t in texts if "Train it" in t or "Press Run" in t], texts
    at = _app("pages/1_Explore.py", {"d": "5", "n": "100"})  # a run the gallery has not got
    _ok(at)
    assert not [t for t in _texts(at) if "Run" in t.replace("Running", "")], _texts(at)
    at = _app("pages/3_Results.py")
    _ok(at)
    assert not [t for t in _texts(at) if "delete" in t.lower() or str(bundle_store) in t], _texts(at)


def _playback(at) -> dict | None:
    """The data the page sent its playback (the frames the browser plays), or None when it shows none."""
    sent = [e.proto for e in at.main if getattr(e, "proto", None) is not None
            and getattr(e.proto, "component_name", "") == "hierpoly_playback"]
    return json.loads(sent[0].json) if sent else None


def _played(at, prefix: str) -> AppTest:
    """The browser's report that it played the frames, as its trigger message (the playback's JS sends it)."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    (element,) = [e for e in at.main if getattr(e, "key", None) == f"{prefix}_playback"]
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=_make_trigger_id(element.proto.id, "events"),
                                      json_trigger_value=json.dumps([{"event": "played",
                                                                      "value": _playback(at)["key"]}])))
    return at._run(states)


def test_a_run_this_page_waited_for_plays_its_snapshots_back_then_shows_the_result(stored_store):
    """Training that ended before the page drew it live is played back from its stored snapshots, with the phases
    it went through; when the browser reports the frames played, the page shows the result."""
    from hierpoly.views import widgets

    cfg = RunConfig(**TINY)
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.session_state["watching"] = {cfg.key(): set()}  # what a click on Run leaves (widgets.watch)
    at.query_params.update(forms.params_from_config(cfg))
    at.switch_page("pages/1_Explore.py").run()
    _ok(at)
    assert any("too quick to watch live" in s.value for s in at.success)
    assert any("✓ trained" in m.value and "▶ replay" in m.value for m in at.markdown)
    assert not any(s.value.startswith("Stored result") for s in [*at.success, *at.info])  # after the frames
    sent = _playback(at)
    steps = [re.search(r"<figcaption>replay · Step ([0-9,]+):", frame).group(1) for frame in sent["frames"]]
    assert sent["key"] == cfg.key() and sent["seconds"] == widgets.FRAME_SECONDS
    assert steps[0] == "0" and len(steps) == len(set(steps)) == widgets.REPLAY_FRAMES, steps
    assert int(steps[-1].replace(",", "")) == stored_store.get(cfg.key()).meta["steps"]  # ends where training did
    at.run()  # a rerun mid-playback: the same playback, the browser keeps its place
    assert _playback(at) == sent
    _ok(_played(at, "ex"))
    assert _playback(at) is None
    assert any(s.value.startswith("Stored result") for s in [*at.success, *at.info])
    assert not any("too quick to watch live" in s.value for s in at.success)  # played once
    at.run()
    assert any(s.value.startswith("Stored result") for s in [*at.success, *at.info])


@pytest.mark.parametrize("trained, plays", ((0.7, True), (30.0, False)))
def test_a_run_sent_live_plays_back_only_if_its_training_was_brief(stored_store, trained, plays):
    """A page that sent several live frames of a run plays it back when the training lasted under a few redraws (a
    starved browser paints one frame of such a run however many were sent), and not when it watched a long run."""
    from hierpoly.views import widgets

    cfg = RunConfig(**TINY)
    result = stored_store.get(cfg.key())
    stored_store.put(dataclasses.replace(result, meta={**result.meta, "seconds": trained}), overwrite=True)
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.session_state["watching"] = {cfg.key(): set(range(widgets.LIVE_FRAMES + 2))}  # live frames sent
    at.query_params.update(forms.params_from_config(cfg))
    at.switch_page("pages/1_Explore.py").run()
    _ok(at)
    assert any("too quick to watch live" in s.value for s in at.success) is plays
    assert any(s.value.startswith("Stored result") for s in [*at.success, *at.info]) is not plays


@pytest.mark.parametrize("page, button", (("pages/1_Explore.py", "ex_run"), ("pages/4_Learn.py", "learn_run")))
def test_a_click_that_arrives_after_a_classmates_run_ended_still_plays_it_back(stored_store, page, button):
    """The page offered Run; a classmate's shared job for the same key ended before this click reached the
    server, so the button is disabled by then and Streamlit drops the click. The page still plays back."""
    from hierpoly.views import tour

    cfg = RunConfig(**TINY) if page.endswith("Explore.py") else tour.tour_config()
    # the tour's key holding TINY's history and snapshots (its first block has the tour's other width)
    result = dataclasses.replace(stored_store.get(RunConfig(**TINY).key()), config=cfg, first_block={})
    stored_store.delete(cfg.key())
    at = _app(page, forms.params_from_config(cfg) if page.endswith("Explore.py") else None)
    _ok(at)
    assert not at.button(key=button).disabled  # offered
    stored_store.put(result)  # the classmate's run ends
    at.button(key=button).click().run()
    _ok(at)
    assert any("too quick to watch live" in s.value for s in at.success), [s.value for s in at.success]
    at = _app(page, forms.params_from_config(cfg) if page.endswith("Explore.py") else None)  # a fresh visitor
    _ok(at)
    assert not any("too quick to watch live" in s.value for s in at.success)


def test_figure2_reads_each_ratio_as_measured_and_says_which_is_flat(bundle_store):
    """The page's finite-d readings are the JSON's: the per-d table, which ratio is flat per grid, and the
    'below k' caption only where κ and every local slope lie below k."""
    from hierpoly.study import figure2, presets, readings

    at = _app("pages/2_Figure_2.py", {"preset": "cpu"})
    _ok(at)
    report = figure2.figure2_json(presets.preset("cpu"), Store(bundle_store))[0]
    rd = {**report["readings"], "per_d": report["per_d"]}
    texts = _texts(at)
    for sentence in [*readings.why_below_k(rd), readings.flatness_sentence(rd, 0.9)]:
        assert any(sentence in t for t in texts), sentence
    assert any(readings.slope_caption(report["kappa"], 3) in c.value for c in at.caption)
    assert "lie below the theory's k = 3" in readings.slope_caption(report["kappa"], 3)
    per_d = next(df.value for df in at.dataframe if "n*/C(d+3,3)" in df.value.columns)
    assert list(per_d["d"]) == [8, 12, 16, 20, 24, 32]
    # the exponent table: one line per grid on which ratio is flat at 0.9
    facts = next(t for t in texts if t.startswith("**Where a row departs"))
    assert facts.count("(slopes of the log ratio against log d over d =") + facts.count("no ratio can be read") == 7
