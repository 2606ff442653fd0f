"""Nothing lost, nothing hidden: salvage from every leaf page, rows whose key is not text, links and leftovers.

Real damage on real files: random bytes over the results table's root page and over
the header page, rows with NULL, integer, blob and pickled keys written into both
databases with plain SQLite (as another program would), a value file that is a link
out of the store, a worker's reserve file left by kill -9.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_bundles import rezip, unzip
from test_damage import REPO, RESULTS, decodable, filled, old_style_cache, one_line, run_cli
from test_full_disk import disk, three_results_then_a_full_disk  # noqa: F401 (disk: a fixture)
from test_store import make_result

from hierpoly.jobs import doctor, doctor_queries, records, scheduler
from hierpoly.results import bundles, pagescan
from hierpoly.results import store as store_module
from hierpoly.results.codec import StoreError
from hierpoly.results.store import Store
from hierpoly.views.system import _clear_store_cache

PAGES = ("app.py", "pages/1_Explore.py", "pages/2_Figure_2.py", "pages/3_Results.py", "pages/4_Learn.py")
PAGE = 4096  # SQLite's page size, as diskcache leaves it


def table_root(db: Path) -> int:
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'Cache'").fetchone()[0]
    finally:
        con.close()


def overwrite_page(db: Path, number: int) -> None:
    with open(db, "r+b") as fh:
        fh.seek((number - 1) * PAGE)
        fh.write(os.urandom(PAGE))


# ------------------------------------------------ salvage from the leaf pages
@pytest.mark.parametrize("which", ["root page", "header page"])
def test_repair_keeps_every_result_when_the_tree_cannot_be_walked(which, cache_dir, capsys):
    keys = filled(cache_dir)
    db = cache_dir / "cache.db"
    root = table_root(db)
    assert root > 1  # an interior page: the rows live on the leaves below it
    overwrite_page(db, root if which == "root page" else 1)
    assert len(decodable(cache_dir, keys)) < len(keys)  # SQLite alone no longer reaches them
    code, out, err = run_cli(capsys, "doctor", "--repair")
    assert code == 0 and "Traceback" not in err, out + err
    assert f"kept {len(keys)} results, lost 0" in out, out
    assert decodable(cache_dir, keys) == set(keys)
    assert run_cli(capsys, "doctor")[0] == 0


def test_a_page_scan_reads_rows_and_their_overflow_chains_without_sqlite(cache_dir):
    keys = filled(cache_dir)
    db = cache_dir / "cache.db"
    overwrite_page(db, 1)
    found = pagescan.scan(db)
    assert found.page_size == PAGE  # guessed: the header is gone
    assert sorted(row.key for row in found.rows if row.text_key) == sorted(keys)
    assert all(len(row.value) > PAGE for row in found.rows)  # each value spans overflow pages


def test_a_broken_overflow_chain_costs_its_row_only(cache_dir):
    keys = filled(cache_dir)
    db = cache_dir / "cache.db"
    size = db.stat().st_size // PAGE
    with open(db, "r+b") as fh:  # the last page: the end of some row's chain
        fh.seek((size - 1) * PAGE)
        fh.write(b"\xff" * PAGE)
    kept = doctor.salvage(cache_dir)
    assert len(kept.results) >= len(keys) - 1
    assert len(kept.results) + kept.lost + kept.damaged_cells >= len(keys)


def test_after_a_salvage_the_shipped_results_to_reload_are_counted(cache_dir, tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    other = Store(tmp_path / "other")
    other.put_many([make_result(seed=s) for s in (50, 51)])
    bundles.write_bundle(other, other.keys(), shipped / "a.zip")
    store = Store(cache_dir)
    store.put(make_result(seed=50))
    assert bundles.shipped_missing(store, shipped) == 1


def test_repair_says_which_shipped_results_come_back(cache_dir, tmp_path, capsys, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    other = Store(tmp_path / "other")
    other.put_many([make_result(seed=s) for s in (50, 51)])
    bundles.write_bundle(other, other.keys(), shipped / "a.zip")
    monkeypatch.setattr(bundles, "PRECOMPUTED", shipped)
    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "1")
    monkeypatch.setattr(store_module, "CREATING_S", 0.5)  # the grace a creating process gets: tested below
    filled(cache_dir)
    assert len(bundles.load_precomputed(Store(cache_dir))) == 2
    (cache_dir / "cache.db").write_bytes(b"")  # everything lost, the shipped results too
    code, out, _ = run_cli(capsys, "doctor", "--repair")
    assert code == 0 and "kept 0 results" in out, out
    assert f"2 shipped results were not among those kept: they are loaded again from {shipped}" in out, out
    code, _, err = run_cli(capsys, "figure2", "--preset", "tiny")  # a command that loads the shipped bundles
    assert code == 0 and f"loaded 2 shipped results the store lacked from {shipped}" in err, err
    assert len(Store(cache_dir).keys()) == 2


def test_a_zero_byte_database_is_damage_not_an_empty_store(cache_dir, capsys, monkeypatch):
    monkeypatch.setattr(store_module, "CREATING_S", 0.5)  # the grace a creating process gets: tested below
    filled(cache_dir)
    (cache_dir / "cache.db").write_bytes(b"")
    code, _, err = run_cli(capsys, "export", "--out", str(cache_dir.parent / "x.zip"))
    assert code != 0 and one_line(err) and "0 bytes" in err and "doctor --repair" in err, err
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and "0 bytes" in out, out
    code, out, _ = run_cli(capsys, "doctor", "--repair")
    assert code == 0 and "kept 0 results" in out, out


def test_a_database_another_process_is_creating_is_waited_for_not_called_damage(tmp_path):
    """SQLite leaves a new database at 0 bytes for a moment; one that gains its first page within the grace is
    a database being created, one that stays empty was cut short."""
    db = tmp_path / "cache.db"
    db.write_bytes(b"")
    assert store_module.stays_empty(db, wait=0.2)
    grows = threading.Timer(0.3, lambda: db.write_bytes(b"\0" * 4096))
    grows.start()
    assert not store_module.stays_empty(db, wait=30.0)  # returns when the page lands, long before 30 s
    grows.join()
    assert not store_module.stays_empty(tmp_path / "absent.db", wait=30.0)


# ------------------------------------------------ keys that are not text, in both databases
def insert_not_text_keys(db: Path, directory: Path) -> None:
    """A NULL, an integer and a blob key written with plain SQL, and a pickled key written by diskcache."""
    con = sqlite3.connect(str(db))
    with con:
        for key in (None, 77, b"\x01\x02"):
            con.execute("INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size, "
                        "mode, filename, value) VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, 1, NULL, ?)", (key, b"x"))
    con.close()
    other = old_style_cache(directory)
    other.set(("a", "tuple", 1), b"another program's value")
    other.close()


def not_text_everywhere(cache_dir: Path) -> list[str]:
    """A store of results and a done job, then every kind of non-text key in both databases; the keys."""
    keys = filled(cache_dir)
    store = Store(cache_dir)
    scheduler.submit(make_result(seed=1, n_samples=300).config, store)  # stored: a done job, no worker
    records.forget_table(store)
    store.close()
    insert_not_text_keys(cache_dir / "cache.db", cache_dir)
    insert_not_text_keys(cache_dir / "jobs" / "cache.db", cache_dir / "jobs")
    return keys


def commands_work(capsys, cache_dir: Path, keys: list[str]) -> None:
    assert sorted(Store(cache_dir).keys()) == sorted(keys)  # nothing hidden behind a NULL key
    code, out, err = run_cli(capsys, "jobs")
    assert code == 0 and "done" in out and "Traceback" not in err, err
    code, out, err = run_cli(capsys, "export", "--out", str(cache_dir.parent / "all.zip"))
    assert code == 0 and f'"results": {len(keys)}' in out, err
    code, _, err = run_cli(capsys, "figure2", "--preset", "tiny")
    assert code == 0 and "Traceback" not in err, err
    code, out, err = run_cli(capsys, "run", "--d", "4", "--n", "256", "--m2", "50", "--steps", "200", "--n-test", "256",
                             "--seed", "1")
    assert code == 0 and "from the store" in out, out + err
    code, _, err = run_cli(capsys, "cancel", "0123456789abcdef")
    assert code != 0 and one_line(err), err


def test_rows_whose_key_is_not_text_go_in_one_repair_pass_in_both_databases(cache_dir, capsys):
    keys = not_text_everywhere(cache_dir)
    commands_work(capsys, cache_dir, keys)
    note = Store(cache_dir).summaries().attrs["notes"]
    assert len(note) == 1 and "4 row(s)" in note[0] and "rowid" in note[0], note
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and out.count("result row") == 4 and out.count("job row") == 4, out
    code, out, _ = run_cli(capsys, "doctor", "--repair")
    assert code == 0 and "remain" not in out, out
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0, out
    commands_work(capsys, cache_dir, keys)
    assert Store(cache_dir).summaries().attrs["notes"] == []


def page_failures(results: int = RESULTS) -> dict[str, str]:
    """Every page rendered from the app's entry point, as Streamlit serves it: {page: what went wrong}.

    The Results page must list `results` results."""
    out = {}
    for path in PAGES:
        _clear_store_cache()
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90).run()
        if path != "app.py" and not at.exception:
            at.switch_page(path).run()
        if at.exception:
            out[path] = at.exception[0].value
        elif path == "pages/3_Results.py":
            out.update({path: "results hidden"} if not _lists_results(at, results) else {})
    return out


def _lists_results(at: AppTest, results: int) -> bool:
    return any(len(frame.value) == results for frame in at.dataframe)


@pytest.mark.slow  # ten page views
def test_every_page_works_before_and_after_rows_whose_key_is_not_text_are_removed(cache_dir, capsys):
    not_text_everywhere(cache_dir)
    assert page_failures() == {}
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert run_cli(capsys, "doctor")[0] == 0
    assert page_failures() == {}


# ------------------------------------------------ repair always finishes
def test_a_value_file_that_links_out_of_the_store_is_removed_as_a_link(cache_dir, capsys):
    filled(cache_dir)
    outside = cache_dir.parent / "precious.val"
    outside.write_bytes(b"someone else's file")
    folder = cache_dir / "ab" / "cd"
    folder.mkdir(parents=True)
    (folder / "orphan.val").symlink_to(outside)
    store = Store(cache_dir)
    scheduler.submit(make_result(seed=1, n_samples=300).config, store)
    records.table(store).set("job:0123456789abcdef", "{not json")
    code, out, _ = run_cli(capsys, "doctor", "--repair")
    assert code == 0, out
    assert not (folder / "orphan.val").is_symlink() and outside.read_bytes() == b"someone else's file"
    assert "0123456789abcdef" not in doctor_queries.damaged(store)


def test_reserve_files_of_workers_that_are_gone_are_listed_and_removed(cache_dir, capsys):
    store = Store(cache_dir)
    (cache_dir / "jobs").mkdir(parents=True, exist_ok=True)
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    (cache_dir / "jobs" / f"reserve-{gone}").write_bytes(b"\0" * 65536)
    (cache_dir / "jobs" / f"reserve-{os.getpid()}").write_bytes(b"\0" * 16)  # alive: kept
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and f"reserve file reserve-{gone}" in out and f"reserve-{os.getpid()}" not in out, out
    assert run_cli(capsys, "doctor", "--repair")[0] == 0
    assert not (cache_dir / "jobs" / f"reserve-{gone}").exists()
    assert (cache_dir / "jobs" / f"reserve-{os.getpid()}").exists()
    store.close()


def test_export_names_the_results_it_skipped(cache_dir, capsys):
    keys = filled(cache_dir)
    other = old_style_cache(cache_dir)
    other.set("cd" * 32, b"not a result at all")
    other.close()
    out_path = cache_dir.parent / "all.zip"
    code, out, err = run_cli(capsys, "export", "--out", str(out_path))
    assert code == 0 and f'"results": {len(keys)}' in out, err
    assert ("cd" * 32)[:16] in err and "skipped" in err, err
    assert len(zipfile.ZipFile(out_path).namelist()) > len(keys)


# ------------------------------------------------ one validation for every result that enters a store
def _retyped(doc: dict, path: str, value) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node = doc
    for name in parents:
        node = node[name]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return doc


_DROP = object()
NESTED = 200_000
BAD_RESULT_JSON = {
    "meta.seconds text": ("meta.seconds", "fast"),
    "meta.steps text": ("meta.steps", "many"),
    "meta.steps negative": ("meta.steps", -3),
    "meta.seconds huge": ("meta.seconds", 1e308),
    "meta.converged text": ("meta.converged", "yes"),
    "meta.created number": ("meta.created", 5),
    "meta.extra too deep": ("meta.extra", json.loads("[" * 40 + "]" * 40)),
    "meta.extra.lr_drops text": ("meta.extra.lr_drops", "two"),
    "meta.steps missing": ("meta.steps", _DROP),
    "no status": ("status", _DROP),
    "no message": ("message", _DROP),
    "metric text": ("metrics.test_loss", "low"),
}


def bad_bundles() -> dict[str, bytes]:
    """A one-result bundle with each wrongly typed field, and with result.json or manifest.json nested NESTED deep."""
    source = Store(Path(os.environ["HIERPOLY_CACHE_DIR"]).parent / "source")
    source.put(make_result(seed=3))
    members = unzip(bundles.export_bundle(source, source.keys()))
    name = f"results/{source.keys()[0]}/result.json"
    doc = json.loads(members[name])
    out = {kind: rezip({**members, name: json.dumps(_retyped(doc, *change)).encode()})
           for kind, change in BAD_RESULT_JSON.items()}
    out["nested result.json"] = rezip({**members, name: b"[" * NESTED + b"]" * NESTED})
    out["nested manifest.json"] = rezip({**members, "manifest.json": b"[" * NESTED + b"]" * NESTED}, fix_hashes=False)
    return out


def test_wrongly_typed_and_deeply_nested_bundles_are_refused_in_one_line(cache_dir, tmp_path, capsys):
    keys = filled(cache_dir)
    before = {key: Store(cache_dir).raw(key) for key in keys}
    for kind, data in bad_bundles().items():
        path = tmp_path / "bad.zip"
        path.write_bytes(data)
        code, out, err = run_cli(capsys, "import", str(path))
        assert code != 0 and one_line(err) and "refused" in err, (kind, err)
    store = Store(cache_dir)
    assert {key: store.raw(key) for key in store.keys()} == before
    assert page_failures() == {}


@pytest.mark.parametrize("kind", [kind for kind in BAD_RESULT_JSON if kind.startswith("me")])  # meta, metrics
def test_a_result_that_fails_validation_never_enters_the_store(kind, cache_dir):
    """The worker and a Ray fetch store through Store.put_many, which validates as an import does."""
    result = make_result(seed=4)
    doc = {"status": result.status, "message": result.message, "meta": result.meta,
           "metrics": result.metrics}
    changed = _retyped(doc, *BAD_RESULT_JSON[kind])
    bad = dataclasses.replace(result, meta=changed["meta"], metrics=changed["metrics"])
    with pytest.raises(StoreError):
        Store(cache_dir).put(bad)
    assert Store(cache_dir).keys() == []


# ------------------------------------------------ pages degrade, never crash
def banners(at: AppTest) -> str:
    return " ".join(w.value for w in [*at.warning, *at.error])


def render(path: str) -> AppTest:
    """One view of a page, from the app's entry point; the app's open store is kept (a later view of the same server)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90).run()
    if path != "app.py" and not at.exception:
        at.switch_page(path).run()
    return at


def damage_store(kind: str, directory: Path) -> None:
    db = directory / "cache.db"
    if kind == "store root page":
        overwrite_page(db, table_root(db))
    elif kind == "store header page":
        overwrite_page(db, 1)
    elif kind == "store middle page":
        overwrite_page(db, db.stat().st_size // PAGE // 2)
    else:  # the job table: its Cache table's root, so no record can be reached from it
        overwrite_page(directory / "jobs" / "cache.db", table_root(directory / "jobs" / "cache.db"))


@pytest.mark.slow  # five page views each
@pytest.mark.parametrize("kind", ["store root page", "store header page", "store middle page", "job table"])
def test_every_page_renders_on_a_damaged_database_with_a_one_line_banner(kind, cache_dir):
    keys = filled(cache_dir)
    store = Store(cache_dir)
    for seed in range(30):  # enough records that the job table's root is an interior page
        scheduler.submit(make_result(seed=seed, n_samples=300).config, store)
    records.forget_table(store)
    store.close()
    damage_store(kind, cache_dir)
    _clear_store_cache()
    for path in PAGES:
        at = render(path)
        assert not at.exception, (path, at.exception[0].value)
        shown = banners(at)
        assert "doctor --repair" in shown, (path, shown)
        assert all("\n" not in w.value for w in at.warning), path
        if path == "pages/3_Results.py" and kind.startswith("store"):  # what can be read is shown
            least = len(keys) - 3 if kind == "store middle page" else len(keys)
            assert any(len(frame.value) >= least for frame in at.dataframe), path
    handle = Store.__new__(Store)  # the damaged store cannot be opened: only its job table's handle is dropped
    handle.directory = cache_dir
    records.forget_table(handle)


@pytest.mark.process
def test_every_page_renders_on_a_full_disk_after_a_first_view(disk, capsys):  # noqa: F811 (the fixture)
    results = three_results_then_a_full_disk(disk)
    _clear_store_cache()
    for view in ("first", "second"):
        for path in PAGES:
            at = render(path)
            assert not at.exception, (view, path, at.exception[0].value)
            assert "full" in banners(at), (view, path, banners(at))
            if path == "pages/3_Results.py":
                assert any(len(frame.value) == len(results) for frame in at.dataframe), view
    _clear_store_cache()


# ------------------------------------------------ links, everywhere one enters
def test_a_link_that_overflows_is_refused_where_it_enters_as_target_refuses_it(capsys):
    code, _, err = run_cli(capsys, "target", "--d", "4", "--link", "1e308,1e308")
    assert code != 0 and one_line(err) and "too large" in err, err
    code, _, err = run_cli(capsys, "run", "--d", "4", "--n", "64", "--link", "1e308,1e308")
    assert code != 0 and one_line(err) and "too large" in err, err
    from hierpoly.config import ConfigError, RunConfig
    from hierpoly.views import forms

    with pytest.raises(ConfigError, match="too large"):
        RunConfig(d=4, n=64, link="1e308,1e308")
    assert "too large" in str(forms.build_config({**forms.params_from_config(RunConfig(d=4, n=64)),
                                                  "link": "1e308,1e308"}))
    assert records.list_jobs() == []


@pytest.mark.process
def test_jobs_piped_into_a_reader_that_stops_ends_quietly(cache_dir):
    import subprocess
    import sys

    store = Store(cache_dir)
    results = [make_result(seed=seed) for seed in range(12)]
    store.put_many(results)
    for result in results:
        scheduler.submit(result.config, store)  # stored: done at once, no worker
    env = dict(os.environ, PYTHONPATH=str(REPO), HIERPOLY_CACHE_DIR=str(cache_dir))
    proc = subprocess.Popen([sys.executable, "-m", "hierpoly", "jobs"], env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # as `head` does once it has its lines: every write after this meets a broken pipe
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
