"""The page-side views without Streamlit: progress phases, feature snapshots, time estimates, form values, links."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hierpoly.config import RunConfig
from hierpoly.progress import Progress
from hierpoly.views import forms, monitor, plots, widgets


def _row(step, phase="training", fraction=None, sample=(), seconds=None):
    return Progress(step=step, train_loss=1.0, test_loss=1.0, feature_corr=0.5,
                    seconds=float(step if seconds is None else seconds), phase=phase, fraction=fraction,
                    feature_sample=tuple(sample))


def test_phases_from_records_and_their_json():
    total = 1000
    assert monitor.progress_view("queued", [], total).phase == "queued"
    assert monitor.progress_view("running", [], total).phase == "starting"
    rows = [_row(0, "starting"), _row(0, "compiling")]
    view = monitor.progress_view("running", rows, total)
    assert view.phase == "compiling" and view.fraction == 0.0 and "compiling" in view.text
    assert dict(view.phases) == {"starting": "done", "compiling": "now", "training": "next", "evaluating": "next"}
    rows += [_row(100, seconds=10.0), _row(300, seconds=20.0)]
    view = monitor.progress_view("running", [r.to_json() for r in rows], total)  # dicts from the job table too
    assert view.phase == "training" and view.fraction == pytest.approx(0.3)
    assert view.eta_seconds == pytest.approx(700 * 10.0 / 200)  # the pace after compilation
    assert list(view.history["step"]) == [100, 300]  # only training rows are history
    view = monitor.progress_view("running", [*rows, _row(300, "evaluating", fraction=0.25)], total, n_eval=2**20)
    assert view.phase == "evaluating" and view.fraction == 0.25 and "1,048,576" in view.text


def test_a_resumed_run_says_from_which_step():
    rows = [_row(0, "starting"), _row(0), _row(400, seconds=40.0), _row(400, "resumed"), _row(400, "compiling"),
            _row(600, seconds=50.0), _row(800, seconds=60.0)]
    view = monitor.progress_view("running", [r.to_json() for r in rows], 1000)
    assert view.phase == "training" and view.text.endswith("(resumed from step 400)")
    assert list(view.history["step"]) == [0, 400, 600, 800]
    assert "resumed" not in monitor.progress_view("running", rows[:3], 1000).text


def test_tuning_phase_shows_only_in_runs_that_tune():
    rows = [_row(0, "starting"), _row(0, "tuning", fraction=0.0), _row(0, "tuning", fraction=2 / 3)]
    view = monitor.progress_view("running", [r.to_json() for r in rows], 1000)
    assert view.phase == "tuning" and view.fraction == pytest.approx(2 / 3) and "67% done" in view.text
    assert [name for name, _ in view.phases] == ["starting", "tuning", "compiling", "training", "evaluating"]
    assert dict(view.phases)["tuning"] == "now" and dict(view.phases)["compiling"] == "next"
    view = monitor.progress_view("running", [*rows, _row(0, "tuning", fraction=1.0), _row(0)], 1000)  # final run starts
    assert view.phase == "compiling" and dict(view.phases)["tuning"] == "done"
    view = monitor.progress_view("running", [_row(0, "starting"), _row(0)], 1000)  # a run that does not tune
    assert "tuning" not in dict(view.phases)


def test_step_cap_reached_without_an_evaluating_row_reads_as_evaluating():
    view = monitor.progress_view("running", [_row(0), _row(500), _row(1000)], 1000)
    assert view.phase == "evaluating"


def test_live_snapshot_pairs_the_newest_feature_sample_with_p():
    p = np.arange(8.0)
    rows = [_row(0, "starting", sample=p), _row(10, sample=-p), _row(20, sample=2 * p + 1)]
    snap = monitor.live_snapshot(rows)
    assert snap.step == 20 and snap.corr == pytest.approx(1.0)
    assert monitor.live_snapshot(rows[1:]) is None  # p not reported yet
    assert monitor.live_snapshot(rows[1:2], p=p).corr == pytest.approx(-1.0)


def test_replay_frames_from_stored_snapshots():
    p = np.linspace(-1, 1, 300).astype(np.float32)
    g = np.stack([np.cos(7 * p[:256]), p[:256] * 3]).astype(np.float32)
    result = SimpleNamespace(snapshots={"step": np.array([0, 500]), "g": g}, samples={"p": p})
    frames = monitor.replay_frames(result)
    assert [f.step for f in frames] == [0, 500] and len(frames[1].p) == 256
    assert frames[1].corr == pytest.approx(1.0) and abs(frames[0].corr) < 0.5
    assert monitor.replay_frames(SimpleNamespace(samples={"p": p})) == []  # results stored before snapshots
    fig = plots.snapshot_figure(frames[1])
    assert "Step 500" in fig.layout.title.text


def test_time_estimate_is_the_measured_pace_and_never_zero():
    from hierpoly.jobs import pace, policy

    # stored runs that took 5 s + 1 ms a step + 1e-9 s per unit of work: the fit recovers it
    rows = [dict(arch="three_layer", mode="joint", d=d, n=n, m1=d * d, m2=50, steps_run=steps,
                 seconds=5.0 + 1e-3 * steps + 1e-9 * steps * n * (d * d * d + 50))
            for d in (4, 8) for n in (256, 4096) for steps in (500, 4000)]
    summaries = pd.DataFrame(rows)
    fitted = pace.measured(summaries)
    assert fitted.runs == 8 and fitted.fixed == pytest.approx(5.0, rel=1e-3)
    assert fitted.per_step == pytest.approx(1e-3, rel=1e-3) and fitted.per_work == pytest.approx(1e-9, rel=1e-3)
    cfg = RunConfig(d=4, n=512, m1=16, m2=50, steps=200)
    est = monitor.time_estimate(cfg, summaries)
    train = 200 * (1e-3 + 1e-9 * 512 * (4 * 16 + 50))
    # scoring, apart from the fit: n_eval points and the monitor points of each report row, a forward pass each
    scoring = pace.evaluation_seconds(cfg, fitted, train)
    assert scoring > (cfg.n_eval + 50 * cfg.n_test) * 1e-9 * (4 * 16 + 50) / 3
    expected = pace.STARTUP_S + 5.0 + train + scoring
    assert est.runs == 8 and est.seconds == pytest.approx(expected, rel=1e-3)
    # the classroom budget counts the same seconds the page shows
    assert policy.estimated_seconds(cfg, summaries) == est.seconds
    empty = monitor.time_estimate(cfg, summaries.iloc[:0])  # nothing stored: the defaults, said so
    assert empty.runs == 0 and empty.seconds > pace.STARTUP_S and "default pace" in monitor.estimate_text(empty)
    assert monitor.format_seconds(0.0) == "under 1 s" and monitor.format_seconds(45) == "45 s"


def test_form_values_take_runconfig_defaults_for_fields_the_url_leaves_out():
    start = RunConfig(d=6, n=864, m2=200, steps=1000)
    cfg = RunConfig(d=8, n=512)  # m2 = 1000 and steps = 4000 by default: absent from its link
    values, dropped = forms.form_values(forms.values_from_params(forms.params_from_config(cfg)).values, start)
    assert dropped == {} and values["m2"] == 1000
    assert forms.build_config(values).config == cfg
    values, _ = forms.form_values({}, start)  # no link: the start config, derived fields left empty
    assert values["m2"] == 200 and values["steps"] == 1000 and values["m1"] is None
    assert forms.build_config(values).config == start
    values, dropped = forms.form_values({"d": 4, "n": 64, "mode": "sideways"}, start)
    assert values["mode"] == "joint" and "mode" in dropped


def test_classroom_base_follows_the_address_the_server_listens_on():
    base = forms.classroom_base("http://10.0.0.5:8501/", "http://127.0.0.1:8501/Learn", "127.0.0.1", None, 8501)
    assert (base.base, base.source, base.reachable) == ("http://10.0.0.5:8501", "the base URL you set", True)
    # listening on loopback only: the link works on this machine alone, and says so
    local = forms.classroom_base("", "http://127.0.0.1:8501/Learn", "127.0.0.1", "192.168.1.20", 8501)
    assert local.base == "http://127.0.0.1:8501" and not local.reachable and "127.0.0.1" in local.source
    assert forms.listens_on_loopback_only("::1") and not forms.listens_on_loopback_only("0.0.0.0")
    # every interface: the browser's address, else this machine's network address
    assert forms.classroom_base("", "http://127.0.0.1:8501/Learn", "0.0.0.0", "192.168.1.20", 8501).base == \
        "http://192.168.1.20:8501"
    remote = forms.classroom_base("", "https://class.example.org/app/Learn", "0.0.0.0", "192.168.1.20", 8501)
    assert remote.base == "https://class.example.org/app" and remote.reachable
    nowhere = forms.classroom_base("", "http://localhost:8501/Learn", "", None, 8501)
    assert not nowhere.reachable
    # bound to one network address: that address
    assert forms.classroom_base("", "http://127.0.0.1:9000/Learn", "10.1.2.3", None, 9000).base == "http://10.1.2.3:9000"
    with pytest.raises(ValueError, match="http://host:port"):
        forms.classroom_base("class.example.org", "", "0.0.0.0", None, 8501)
    assert forms.serve_command(8501) == "HIERPOLY_MODE=classroom streamlit run app.py --server.address 0.0.0.0"
    assert forms.serve_command(9000).endswith("--server.port 9000")
    assert forms.share_url("http://h:1", "Explore", {"d": "4", "lock": "1"}) == "http://h:1/Explore?d=4&lock=1"


def test_outcome_text_in_plain_words():
    cfg = RunConfig(d=4, n=256, steps=200)
    capped = SimpleNamespace(config=cfg, message="reached the step cap of 200", meta={"steps": 200, "extra": {}})
    assert "It ran to the step cap: all 200 training steps" in monitor.outcome_text(capped)
    plateau = SimpleNamespace(config=cfg, message="converged: train loss plateaued at step 120",
                              meta={"steps": 120, "stopped_by": "plateau", "extra": {"lr_drops": 2}})
    assert monitor.outcome_text(plateau).startswith("It stopped on the plateau rule at step 120: the training loss had stopped improving")
    assert "lowering the learning rate 2 times" in monitor.outcome_text(plateau)
    settled = SimpleNamespace(config=cfg, message="converged: the learned feature settled at step 3,000",
                              meta={"steps": 3000, "stopped_by": "feature settled", "extra": {}})
    assert "g had stopped moving (by less than 1.0% over 1,000 steps)" in monitor.outcome_text(settled)
    held = SimpleNamespace(config=dataclasses.replace(cfg, arch="two_layer"), message="ReLU two-layer ...",
                           meta={"steps": 128, "stopped_by": "holdout", "extra": {}})
    assert monitor.outcome_text(held).startswith("It stopped at step 128, where the loss on held-out training rows")


def test_figure2_seed_dots_share_their_d_colour():
    runs = pd.DataFrame([dict(arch="three_layer", d=d, n=n, k=3, seed=s, test_loss=0.5, feature_corr=0.9)
                         for d in (4, 6) for n in (32, 128) for s in (0, 1)])
    from hierpoly.study import cell_stats

    fig = plots.figure2(cell_stats.aggregate(runs), x="n_over_dk", k=3, runs=runs)
    lines = {t.name: t.line.color for t in fig.data if t.mode == "lines+markers" and t.name}
    dots = [t for t in fig.data if t.mode == "markers" and t.legendgroup]
    assert dots and all(d.marker.color == lines[d.legendgroup] for d in dots)
    assert all(t.mode for t in fig.data)  # no trace left to plotly's default markers in its own palette


def test_figure2_lines_are_the_statistic_and_bands_the_seeds_range():
    """Median line (or mean), band from the seeds' min to max: it never leaves the seeds' own values, so
    the correlation band stays in [-1, 1] and the loss band above 0; hollow markers have a legend entry."""
    from hierpoly.study import cell_stats

    corr = {0: 0.99, 1: 0.98, 2: 0.2}  # one seed on a poor feature
    runs = pd.DataFrame([dict(arch="three_layer", d=4, n=n, k=3, seed=s, test_loss=0.01 * (s + 1) * n / 32,
                              feature_corr=c, stopped_by="step cap" if s == 2 else "feature settled")
                         for n in (32, 128) for s, c in corr.items()])
    cells = cell_stats.aggregate(runs)
    for statistic, want in (("median", 0.98), ("mean", np.mean(list(corr.values())))):
        fig = plots.figure2(cells, runs=runs, statistic=statistic)
        line = next(t for t in fig.data if t.name == "d = 4" and t.xaxis == "x2")
        assert np.allclose(line.y, want)
        band = next(t for t in fig.data if t.fill == "toself" and t.xaxis == "x2")
        assert sorted(set(np.round(band.y, 12))) == [0.2, 0.99]
        loss_band = next(t for t in fig.data if t.fill == "toself" and t.xaxis == "x")
        assert min(loss_band.y) > 0
    names = {t.name for t in fig.data}
    assert {"one seed (stopped on a rule)", "one seed at the step cap"} <= names
    with pytest.raises(ValueError, match="statistic must be one of"):
        plots.figure2(cells, statistic="mode")


def test_kappa_axis_and_n_star_views():
    """log n / log d on the x-axis with k and kq marked; n*(d) with the fitted slope and each local slope."""
    from hierpoly.study import cell_stats

    runs = pd.DataFrame([dict(arch="three_layer", d=d, n=n, k=3, seed=0, test_loss=0.5, feature_corr=n / (n + d**3))
                         for d in (4, 8) for n in (16, 64, 256, 1024)])
    fig = plots.kappa_axis_figure(cell_stats.aggregate(runs), k=3, kq=9)
    line = next(t for t in fig.data if t.name == "d = 8")
    assert np.allclose(line.x, np.log([16, 64, 256, 1024]) / np.log(8))
    assert sorted(s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1) == [3, 9]
    kappa = {"n_star": [{"d": 4, "n_star": 90.0}, {"d": 8, "n_star": 720.0}], "estimate": 3.0,
             "intercept": float(np.log(90.0 / 64)), "local_slopes": [{"d_low": 4, "d_high": 8, "slope": 3.0}]}
    fig = plots.n_star_figure(kappa, k=3)
    fit = next(t for t in fig.data if t.name.startswith("fit"))
    assert np.allclose(np.asarray(fit.y), 90.0 / 64 * np.asarray(fit.x) ** 3)
    assert [a.text for a in fig.layout.annotations] == ["3.00"]


def test_the_job_table_keeps_only_the_newest_feature_sample(tmp_path):
    """Only the newest training row keeps its 256 numbers; rows are read from the last one seen."""
    from hierpoly.jobs import progress_log, records, worker_protocol
    from hierpoly.results.store import Store

    store = Store(tmp_path / "store")
    p = np.linspace(-1, 1, 8)
    for row in (_row(0, "starting", sample=p), _row(10, sample=-p), _row(20, sample=2 * p), _row(20, "evaluating")):
        worker_protocol.add_progress(store, "job", row)
    rows = progress_log.rows(records.table(store), "job")
    assert [len(r.feature_sample) for r in rows] == [8, 0, 8, 0]
    assert progress_log.rows(records.table(store), "job", since=2) == rows[2:]  # read from the last one seen
    snapshot = monitor.live_snapshot(rows)
    assert snapshot.step == 20 and np.allclose(snapshot.g, 2 * p) and np.allclose(snapshot.p, p)


@pytest.mark.parametrize("stage2", [
    dict(steps2=300), dict(lr2=0.25), dict(weight_decay2=1e-3), dict(steps2=7, lr2=2.5, weight_decay2=0.0),
    dict(lr=0.1, lr2=0.1, steps=300, steps2=300),  # repeats stage 1: left out of the link
])
def test_stage2_settings_round_trip_through_the_url(stage2):
    cfg = RunConfig(d=6, n=1000, mode="layerwise", **stage2)
    params = forms.params_from_config(cfg)
    for name in ("steps2", "lr2", "weight_decay2"):
        first = {"steps2": "steps", "lr2": "lr", "weight_decay2": "weight_decay"}[name]
        assert (name in params) == (getattr(cfg, name) not in (None, getattr(cfg, first))), name
    query = forms.url_query(params)
    parsed = forms.values_from_params(dict(pair.split("=") for pair in query[1:].split("&")))
    assert parsed.errors == {}
    values, dropped = forms.form_values(parsed.values, RunConfig(d=4, n=64))
    built = forms.build_config(values).config
    assert dropped == {} and built == cfg and built.key() == cfg.key()
    # a form started from the config itself shows a stage-2 field empty when it only repeats stage 1
    start, _ = forms.form_values({}, cfg)
    assert forms.build_config(start).config == cfg
    assert (start["steps2"] is None) == (cfg.steps2 == cfg.steps)


def test_stage2_form_errors_land_on_their_controls():
    assert forms.field_error("lr2", 0.5) is None  # checked in layer-wise mode, where it exists
    assert "lr2 must be positive" in forms.field_error("lr2", -1.0)
    assert "steps2 must be a whole number" in forms.field_error("steps2", 2.5)
    assert "weight_decay2 must be at least 0" in forms.field_error("weight_decay2", -1.0)
    assert "lr2 must be a number" in forms.values_from_params({"lr2": "fast"}).errors["lr2"]
    check = forms.build_config({"d": 4, "n": 64, "mode": "joint", "steps2": 100})
    assert check.config is None and "applies to layerwise training only" in check.errors[""]


def test_the_home_collapse_draws_the_seed_median():
    from hierpoly.study import cell_stats

    runs = pd.DataFrame([dict(arch="three_layer", d=4, n=64, k=3, seed=s, test_loss=0.5, feature_corr=c)
                         for s, c in enumerate((0.95, 0.97, 0.2))])
    line = plots.collapse_figure(cell_stats.aggregate(runs)).data[0]
    assert list(line.y) == [0.95]  # the mean, 0.707, would be set by the one poor seed


def test_live_phases_say_what_happens_and_the_time_left_is_never_zero():
    view = monitor.progress_view("running", [], 1000)  # the worker process has written nothing yet
    assert view.text.startswith("starting Python and JAX") and dict(view.phases)["starting"] == "now"
    warm = monitor.progress_view("running", [], 1000, warm=True)  # the warm worker has both loaded already
    assert "warm worker" in warm.text and "Python and JAX loaded" in warm.text and "a fresh one" not in warm.text
    queued = monitor.progress_view("queued", [], 1000, warm=True)  # not claimed yet; a ready warm worker will
    assert queued.text.startswith("queued: the warm worker") and dict(queued.phases)["starting"] == "next"
    assert widgets._warm(SimpleNamespace(pid=None), 41) and not widgets._warm(SimpleNamespace(pid=None), None)
    assert widgets._warm(SimpleNamespace(pid=41), 41) and not widgets._warm(SimpleNamespace(pid=7), 41)
    view = monitor.progress_view("running", [_row(0, "starting")], 1000)  # data drawn, scoring the untrained net
    assert view.text.startswith("starting:") and dict(view.phases)["starting"] == "now"
    # one chunk reports all its rows at one time: no pace from them, the stored runs' pace stands in
    rows = [_row(0, "starting"), _row(0), _row(0, "compiling"), _row(16, seconds=5.0), _row(32, seconds=5.0)]
    view = monitor.progress_view("running", rows, 1000, step_seconds=0.01)
    assert view.eta_seconds == pytest.approx(968 * 0.01) and "0 s" not in view.text.replace("10 s", "")
    # a second chunk gives the run its own pace (the first one's time includes compiling)
    view = monitor.progress_view("running", [*rows, _row(64, seconds=5.5)], 1000, step_seconds=0.01)
    assert view.eta_seconds == pytest.approx(936 * 0.5 / 32)
    almost = monitor.progress_view("running", [*rows, _row(64, seconds=5.5), _row(990, seconds=6.0)], 1000)
    assert almost.text.endswith(", under 1 s of training left"), almost.text  # never 'at most under 1 s'


def test_the_live_scatter_never_shows_the_flat_step_0_feature():
    p = np.arange(8.0)
    rows = [_row(0, "starting", sample=p), _row(0, sample=np.zeros(8))]
    assert monitor.live_snapshot(rows) is None  # g = 0 at initialisation: no scatter yet
    assert monitor.live_snapshot([*rows, _row(16, sample=p)]).step == 16


def test_results_say_the_feature_first_then_the_loss_then_the_ending():
    cfg = RunConfig(d=4, n=256, steps=200)
    meta = {"steps": 200, "stopped_by": "step cap", "extra": {}}
    found = SimpleNamespace(config=cfg, message="reached the step cap of 200", meta=meta,
                            metrics={"feature_corr": 0.9628, "test_loss": 0.69, "test_loss_se": 0.05})
    said = monitor.outcome(found)
    assert said.found and said.headline == "The network found p (correlation 0.96)."
    assert said.loss.startswith("Test loss 0.690 ± 0.050") and "heavy-tailed" in said.loss
    assert said.ending.startswith("It ran to the step cap")
    missing = SimpleNamespace(config=dataclasses.replace(cfg, arch="kernel"), message="", meta={},
                              metrics={"feature_corr": 0.41, "test_loss": 0.9})
    assert monitor.outcome(missing).headline.startswith("The kernel method has not found p yet (correlation 0.41")


def test_results_table_names_the_model_and_labels_carry_it():
    from hierpoly.views import catalog

    summaries = pd.DataFrame([dict(key=f"{arch}{mode}" * 4, d=4, n=64, k=3, link="cubic", mode=mode, arch=arch,
                                   m1=16, m2=50, seed=0, steps=10, status="done", created="x")
                              for arch, mode in (("three_layer", "joint"), ("three_layer", "layerwise"),
                                                 ("kernel", "joint"), ("two_layer", "joint"))])
    table = catalog.runs_table(summaries)
    assert sorted(table["model"]) == ["kernel", "network", "network (layer-wise)", "two-layer"]
    assert "model" in catalog.filter_options(table)
    assert catalog.label(table.iloc[0]).split()[0] in ("kernel", "network", "two-layer")
    fig = plots.overlay_figure({"network a": pd.DataFrame({"step": [0, 1], "test_loss": [1.0, 0.5]})}, "test_loss")
    assert fig.data[0].showlegend and fig.data[0].name == "network a"  # one run still gets its label


def test_a_std_link_keeps_its_name_in_the_url_and_labels_and_its_meaning_at_another_d():
    from hierpoly.targets import link_name, raw_link

    cfg = RunConfig(d=10, n=1000, link="std:h1+h2")
    assert cfg.link == raw_link("std:h1+h2", 10) != raw_link("std:h1+h2", 12)  # the store keeps d's coefficients
    params = forms.params_from_config(cfg)
    assert params["link"] == "std:h1+h2" and "std:h1+h2" in forms.run_label(cfg)
    reopened = forms.values_from_params({**params, "d": "12"}).values  # the same link opened at d = 12
    assert RunConfig(**reopened).link == raw_link("std:h1+h2", 12)
    # a monomial is the same run on p and on p/√d (C absorbs the scale): it keeps its plain name
    assert link_name(RunConfig(d=8, n=64, link="std:cubic").link, 8) == "cubic"
    assert link_name("0.5,1", 8) == "0.5,1.0"  # coefficients that are no preset stay coefficients


def test_estimates_state_a_median_and_a_range_that_holds_the_measured_runs():
    from hierpoly.jobs import pace

    # stored runs: 2 s + 1 ms a step, each off the fit by a factor 0.8 to 1.25, stopped at 30–100% of a 4000 cap
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(40):
        steps = int(4000 * rng.uniform(0.3, 1.0))
        rows.append(dict(arch="three_layer", mode="joint", d=6, n=864, m1=36, m2=1000, steps=4000, steps_run=steps,
                         seconds=(2.0 + 1e-3 * steps) * rng.uniform(0.8, 1.25)))
    summaries = pd.DataFrame(rows)
    est = monitor.time_estimate(RunConfig(d=6, n=864, m2=1000, steps=4000), summaries)
    assert est.low < est.median < est.high <= est.seconds
    measured = summaries["seconds"]
    inside = ((measured >= est.low) & (measured <= est.high - pace.STARTUP_S)).mean()  # stored runs: no start
    assert inside >= 0.85, (est, measured.describe())
    text = monitor.estimate_text(est)
    assert text.startswith(f"about {monitor.format_seconds(est.median)} here (") and "–" in text, text
    quick = monitor.estimate_text(pace.Estimate(0.5, est.pace, 0.3, 0.1, 0.4))
    assert quick.startswith("under 1 s here (under 1 s;"), quick  # never 'about under 1 s' or 'up to under 1 s'
    assert monitor.range_text(pace.Estimate(30, est.pace, 10, 0.5, 30)) == "up to 30 s"


def test_log_axes_label_every_tick_in_full_and_long_titles_wrap():
    from hierpoly.views import plots

    ticks = plots.log_ticks([0.03, 0.6])
    assert ticks["ticktext"] == ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5"]
    assert plots.log_ticks([1e-9, 10])["ticktext"][0] == "1e-09"
    assert plots.log_ticks([0, float("nan")]) == {}
    assert all(len(line) <= plots.TITLE_CHARS for line in plots.wrap_title("Where each method learns: score against "
                                                                           "log n / log d, and more words here"))
