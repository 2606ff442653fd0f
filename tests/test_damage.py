"""Damage is reported in one line or listed as unreadable, never a traceback; doctor --repair restores the store.

Real files: a database with a garbage header, a garbage job record, a pickled value
row and a deleted value file, made the way a crash, an old version or a person would.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import diskcache
import pytest
from streamlit.testing.v1 import AppTest
from test_store import make_result

from hierpoly import cli
from hierpoly.config import RunConfig
from hierpoly.jobs import doctor_queries, records, scheduler
from hierpoly.results.codec import StoreError, to_bytes
from hierpoly.results.store import Store
from hierpoly.views.system import _clear_store_cache

REPO = Path(__file__).resolve().parent.parent
PICKLED_KEY = "ab" * 32


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(text: str) -> bool:
    return text.strip() != "" and text.strip().count("\n") == 0 and "Traceback" not in text


def old_style_cache(directory: Path) -> diskcache.Cache:
    """The store opened as an older hierpoly or a stranger would: pickle allowed, values over 32 kB in files."""
    return diskcache.Cache(str(directory), eviction_policy="none", disk_min_file_size=2**15)


def damage(kind: str, directory: Path) -> str:
    """Damage a store holding one good result; returns the affected key or job id."""
    store = Store(directory)
    store.put(make_result(seed=1))
    if kind == "database":
        store.close()
        with open(directory / "cache.db", "r+b") as fh:
            fh.write(b"this is no longer a database" * 8)
        return "cache.db"
    if kind == "job record":
        scheduler.submit(make_result(seed=1).config, store)  # stored: a done job, no worker
        records.table(store).set("job:0123456789abcdef", "{not json")
        return "0123456789abcdef"
    if kind == "pickled value":
        old_style_cache(directory).set(PICKLED_KEY, {"a": "pickle"})
        return PICKLED_KEY
    result = make_result(seed=2, n_samples=2000)  # above 32 kB: an old store kept it in a file
    old_style_cache(directory).set(result.key, to_bytes(result))
    for path in directory.glob("*/*/*.val"):
        path.unlink()
    return result.key


def test_damaged_database_is_one_line_everywhere_and_doctor_repairs(cache_dir, capsys):
    damage("database", cache_dir)
    with pytest.raises(StoreError, match="doctor --repair"):
        Store(cache_dir)
    for args in (["jobs"], ["figure2", "--preset", "tiny"], ["run", "--d", "4", "--n", "256"]):
        code, _, err = run_cli(capsys, *args)
        assert code == 1 and one_line(err) and "doctor --repair" in err, (args, err)
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and "store database" in out
    code, out, _ = run_cli(capsys, "doctor", "--repair")
    assert code == 0 and "moved the damaged database" in out, out
    store = Store(cache_dir)
    store.put(make_result(seed=3))
    assert store.has(make_result(seed=3).key)
    assert run_cli(capsys, "doctor")[0] == 0


def test_garbage_job_record_is_listed_and_removed(cache_dir, capsys):
    bad = damage("job record", cache_dir)
    code, out, err = run_cli(capsys, "jobs")
    assert code == 0 and "done" in out and bad in err and one_line(err)
    assert doctor_queries.damaged() == {bad: doctor_queries.damaged()[bad]}
    assert [j.status for j in records.list_jobs()] == ["done"]
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and f"job record {bad}" in out
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert doctor_queries.damaged() == {} and run_cli(capsys, "doctor")[0] == 0


@pytest.mark.parametrize("kind", ["pickled value", "value file"])
def test_unreadable_value_is_listed_never_raised_and_can_be_rerun(kind, cache_dir, capsys):
    key = damage(kind, cache_dir)
    store = Store(cache_dir)
    table = store.summaries()
    assert table.attrs["unreadable"] == [key] and len(table) == 1
    reason = table.attrs["problems"][key]
    assert ("unpickle" in reason) if kind == "pickled value" else ("missing" in reason)
    assert not store.has(key) and len(list(store.results())) == 1
    code, _, err = run_cli(capsys, "figure2", "--preset", "tiny")
    assert code == 0 and "Traceback" not in err
    if kind == "value file":  # a rerun replaces the dangling row
        result = make_result(seed=2, n_samples=2000)
        assert store.get(key) is None
        store.put(result)
        assert store.get(key).metrics == result.metrics and Store(cache_dir).problems() == {}
        return
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and key in out
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert key not in store.keys() and len(store) == 1


@pytest.mark.parametrize("kind", ["database", "job record", "pickled value", "value file"])
@pytest.mark.parametrize("page", ["app.py", "pages/3_Results.py"])
def test_pages_show_a_banner_not_a_traceback(kind, page, cache_dir):
    damage(kind, cache_dir)
    _clear_store_cache()
    at = AppTest.from_file(str(REPO / page), default_timeout=60).run()
    assert not at.exception, at.exception
    shown = " ".join(w.value for w in [*at.warning, *at.error])
    if kind in ("database", "job record"):  # the store or the job table: every page says so
        assert "doctor --repair" in shown, shown
    elif page.endswith("Results.py"):  # one result: the page that lists results says it cannot be read
        assert "cannot be read" in shown, shown
    else:  # one result, on the home page, which lists none: nothing to say there
        assert shown == "", shown


# ------------------------------------------------ salvage per row: nothing readable is lost
SALVAGE_KINDS = ["page", "truncation", "not-text key", "garbage row", "value file"]
RESULTS = 24


def filled(directory: Path) -> list[str]:
    """A store of RESULTS good results, closed (its log checkpointed into cache.db); returns their keys."""
    store = Store(directory)
    results = [make_result(seed=seed, n_samples=300) for seed in range(RESULTS)]
    store.put_many(results)
    store.close()
    return [r.key for r in results]


def damage_rows(kind: str, directory: Path) -> None:
    """Damage a filled store the way a crash, a disk or another program would."""
    db = directory / "cache.db"
    if kind == "page":  # one 4 KB page in the middle of the file overwritten
        pages = db.stat().st_size // 4096
        with open(db, "r+b") as fh:
            fh.seek((pages // 2) * 4096)
            fh.write(bytes(range(256)) * 16)
    elif kind == "truncation":
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size * 6 // 10)
    else:
        other = old_style_cache(directory)
        if kind == "not-text key":
            other.set(("a", "tuple", 1), b"another program's value")
            other.set(b"bytes key", b"another program's value")
        elif kind == "garbage row":
            other.set("cd" * 32, b"not a result at all")
        else:  # an old store's value file, deleted
            result = make_result(seed=99, n_samples=2000)
            other.set(result.key, to_bytes(result))
            for path in directory.glob("*/*/*.val"):
                path.unlink()
        other.close()


def decodable(directory: Path, keys: list[str]) -> set[str]:
    """The keys whose result decodes through the store, as export reads them."""
    try:
        store = Store(directory)
    except StoreError:
        return set()
    out = set()
    for key in keys:
        try:
            if store.get(key) is not None:
                out.add(key)
        except StoreError:
            continue
    store.close()
    return out


@pytest.mark.parametrize("kind", SALVAGE_KINDS)
def test_repair_keeps_every_result_that_decoded_before(kind, cache_dir, capsys):
    keys = filled(cache_dir)
    damage_rows(kind, cache_dir)
    before = decodable(cache_dir, keys)
    if kind not in ("page", "truncation"):
        assert before == set(keys)
    code, out, err = run_cli(capsys, "doctor", "--repair")
    assert "Traceback" not in err, err
    after = decodable(cache_dir, keys)
    assert before <= after, f"lost {len(before - after)} of {len(before)}: {out}"
    if kind == "page":
        assert len(after) >= RESULTS - 3, out  # a page holds part of one or two results, not the store
    if kind == "truncation":
        assert len(after) >= RESULTS // 3, out
    assert code == 0, out
    assert run_cli(capsys, "doctor")[0] == 0


def test_rows_with_keys_that_are_not_text_are_skipped_with_a_note(cache_dir, capsys):
    keys = filled(cache_dir)
    damage_rows("not-text key", cache_dir)
    store = Store(cache_dir)
    table = store.summaries()
    assert sorted(table["key"]) == sorted(keys) and table.attrs["notes"]
    assert "2 row(s)" in table.attrs["notes"][0] and "doctor --repair" in table.attrs["notes"][0]
    code, _, err = run_cli(capsys, "figure2", "--preset", "tiny")
    assert code == 0 and one_line(err) and "not text" in err, err
    code, out, err = run_cli(capsys, "export", "--out", str(cache_dir.parent / "all.zip"))
    assert code == 0 and one_line(err) and "not text" in err and f'"results": {RESULTS}' in out
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and out.count("result row") == 2, out
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert Store(cache_dir).summaries().attrs["notes"] == []


def test_a_value_file_path_out_of_the_store_is_never_read_or_deleted(cache_dir, capsys):
    import sqlite3

    filled(cache_dir)
    damage_rows("garbage row", cache_dir)
    outside = cache_dir.parent / "precious.val"
    outside.write_bytes(b"someone else's file")
    con = sqlite3.connect(str(cache_dir / "cache.db"))
    with con:  # as someone with write access to cache.db could
        con.execute("UPDATE Cache SET mode = 2, filename = '../precious.val', value = NULL WHERE key = ?", ("cd" * 32,))
    con.close()
    reason = Store(cache_dir).problems()["cd" * 32]
    assert "leaves the store" in reason
    code, out, _ = run_cli(capsys, "doctor", "--repair")
    assert code == 0, out
    assert outside.read_bytes() == b"someone else's file"
    assert "cd" * 32 not in Store(cache_dir).keys() and len(Store(cache_dir)) == RESULTS


@pytest.mark.parametrize("page", ["app.py", "pages/3_Results.py"])
def test_pages_skip_rows_whose_key_is_not_text_with_a_note(page, cache_dir):
    filled(cache_dir)
    damage_rows("not-text key", cache_dir)
    _clear_store_cache()
    at = AppTest.from_file(str(REPO / page), default_timeout=60).run()
    assert not at.exception, at.exception
    notes = [w.value for w in at.warning if "not text" in w.value]
    assert len(notes) == 1 and "doctor --repair" in notes[0], [w.value for w in at.warning]


# ------------------------------------------------ doctor's other findings, each found and repaired
NO_SUCH_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # above the kernel's largest pid


def test_value_files_no_result_refers_to_are_removed_and_referenced_ones_kept(cache_dir, capsys):
    big = make_result(seed=5, n_samples=2000)  # above 32 kB: an old store kept its value in a file
    old_style_cache(cache_dir).set(big.key, to_bytes(big))
    (kept,) = [path.relative_to(cache_dir) for path in cache_dir.glob("*/*/*.val")]
    orphan = cache_dir / "ab" / "cd" / "left-behind.val"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"a value whose row is gone")
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and out.count("value file") == 1 and "value file ab/cd/left-behind.val: no result refers" in out
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert not orphan.exists() and (cache_dir / kept).exists()
    assert to_bytes(Store(cache_dir).get(big.key)) == to_bytes(big) and run_cli(capsys, "doctor")[0] == 0


def test_entries_of_no_job_are_removed_and_a_jobs_own_kept(cache_dir, capsys):
    store = Store(cache_dir)
    store.put(make_result(seed=1))
    job_id = scheduler.submit(make_result(seed=1).config, store)  # stored: a done job, no worker
    t = records.table(store)
    t.set(f"progress:{job_id}", "[]")
    strays = ["claim:" + "ef" * 32, "progress:0000000000000000", "beat:0000000000000000", "cancel:0000000000000000"]
    t.set(strays[0], "0000000000000000")
    for name in strays[1:]:
        t.set(name, "1")
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and sorted(line.split(":")[0] for line in out.splitlines() if "belongs to no job" in line) == [
        f"job entry {name.split(':')[0]}" for name in sorted(strays)]
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert not any(name in t for name in strays) and f"progress:{job_id}" in t
    assert [job.job_id for job in records.list_jobs(store)] == [job_id] and run_cli(capsys, "doctor")[0] == 0


def test_a_stale_job_is_recorded_failed_and_the_queue_behind_it_started(cache_dir, capsys, monkeypatch):
    launched = []
    monkeypatch.setattr(scheduler, "spawn", lambda store, module, args, log: launched.append(args[0]) or
                        SimpleNamespace(pid=os.getpid()))  # this process stands for each worker
    store = Store(cache_dir)
    first = scheduler.submit(RunConfig(d=4, n=256, m2=50, steps=200), store)
    second = scheduler.submit(RunConfig(d=4, n=256, m2=50, steps=200, seed=1), store)
    t = records.table(store)
    t.set(f"job:{first}", json.dumps(dict(json.loads(t.get(f"job:{first}")), pid=NO_SUCH_PID, pid_start=None)))
    code, out, _ = run_cli(capsys, "doctor")  # checking records nothing
    assert code == 1 and f"stale job {first}: worker lost: process {NO_SUCH_PID} is gone -> mark it failed" in out
    assert json.loads(t.get(f"job:{first}"))["status"] == "running" and launched == [first]
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert json.loads(t.get(f"job:{first}"))["status"] == "failed"
    assert launched == [first, second] and records.get(second, store).status == "running"
    assert run_cli(capsys, "doctor")[0] == 0


def test_a_damaged_job_table_is_moved_aside_and_results_kept(cache_dir, capsys):
    store = Store(cache_dir)
    results = [make_result(seed=seed) for seed in range(3)]
    store.put_many(results)
    scheduler.submit(results[0].config, store)
    records.forget_table(store)
    db = cache_dir / "jobs" / "cache.db"
    with open(db, "r+b") as fh:
        fh.write(b"this is no longer a database" * 8)
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and f"job table {db}:" in out and "move it aside and start an empty job table" in out
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    (moved,) = [path for path in db.parent.glob("cache.db.damaged-*") if not path.name.endswith(("-wal", "-shm"))]
    assert moved.read_bytes().startswith(b"this is no longer a database")  # kept aside, not deleted
    assert records.list_jobs(Store(cache_dir)) == [] and sorted(Store(cache_dir).keys()) == sorted(r.key for r in results)
    assert run_cli(capsys, "doctor")[0] == 0
