"""First start on a fresh store: the shipped bundle loads exactly once and all or nothing, a full disk included."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_store import make_result

from hierpoly.jobs import records
from hierpoly.results import bundles
from hierpoly.results.store import Store

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "cache" / "precomputed"  # every bundle here loads on first start
RUN = ["run", "--d", "4", "--n", "256", "--m2", "50", "--steps", "100", "--n-test", "256", "--n-eval", "4096",
       "--json"]
pytestmark = pytest.mark.process


def shipped_keys() -> set[str]:
    """The keys of every shipped bundle (all of cache/precomputed/ loads on first start)."""
    keys = set()
    for bundle in sorted(SHIPPED.glob("*.zip")):
        with zipfile.ZipFile(bundle) as zf:
            keys |= {entry["key"] for entry in json.loads(zf.read("manifest.json"))["results"]}
    return keys


def cli(directory: Path, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), HIERPOLY_CACHE_DIR=str(directory), HIERPOLY_WORKER_IDLE_S="2")
    env.pop("HIERPOLY_LOAD_PRECOMPUTED", None)  # a fresh clone loads the shipped bundles on first start
    return subprocess.Popen([sys.executable, "-m", "hierpoly", *args], env=env, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_twelve_concurrent_first_starts_all_submit_and_load_every_shipped_result(cache_dir):
    procs = [cli(cache_dir, *RUN) for _ in range(12)]
    outs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 12, [err for _, err in outs]
    job_ids = {json.loads(out.strip().splitlines()[-1])["job_id"] for out, _ in outs}
    assert len(job_ids) == 1  # one job for one config, however many asked
    store = Store(cache_dir)
    assert shipped_keys() <= set(store.keys()) and len(store) == len(shipped_keys()) + 1
    assert store.problems(full=False) == {}
    assert bundles.load_precomputed(store, SHIPPED) == []  # loaded once: nothing left to do


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root to mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here (needs root): {res.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_in_one_line_and_leaves_the_store_unchanged(small_disk):
    directory = small_disk / "store"
    before = make_result()
    Store(directory).put(before)
    filler = small_disk / "filler"  # the disk full to its last block: no run can start on it
    try:
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:  # ENOSPC: the disk is full
        pass
    proc = cli(directory, *RUN)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1 and stderr.strip().count("\n") == 0 and "Traceback" not in stderr, stderr
    assert "is full" in stderr
    store = Store(directory)  # still opens
    assert store.keys() == [before.key] and store.get(before.key).metrics == before.metrics
    assert records.list_jobs(store) == []  # nothing was submitted
