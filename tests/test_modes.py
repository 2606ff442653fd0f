"""Modes: a classroom budget and queue limits that hold on the server, signed locked links, a read-only gallery."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from hierpoly.config import RunConfig
from hierpoly.jobs import policy, processes, records, scheduler, worker_protocol
from hierpoly.results.store import Store
from hierpoly.views import forms
from hierpoly.views.system import _clear_store_cache

REPO = Path(__file__).resolve().parent.parent
PAGES = ("app.py", "pages/1_Explore.py", "pages/2_Figure_2.py", "pages/3_Results.py", "pages/4_Learn.py")
SMALL = RunConfig(d=4, n=256, m2=50, steps=200, n_test=256, n_eval=4096)
HUGE = RunConfig(d=40, n=200_000)


def page(path: str, params: dict | None = None) -> AppTest:
    """A page run from the app's entry point, as Streamlit serves it (page links resolve)."""
    _clear_store_cache()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    if path != "app.py":
        at.query_params.update(params or {})
        at.switch_page(path).run()
    return at


def explore(params: dict) -> AppTest:
    return page("pages/1_Explore.py", params)


def test_mode_comes_from_the_environment(monkeypatch):
    assert policy.current_mode() == "local"
    monkeypatch.setenv("HIERPOLY_MODE", "Classroom")
    assert policy.current_mode() == "classroom" and "Classroom mode" in policy.describe()
    monkeypatch.setenv("HIERPOLY_MODE", "public")
    with pytest.raises(policy.PolicyError, match="local, classroom, gallery"):
        policy.current_mode()


def test_signatures_bind_the_config_to_the_store_secret(tmp_path):
    store = Store()
    sig = policy.sign(SMALL, store)
    assert policy.signature_matches(SMALL, sig, store) and len(sig) == 32
    assert (store.directory / "secret.key").stat().st_mode & 0o077 == 0  # readable by the server alone
    edited = RunConfig(**{**SMALL.to_dict(), "n": 512})
    assert not policy.signature_matches(edited, sig, store)
    assert not policy.signature_matches(SMALL, None, store)
    assert not policy.signature_matches(SMALL, sig, Store(tmp_path / "other"))  # another server's secret


def test_classroom_refuses_over_budget_and_edited_locked_configs(monkeypatch):
    store = Store()
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    with pytest.raises(policy.PolicyError, match="classroom mode a run may use 60 s"):
        policy.web_limits(HUGE, store)
    limits = scheduler.QueueLimits(total=20, per_owner=2)  # HIERPOLY_QUEUE_LIMIT, HIERPOLY_VISITOR_JOBS by default
    assert policy.web_limits(SMALL, store) == limits
    # the teacher's signed link passes the small budget, under the same queue limits; the same link edited does not
    assert policy.web_limits(HUGE, store, locked=True, signature=policy.sign(HUGE, store)) == limits
    with pytest.raises(policy.PolicyError, match="changed after it was made"):
        policy.web_limits(HUGE, store, locked=True, signature=policy.sign(SMALL, store))
    monkeypatch.setenv("HIERPOLY_MODE", "local")
    assert policy.web_limits(HUGE, store) is None  # today's behaviour


def test_explore_in_classroom_mode_refuses_with_the_reason(monkeypatch):
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    at = explore(forms.params_from_config(HUGE))
    assert not at.exception and "Classroom mode" in " ".join(c.value for c in at.sidebar.caption)
    # Run is not offered for a run the mode refuses: greyed out, the reason beside it
    assert at.button(key="ex_run").disabled
    reasons = [c.value for c in at.caption if c.value.startswith("Run is off")]
    assert reasons and "classroom mode a run may use" in reasons[0], [c.value for c in at.caption]
    with pytest.raises(policy.PolicyError, match="classroom mode a run may use"):  # and refused if asked anyway
        policy.submit_from_web(HUGE, Store(), "alice")
    assert records.list_jobs() == []
    at = explore(forms.params_from_config(SMALL))  # a run within the budget is offered
    assert not at.button(key="ex_run").disabled


def test_a_click_on_run_checks_each_budget_once(monkeypatch):
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    at = explore(forms.params_from_config(SMALL))
    assert not at.button(key="ex_run").disabled
    checks, launched = [], []

    def counted(name, check):
        return lambda *args, **kw: checks.append(name) or check(*args, **kw)

    monkeypatch.setattr(policy, "web_limits", counted("classroom", policy.web_limits))  # seconds, widths, link
    monkeypatch.setattr(policy, "check_budget", counted("machine", policy.check_budget))  # memory and work
    monkeypatch.setattr(scheduler, "check_budget", counted("machine", scheduler.check_budget))
    monkeypatch.setattr(scheduler, "spawn", lambda store, module, args, log: launched.append(args[0]) or
                        SimpleNamespace(pid=os.getpid()))  # this process stands for the worker
    at.button(key="ex_run").click().run()
    assert not at.exception and not at.error
    assert sorted(checks) == ["classroom", "machine"]
    assert launched == [records.for_key(SMALL.key()).job_id]


def test_explore_refuses_an_edited_locked_link(monkeypatch):
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    store = Store()
    signed = {**forms.params_from_config(SMALL), forms.LOCK_PARAM: "1", policy.SIGNATURE_PARAM: policy.sign(SMALL, store)}
    at = explore(signed)
    assert not at.exception and not at.error and not at.button(key="ex_run").disabled
    edited = {**signed, "n": "100000"}
    at = explore(edited)
    assert any("changed after it was made" in e.value for e in at.error)
    assert at.button(key="ex_run").disabled


@pytest.mark.parametrize("path", PAGES)
def test_gallery_offers_no_run_queue_or_import(path, monkeypatch):
    monkeypatch.setenv("HIERPOLY_MODE", "gallery")
    at = page(path)
    assert not at.exception
    labels = [b.label for b in at.button]
    assert not [lab for lab in labels if any(w in lab for w in ("Run", "Queue", "Import", "Train", "Delete"))], labels
    assert not at.get("file_uploader")


@pytest.mark.process
def test_per_visitor_and_global_queue_limits_hold(monkeypatch):
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    monkeypatch.setenv("HIERPOLY_QUEUE_LIMIT", "3")
    monkeypatch.setenv("HIERPOLY_WORKER_IDLE_S", "2")
    store = Store()
    long = [RunConfig(d=4, n=256, m2=50, n_test=256, n_eval=4096, steps=20_000, patience=10**6, seed=s)
            for s in range(4)]
    try:
        first = [policy.submit_from_web(cfg, store, "alice") for cfg in long[:2]]
        with pytest.raises(scheduler.QueueFull, match="at most 2 per visitor"):
            policy.submit_from_web(long[2], store, "alice")
        assert policy.submit_from_web(long[0], store, "alice") == first[0]  # the same live run is no new job
        policy.submit_from_web(long[2], store, "bob")
        with pytest.raises(scheduler.QueueFull, match="queue is full"):
            policy.submit_from_web(long[3], store, "carol")
        queued = [j for j in records.list_jobs(store) if j.status == "queued"]
        assert queued and all(j.position and "in the queue" in j.message for j in queued)
    finally:
        for job in records.list_jobs(store):
            scheduler.cancel(job.job_id, store)
            if job.pid:
                try:
                    os.kill(job.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# ---------------------------------------------- permissions below the pages
def running_job(store: Store, cfg: RunConfig, owner: str) -> str:
    """A job record that reads as running in this very process (alive, beating): no worker is started."""
    import json
    import socket
    import time

    job_id = "feedc0de" + cfg.key()[:8]
    now = time.time()
    rec = {"job_id": job_id, "key": cfg.key(), "config": cfg.to_dict(), "status": "running", "message": "running",
           "pid": os.getpid(), "pid_start": processes.process_start(os.getpid()), "host": socket.gethostname(),
           "created": now, "updated": now, "heartbeat": now, "total_steps": cfg.total_steps, "owner": owner}
    table = records.table(store)
    table.set(f"job:{job_id}", json.dumps(rec))
    table.set(f"claim:{cfg.key()}", job_id)
    table.set(f"beat:{job_id}", repr(now))
    return job_id


def test_classroom_refuses_delete_import_and_cancelling_anothers_job_when_called_directly(monkeypatch):
    from test_store import make_result

    from hierpoly.results import bundles

    store = Store()
    result = make_result(seed=1)
    store.put(result)
    data = bundles.export_bundle(store, [result.key])
    job_id = running_job(store, SMALL, owner="alice")
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    with pytest.raises(policy.PolicyError, match="may not delete"):
        policy.delete_from_web(store, [result.key])
    with pytest.raises(policy.PolicyError, match="may not import"):
        policy.import_from_web(Store(store.directory.parent / "other"), data)
    with pytest.raises(policy.PolicyError, match="only the runs they started"):
        policy.cancel_from_web(job_id, store, "bob")
    assert store.has(result.key) and records.get(job_id, store).status == "running"
    assert not worker_protocol.stop_requested(store, job_id)
    assert policy.cancel_from_web(job_id, store, "alice")  # one's own run
    assert worker_protocol.stop_requested(store, job_id)
    monkeypatch.setenv("HIERPOLY_MODE", "gallery")
    with pytest.raises(policy.PolicyError, match="may not cancel"):
        policy.cancel_from_web(job_id, store, "alice")
    monkeypatch.setenv("HIERPOLY_MODE", "local")
    assert policy.cancel_from_web(job_id, store, "bob") and policy.delete_from_web(store, [result.key]) == 1


def test_classroom_pages_offer_no_delete_import_or_cancel_of_anothers_job(monkeypatch):
    from test_store import make_result

    store = Store()
    store.put(make_result(seed=1))
    running_job(store, SMALL, owner="alice")
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    at = page("pages/3_Results.py")
    assert not at.exception
    at.multiselect(key="res_selection").set_value([make_result(seed=1).key]).run()
    labels = [b.label for b in at.button]
    assert not [lab for lab in labels if "Delete" in lab or "Import" in lab], labels
    assert not at.get("file_uploader") and not [c for c in at.checkbox if "delete" in c.label]
    at = explore(forms.params_from_config(SMALL))
    assert not at.exception and not [b for b in at.button if b.key == "ex_cancel"]
    monkeypatch.setenv("HIERPOLY_MODE", "local")
    at = explore(forms.params_from_config(SMALL))
    assert [b for b in at.button if b.key == "ex_cancel"]  # local: anyone may cancel


def test_the_6000_wide_layerwise_run_is_refused_in_classroom_mode(monkeypatch):
    store = Store()
    wide = RunConfig(d=4, n=64, m1=6000, m2=6000, mode="layerwise", steps=1, steps2=1, n_test=16, n_eval=16)
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    with pytest.raises(policy.PolicyError, match="at most 4096"):
        policy.submit_from_web(wide, store, "alice")
    # the budget alone refuses it too: two eigen-solves of 6000 × 6000 (it took 27 s; once estimated at 0.003 s)
    monkeypatch.setenv("HIERPOLY_CLASSROOM_MAX_WIDTH", "100000")
    assert policy.estimated_seconds(wide) > 60
    with pytest.raises(policy.PolicyError, match="classroom mode a run may use 60 s"):
        policy.submit_from_web(wide, store, "alice")
    assert records.list_jobs(store) == []
    narrow = RunConfig(d=4, n=64, m1=600, m2=600, mode="layerwise", steps=1, steps2=1, n_test=16, n_eval=16)
    assert policy.estimated_seconds(narrow) < 60  # a cubic, not a cliff


def test_explore_shows_a_bundle_message_holding_markdown_literally():
    from test_store import make_result

    from hierpoly.results import bundles

    hostile = "see [click here](http://evil.example/) ![pixel](http://evil.example/p.png) :red[alarm] $x^2$"
    made = make_result(seed=5, message=hostile)
    source = Store(Store().directory.parent / "source")
    source.put(made)
    bundles.import_bundle(Store(), bundles.export_bundle(source, [made.key]))
    at = explore(forms.params_from_config(made.config))
    assert not at.exception
    rendered = [e.value for kind in ("markdown", "success", "info", "warning", "error", "caption")
                for e in at.get(kind)]
    assert not [text for text in rendered if "[click here](http" in text], rendered  # never a live link
    assert any(r"\[click here\]\(http\:\/\/evil\.example\/\)" in text for text in rendered), rendered
