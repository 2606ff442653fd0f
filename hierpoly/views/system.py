"""What the home page reports about this machine, without importing JAX here.

The app process never imports JAX: on a GPU, JAX would reserve most of the
device memory in the web server, leaving little for the workers. So the JAX
backend is asked for once in a short-lived subprocess, in the background; until
it answers, the device recorded in the newest stored result is shown instead.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hierpoly import locations
from hierpoly.results.bundles import BundleError, load_precomputed
from hierpoly.results.codec import StoreError
from hierpoly.results.store import DiskFull, Store, default_dir

_PROBE_CODE = "import json; from hierpoly.engine.train import device_info; print(json.dumps(device_info()))"
_probe_lock = threading.Lock()
_probe: dict = {}  # "thread", "result" (dict) or "error" (str)


def _run_probe(timeout: float) -> None:
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE_CODE], env={**os.environ, "PYTHONPATH": locations.child_pythonpath(os.environ.get("PYTHONPATH"))},
                             capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode == 0:
            _probe["result"] = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            lines = (out.stderr.strip() or "no output").splitlines()
            _probe["error"] = f"JAX probe failed: {lines[-1]}"
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as err:
        _probe["error"] = f"JAX probe failed: {err}"


def device_probe(timeout: float = 120.0) -> dict | None:
    """JAX's backend and device as {backend, device_kind, device_count}, or None while the probe runs.

    The first call starts the probe in a background thread; later calls return
    its answer ({"error": ...} if it failed).
    """
    with _probe_lock:
        if "thread" not in _probe:
            _probe["thread"] = threading.Thread(target=_run_probe, args=(timeout,), daemon=True)
            _probe["thread"].start()
    if "result" in _probe:
        return _probe["result"]
    if "error" in _probe:
        return {"error": _probe["error"]}
    return None


_load_problems: dict[str, str] = {}  # store directory -> why the shipped bundles did not load


@lru_cache(maxsize=8)
def _shared_store(directory: str) -> Store:
    try:
        store = Store(directory)
    except DiskFull:
        raise
    except StoreError as err:  # SQLite cannot open it: the pages show what its pages still hold
        return Store.salvaged(directory, err)
    store.tolerate_damage()  # a page shows what can still be read, under a banner (open_checked)
    try:
        load_precomputed(store)
    except (BundleError, StoreError) as err:  # the store still serves what it holds
        _load_problems[directory] = f"The shipped results were not loaded: {err}"
    return store


def open_store() -> Store:
    """The app's store (one per directory and process).

    On first use it imports the shipped bundles of cache/precomputed/ that the store
    lacks (``bundles.load_precomputed``), unless $HIERPOLY_LOAD_PRECOMPUTED is 0.
    """
    return _shared_store(str(default_dir()))


def open_checked() -> tuple[Store | None, list[str]]:
    """The app's store and one-line problems for a banner; the store is None when it cannot be used.

    Never raises for a damaged store, job table or job record: pages show the lines instead.
    """
    from hierpoly.jobs import doctor_queries, policy
    try:
        policy.current_mode()
        store = open_store()
    except (StoreError, policy.PolicyError) as err:
        return None, [str(err)]
    store = _recheck(store)
    store.keys()  # the listing counts rows it cannot name (keys that are not text): store.notes
    problems = [_load_problems[str(store.directory)]] if str(store.directory) in _load_problems else []
    problems += [store.damage] if store.damage is not None else []
    problems += store.notes()
    if store.read_only and store.damage is None:
        problems.append(f"The disk holding the store at {store.directory} is full: results are shown, "
                        "nothing new can be stored until space is freed.")
    problems += doctor_queries.table_problems(store)
    return store, problems


_checked: dict[str, tuple] = {}  # database path -> (its files' sizes and times, the integrity check's answer)


def _recheck(store: Store) -> Store:
    """The store, degraded when SQLite's quick check of its database fails, reopened once a repair fixed it.

    The check runs again only when the database's files changed: a page polling every second costs a stat.
    """
    problem = quick_check(store.directory / "cache.db")
    if problem is not None:
        store.degrade(StoreError(f"the store at {store.directory} cannot be read whole ({problem}): "
                                 "run `python -m hierpoly doctor --repair`"))
    elif store.damage is not None:  # repaired meanwhile
        _clear_store_cache()
        store = open_store()
    return store


def quick_check(db: Path) -> str | None:
    """None when SQLite's quick_check of db passes (or there is none), else the first problem; cached per file state."""
    from hierpoly.results import rows

    parts = [db, db.with_name(db.name + "-wal")]
    state = tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None for p in parts)
    if _checked.get(str(db), (None,))[0] == state:
        return _checked[str(db)][1]
    problem = rows.quick_check(db) if state[0] is not None else None
    _checked[str(db)] = (state, problem)
    return problem


def _clear_store_cache() -> None:
    """Forget the opened stores (tests that delete their directories)."""
    _shared_store.cache_clear()
    _load_problems.clear()
    _checked.clear()


@dataclass(frozen=True)
class SystemStatus:
    """The home page's status panel."""

    device: str  # e.g. "cpu (cpu), 1 device"
    device_source: str  # "probe", "newest result" or "pending"
    results: int
    size_bytes: int
    store_dir: Path
    live_jobs: list  # records.Job in queued or running


def describe_device(info: dict | None) -> str:
    """One line from a device_info dict."""
    if not info:
        return "unknown"
    if "error" in info:
        return info["error"]
    count = info.get("device_count", 1)
    return f"{info.get('backend', '?')} ({info.get('device_kind', '?')}), {count} device{'s' if count != 1 else ''}"


def system_status(store: Store) -> SystemStatus:
    """Device, store size and count, and live jobs."""
    from hierpoly.jobs import records
    info, source = device_probe(), "probe"
    if info is None:
        source = "pending"
        summaries = store.summaries()
        if len(summaries):
            newest = summaries.sort_values("created").iloc[-1]
            try:
                result = store.get(newest["key"])
            except StoreError:
                result = None
            if result is not None and isinstance(result.meta.get("device"), dict):
                info, source = result.meta["device"], "newest result"
    live = records.live_jobs(store)
    device = describe_device(info) if info is not None else "asking JAX…"
    return SystemStatus(device, source, len(store), store.size_bytes(), store.directory, live)


def format_bytes(n: int) -> str:
    """1.2 MB, 340 kB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
