"""Bundles: exact round trips, and every hostile kind refused with no side effects."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from test_store import make_result  # synthetic finished runs

from hierpoly.results.bundles import BundleError, export_bundle, import_bundle, load_precomputed
from hierpoly.results.codec import to_bytes
from hierpoly.results.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def filled_store(n: int = 3) -> Store:
    store = Store()
    for seed in range(n):
        store.put(make_result(seed))
    return store


def rezip(members: dict[str, bytes], fix_hashes: bool = True) -> bytes:
    """Rebuild a bundle from members, optionally with a manifest whose hashes match them."""
    if fix_hashes and "manifest.json" in members:
        manifest = json.loads(members["manifest.json"])
        manifest["sha256"] = {n: hashlib.sha256(b).hexdigest() for n, b in members.items() if n != "manifest.json"}
        members = {**members, "manifest.json": json.dumps(manifest).encode()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class Evil:  # unpickling this would create a folder next to the test
    path = ""

    def __reduce__(self):
        return (os.mkdir, (Evil.path,))


def snapshot(root) -> dict:
    """Every file under root with a hash of its content: side effects show up here.

    SQLite's own files are left out (reads may checkpoint them); stores are compared by content.
    """
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.startswith("cache.db"):
                with open(os.path.join(dirpath, f), "rb") as fh:
                    out[os.path.join(dirpath, f)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_export_import_round_trip_is_exact(tmp_path):
    source = filled_store(3)
    data = export_bundle(source, source.keys())
    assert export_bundle(source, source.keys()) == data  # deterministic
    target = Store(tmp_path / "other")
    added = import_bundle(target, data)
    assert sorted(added) == source.keys() == target.keys()
    for key in source.keys():
        assert to_bytes(target.get(key)) == to_bytes(source.get(key))
    assert import_bundle(target, data) == []  # nothing new
    assert sorted(import_bundle(target, data, overwrite=True)) == source.keys()


def hostile_bundles(tmp_path) -> dict[str, bytes]:
    store = filled_store(2)
    good = export_bundle(store, store.keys())
    members = unzip(good)
    key = store.keys()[0]
    prefix = f"results/{key}/"
    Evil.path = str(tmp_path / "pwned")
    pickled = io.BytesIO()
    np.save(pickled, np.array([Evil()], dtype=object), allow_pickle=True)
    tampered_config = json.loads(members[prefix + "result.json"])
    tampered_config["config"]["n"] = 512  # a better-looking result under the old key
    nan_samples = npz(p=np.full(10, np.nan, np.float32), g=np.zeros(10, np.float32),
                      h=np.zeros(10, np.float32), h_pred=np.zeros(10, np.float32))
    flipped = bytearray(members[prefix + "history.npz"])
    flipped[-100] ^= 0xFF
    return {
        "pickled array": rezip({**members, prefix + "samples.npz": npz(p=np.array([Evil()], dtype=object))}),
        "pickled npy": rezip({**members, prefix + "samples.npz": _npz_raw({"p.npy": pickled.getvalue()})}),
        "pickle file": rezip({**members, prefix + "evil.pkl": b"\x80\x04K\x01."}),
        "path traversal": rezip({**members, "../../evil.json": b"{}"}),
        "absolute path": rezip({**members, "/tmp/evil.json": b"{}"}),
        "garbage": os.urandom(4096),
        "empty": b"",
        "compression bomb": rezip({**members, prefix + "history.npz": b"\0" * (64 << 20)}),
        "truncated": good[: len(good) // 2],
        "tampered bytes": rezip({**members, prefix + "history.npz": bytes(flipped)}, fix_hashes=False),
        "tampered config": rezip({**members, prefix + "result.json": json.dumps(tampered_config).encode()}),
        "non-finite arrays": rezip({**members, prefix + "samples.npz": nan_samples}),
        "no manifest": rezip({n: b for n, b in members.items() if n != "manifest.json"}),
    }


def _npz_raw(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


HOSTILE = ["pickled array", "pickled npy", "pickle file", "path traversal", "absolute path", "garbage", "empty",
           "compression bomb", "truncated", "tampered bytes", "tampered config", "non-finite arrays", "no manifest"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_bundle_refused_without_side_effects(kind, tmp_path, monkeypatch):
    data = hostile_bundles(tmp_path)[kind]
    target = Store(tmp_path / "target")
    target.put(make_result(7))  # something already there must stay as it was
    stored = to_bytes(target.get(make_result(7).key))
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(BundleError) as err:
        import_bundle(target, data)
    assert "\n" not in str(err.value)
    assert snapshot(tmp_path) == before
    assert target.keys() == [make_result(7).key] and to_bytes(target.get(make_result(7).key)) == stored
    assert not (tmp_path / "pwned").exists()


def test_all_or_nothing(tmp_path):
    """One bad result spoils the bundle: the good one is not added either."""
    source = filled_store(2)
    members = unzip(export_bundle(source, source.keys()))
    bad_key = source.keys()[1]
    members[f"results/{bad_key}/samples.npz"] = npz(p=np.zeros(3, np.float64), g=np.zeros(3), h=np.zeros(3),
                                                    h_pred=np.zeros(3))
    target = Store(tmp_path / "target")
    with pytest.raises(BundleError, match="float32"):
        import_bundle(target, rezip(members))
    assert target.keys() == []


def test_load_precomputed_once(tmp_path):
    source = filled_store(2)
    folder = tmp_path / "precomputed"
    folder.mkdir()
    (folder / "demo.zip").write_bytes(export_bundle(source, source.keys()))
    target = Store(tmp_path / "target")
    assert sorted(load_precomputed(target, folder)) == source.keys()
    assert load_precomputed(target, folder) == []


def cli(*args, cache_dir):
    env = dict(os.environ, PYTHONPATH=REPO, HIERPOLY_CACHE_DIR=str(cache_dir))
    return subprocess.run([sys.executable, "-m", "hierpoly", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


@pytest.mark.process
def test_cli_export_import(tmp_path, cache_dir):
    source = filled_store(3)
    out = tmp_path / "b.zip"
    res = cli("export", "--out", str(out), "--seed", "0", "2", cache_dir=cache_dir)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["keys"]) == 2
    res = cli("import", str(out), cache_dir=tmp_path / "empty")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["added"] == 2
    imported = Store(tmp_path / "empty")
    for key in imported.keys():
        assert to_bytes(imported.get(key)) == to_bytes(source.get(key))
    (tmp_path / "bomb.zip").write_bytes(hostile_bundles(tmp_path)["pickled array"])
    res = cli("import", str(tmp_path / "bomb.zip"), cache_dir=tmp_path / "empty")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: bundle refused")
    assert len(Store(tmp_path / "empty")) == 2
    res = cli("export", "--out", str(out), "--d", "99", cache_dir=cache_dir)
    assert res.returncode != 0 and res.stderr.startswith("error: no stored results")
    res = cli("export", "--out", str(out), "--preset", "tiny", cache_dir=cache_dir)  # none of these runs is tiny's
    assert res.returncode != 0 and res.stderr.startswith("error: no stored results")
    res = cli("export", "--out", str(out), "--preset", "huge", cache_dir=cache_dir)
    assert res.returncode != 0 and res.stderr.strip() == "error: unknown preset 'huge'; choose one of paper, cpu, tiny, exponents"


def test_export_without_snapshots_keeps_everything_else(tmp_path):
    """--no-snapshots drops only the optional replay member (the results are otherwise byte-equal),
    --sample-rows only the scatter's later points."""
    source = Store()
    snapshots = {"step": np.array([0, 100], np.int64), "g": np.ones((2, 256), np.float32)}
    for seed in range(2):
        source.put(make_result(seed, snapshots=snapshots))
    assert all(source.get(key).snapshots for key in source.keys())
    data = export_bundle(source, source.keys(), snapshots=False)
    assert not any(name.endswith("snapshots.npz") for name in unzip(data))
    assert len(data) < len(export_bundle(source, source.keys()))
    target = Store(tmp_path / "other")
    assert sorted(import_bundle(target, data)) == source.keys()
    for key in source.keys():
        got, want = target.get(key), source.get(key)
        assert got.snapshots == {} and to_bytes(got) == to_bytes(dataclasses.replace(want, snapshots={}))
    # the scatter cut to its first rows: the same points, fewer of them; metrics and history as they were
    slim = Store(tmp_path / "slim")
    import_bundle(slim, export_bundle(source, source.keys(), snapshots=False, sample_rows=40))
    for key in source.keys():
        got, want = slim.get(key), source.get(key)
        assert {c: v.tolist() for c, v in got.samples.items()} == {c: v[:40].tolist() for c, v in want.samples.items()}
        assert got.metrics == want.metrics and got.history["step"].tolist() == want.history["step"].tolist()


def test_an_import_never_replaces_a_different_stored_result(tmp_path):
    store = filled_store(2)
    genuine = make_result(1)
    forged = make_result(1, message="forged", metrics={**genuine.metrics, "feature_corr": 0.9999, "test_loss": 0.0001})
    assert forged.key == genuine.key and to_bytes(forged) != to_bytes(genuine)
    forger = Store(tmp_path / "forger")
    forger.put(forged)
    forger.put(make_result(7))  # something new beside it: all or nothing
    before = {key: store.raw(key) for key in store.keys()}
    with pytest.raises(BundleError, match=f"result {genuine.key} is already stored with different contents"):
        import_bundle(store, export_bundle(forger, forger.keys()))
    assert {key: store.raw(key) for key in store.keys()} == before
    assert import_bundle(store, export_bundle(store, store.keys())) == []  # the same contents: no conflict
