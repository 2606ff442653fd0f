"""The result store: exact round trips, refusals, no eviction, no pickle, reopened by a new process."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import diskcache
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.results.codec import HISTORY_COLUMNS, Result, StoreError, to_bytes
from hierpoly.results.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_result(seed: int = 0, rows: int = 5, n_samples: int = 100, **changes) -> Result:
    """A synthetic finished run (no training needed to test storage)."""
    rng = np.random.default_rng(seed)
    cfg = RunConfig(d=4, n=256, m2=50, steps=200, n_test=256, seed=seed)
    history = {name: rng.standard_normal(rows).astype(dtype) for name, dtype in HISTORY_COLUMNS.items()}
    history["step"] = np.arange(rows, dtype=np.int64) * 100
    fields = dict(
        config=cfg, status="done", message="reached the step cap of 200",
        metrics={"train_loss": 0.01 + seed, "test_loss": 0.02, "test_loss_se": 0.001, "mean_h2": 0.98,
                 "test_loss_cv": 0.021, "test_loss_cv_se": 0.0008, "feature_corr": 0.9},
        history=history,
        samples={c: rng.standard_normal(n_samples).astype(np.float32) for c in ("p", "g", "h", "h_pred")},
        meta={"seconds": 1.5, "created": "2026-01-01T00:00:00+0000", "steps": 200, "C": 0.5, "extra": {}},
    )
    fields.update(changes)
    return Result(**fields)


def same(a: Result, b: Result) -> bool:
    return to_bytes(a) == to_bytes(b)


def test_round_trip_is_exact():
    store = Store()
    result = make_result()
    store.put(result)
    back = store.get(result.key)
    assert same(back, result)
    for name in HISTORY_COLUMNS:
        np.testing.assert_array_equal(back.history[name], result.history[name])
        assert back.history[name].dtype == result.history[name].dtype
    assert back.samples["g"].dtype == np.float32
    assert store.has(result.key) and store.keys() == [result.key] and len(store) == 1
    assert store.size_bytes() > 0
    assert store.delete(result.key) and not store.has(result.key) and store.get(result.key) is None


def test_written_once():
    store = Store()
    first = make_result()
    store.put(first)
    store.put(make_result(message="a different message"))
    assert store.get(first.key).message == first.message


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"status": "diverged"}, "only finished runs"),
        ({"metrics": {**make_result().metrics, "train_loss": float("nan")}}, "finite"),
        ({"metrics": {**make_result().metrics, "test_loss_se": None}}, "test_loss_se"),
        ({"samples": {c: np.zeros(10, np.float64) for c in ("p", "g", "h", "h_pred")}}, "float32"),
        ({"samples": {c: np.zeros(3000, np.float32) for c in ("p", "g", "h", "h_pred")}}, "rows"),
    ],
)
def test_refuses_what_is_not_a_finished_run(changes, reason):
    store = Store()
    with pytest.raises(StoreError, match=reason):
        store.put(make_result(**changes))
    assert len(store) == 0


def test_never_evicts_and_never_unpickles(cache_dir, tmp_path):
    store = Store()
    store.put(make_result())
    raw = diskcache.Cache(str(cache_dir))  # what a fresh opener sees persisted
    assert raw.eviction_policy == "none"

    class Evil:  # unpickling this would create a folder
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    raw.set("f" * 64, Evil())  # the default Disk pickles it
    raw.set("e" * 64, pickle.dumps({"x": 1}))  # bytes that are a pickle, not a result
    raw.close()
    with pytest.raises(StoreError, match="unpickle"):
        store.get("f" * 64)
    with pytest.raises(StoreError):
        store.get("e" * 64)
    assert not (tmp_path / "pwned").exists()


def test_value_of_another_config_is_refused(cache_dir):
    store = Store()
    a, b = make_result(0), make_result(1)
    store.put(a)
    store._cache.set(b.key, to_bytes(a))  # a's bytes under b's key
    with pytest.raises(StoreError, match="another config"):
        store.get(b.key)


def test_summaries_one_row_per_result():
    store = Store()
    for seed in range(3):
        store.put(make_result(seed))
    table = store.summaries()
    assert len(table) == 3 and sorted(table["seed"]) == [0, 1, 2]
    for column in ("key", "d", "n", "k", "link", "sigma1", "m1", "m2", "arch", "mode", "seed", "steps",
                   "status", "test_loss", "feature_corr", "train_loss", "seconds", "created"):
        assert column in table.columns
    assert set(table["status"]) == {"done"}


@pytest.mark.process
def test_reopened_by_a_new_process(cache_dir):
    store = Store()
    result = make_result(seed=2)
    store.put(result)
    store.close()
    code = (
        "import json, hashlib; from hierpoly.results.store import Store; from hierpoly.results.codec import to_bytes; s = Store();"
        f"r = s.get({result.key!r}); print(json.dumps({{'keys': s.keys(), 'sha': hashlib.sha256(to_bytes(r)).hexdigest()}}))"
    )
    env = dict(os.environ, PYTHONPATH=REPO, HIERPOLY_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout)
    import hashlib

    assert seen == {"keys": [result.key], "sha": hashlib.sha256(to_bytes(result)).hexdigest()}


def _older_version_bytes(result: Result) -> bytes:
    """The result as an older hierpoly stored it: its key computed under another schema version."""
    import io
    import zipfile

    buf = io.BytesIO(to_bytes(result))
    with zipfile.ZipFile(buf) as zin:
        members = {name: zin.read(name) for name in zin.namelist()}
    doc = json.loads(members["result.json"])
    doc["key"] = "0" * 64
    members["result.json"] = json.dumps(doc).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    return out.getvalue()


def test_unreadable_results_are_skipped_and_listed(cache_dir):
    store = Store()
    good, old, moved = make_result(0), make_result(1), make_result(2)
    store.put(good)
    store._cache.set("0" * 64, _older_version_bytes(old))  # an older version's key scheme
    store._cache.set(moved.key, to_bytes(good))  # good's bytes under moved's key
    table = store.summaries()
    assert list(table["key"]) == [good.key]
    assert sorted(table.attrs["unreadable"]) == sorted(["0" * 64, moved.key])
    assert [r.key for r in store.results()] == [good.key]
    with pytest.raises(StoreError):  # asked for by key, it is still refused loudly
        store.get("0" * 64)
