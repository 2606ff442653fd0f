"""A full disk, for real: a 4 MB tmpfs filled to the last block.

Needs root to mount it. Without root these tests skip, unless HIERPOLY_REQUIRE_FULL_DISK=1
(CI sets it), which turns a skip into a failure.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from test_store import make_result

from hierpoly import cli
from hierpoly.config import RunConfig
from hierpoly.jobs import doctor_queries, records, scheduler
from hierpoly.results.store import Store

pytestmark = pytest.mark.process  # mount and umount are processes, and so is the worker


@pytest.fixture
def disk(tmp_path, monkeypatch) -> Path:
    """A fresh 4 MB tmpfs holding the store (HIERPOLY_CACHE_DIR), unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    why = "needs root to mount a 4 MB tmpfs" if os.geteuid() != 0 else None
    if why is None:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
        why = None if res.returncode == 0 else f"mount failed: {res.stderr.strip()}"
    if why is not None:
        if os.environ.get("HIERPOLY_REQUIRE_FULL_DISK") == "1":
            pytest.fail(f"HIERPOLY_REQUIRE_FULL_DISK=1 but {why}")
        pytest.skip(why)
    monkeypatch.setenv("HIERPOLY_CACHE_DIR", str(mount / "store"))
    monkeypatch.setenv("HIERPOLY_WORKER_IDLE_S", "1")
    try:
        yield mount
    finally:
        store = Store.__new__(Store)
        store.directory = mount / "store"
        for pid in [j.pid for j in _jobs_or_none(store) if j.pid] + _idle_or_none(store):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        records.forget_table(store)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _jobs_or_none(store) -> list:
    try:
        return [j for j in records.list_jobs(Store(store.directory)) if j.status in records.LIVE]
    except Exception:
        return []


def _idle_or_none(store) -> list[int]:
    try:
        return doctor_queries.idle_worker_pids(Store(store.directory))
    except Exception:
        return []


def fill(mount: Path, leave: int = 0) -> None:
    """Fill the disk until `leave` bytes are free (0: until the OS refuses a single block)."""
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        remaining = max(0, free - leave)
        while remaining > 0:
            remaining -= os.write(fd, b"\0" * min(remaining, 1 << 16))
        if leave == 0:
            while True:
                os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def three_results_then_a_full_disk(disk) -> list:
    """Three stored results and the done job of one, in the store on `disk`; then the disk filled to the last byte.
    Returns the results."""
    store = Store()
    results = [make_result(seed=seed) for seed in range(3)]
    store.put_many(results)
    scheduler.submit(results[0].config, store)  # stored: a done job, no worker
    records.forget_table(store)
    store.close()
    fill(disk)
    assert os.statvfs(disk).f_bavail == 0
    return results


def test_read_only_commands_work_on_a_full_disk_and_it_is_not_damage(disk, tmp_path, capsys):
    results = three_results_then_a_full_disk(disk)
    code, out, err = run_cli(capsys, "jobs")
    assert code == 0 and "done" in out, err
    code, out, err = run_cli(capsys, "export", "--out", str(tmp_path / "all.zip"))
    assert code == 0 and '"results": 3' in out, err
    code, out, err = run_cli(capsys, "doctor")
    assert code == 0, out + err
    assert "is full" in out and "store database" not in out and "cannot be read" not in out, out
    reopened = Store()
    assert reopened.read_only and sorted(reopened.keys()) == sorted(r.key for r in results)
    code, _, err = run_cli(capsys, "run", "--d", "4", "--n", "256", "--m2", "50", "--steps", "50", "--seed", "7")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "full" in lines[0] and "doctor" not in lines[0], err


def test_a_worker_that_fills_the_disk_fails_saying_so(disk):
    store = Store()
    cfg = RunConfig(d=4, n=256, m2=50, n_test=256, steps=200_000, patience=10**6)
    job_id = scheduler.submit(cfg, store)
    fill(disk, leave=512 << 10)  # room to start; progress rows and the write-ahead log take the rest
    job = scheduler.wait(job_id, timeout=240, store=store)
    assert job.status == "failed", (job.status, job.message)
    assert "disk full" in job.message and "\n" not in job.message, job.message
