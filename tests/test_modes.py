"""Modes: a classroom budget and queue limits that hold on the server, signed locked links, a read-only gallery."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hierpoly.config import RunConfig
from hierpoly.jobs import policy, table as jobs
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
    assert policy.web_limits(SMALL, store) == jobs.QueueLimits(total=20, per_owner=2)
    # the teacher's signed link passes the small budget; the same link edited does not
    assert policy.web_limits(HUGE, store, locked=True, signature=policy.sign(HUGE, store)) is not None
    with pytest.raises(policy.PolicyError, match="changed after it was made"):
        policy.web_limits(HUGE, store, locked=True, signature=policy.sign(SMALL, store))
    monkeypatch.setenv("HIERPOLY_MODE", "local")
    assert policy.web_limits(HUGE, store) is None  # today's behaviour


def test_explore_in_classroom_mode_refuses_with_the_reason(monkeypatch):
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    at = explore(forms.params_from_config(HUGE))
    assert not at.exception and "Classroom mode" in " ".join(c.value for c in at.sidebar.caption)
    at.button(key="ex_run").click().run()
    assert any("classroom mode a run may use" in e.value for e in at.error), [e.value for e in at.error]
    assert jobs.list_jobs() == []


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
        with pytest.raises(jobs.QueueFull, match="at most 2 per visitor"):
            policy.submit_from_web(long[2], store, "alice")
        assert policy.submit_from_web(long[0], store, "alice") == first[0]  # the same live run is no new job
        policy.submit_from_web(long[2], store, "bob")
        with pytest.raises(jobs.QueueFull, match="queue is full"):
            policy.submit_from_web(long[3], store, "carol")
        queued = [j for j in jobs.list_jobs(store) if j.status == "queued"]
        assert queued and all(j.position and "in the queue" in j.message for j in queued)
    finally:
        for job in jobs.list_jobs(store):
            jobs.cancel(job.job_id, store)
            if job.pid:
                try:
                    os.kill(job.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
