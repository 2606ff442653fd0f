"""What a page rerun costs as the store grows: the server time of one rerun of the Explore page on a config
that is not stored, with 10, 1,000 and 10,000 stored results and 2,000 finished jobs in the job table.

A rerun is what every open page does on each click and each second of a live panel, and a class's pages share
one server process, so its cost must not grow with the store's history. Measured with Streamlit's AppTest in
this process (the script's run, no browser): after a first run that opens the store and imports everything,
the median and min–max of RERUNS reruns per store. The stored results are the shipped cpu runs re-seeded
(each a valid result under a key of its own; a rerun's cost does not depend on their numbers), without
snapshots and with SAMPLE_ROWS scatter points each, so 10,000 of them stay small; the finished jobs are
written through the job table's own functions, ROWS progress rows each. No JAX here.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from hierpoly import locations
from hierpoly.jobs import records, worker_protocol
from hierpoly.progress import Progress
from hierpoly.results import bundles
from hierpoly.results.store import Store

SIZES = (10, 1000, 10000)  # stored results
JOBS = 2000  # finished jobs in the job table
ROWS = 20  # progress rows of each finished job
RERUNS = 15
SAMPLE_ROWS = 50
QUICK = {"sizes": (10, 200), "jobs": 100, "reruns": 3}


def filler_results(count: int) -> list:
    """`count` valid results under keys of their own: the shipped cpu network runs, re-seeded."""
    shipped = bundles.read_bundle((bundles.PRECOMPUTED / "cpu.zip").read_bytes()).values()
    templates = [r for r in shipped if r.config.arch == "three_layer"]
    out = []
    for i in range(count):
        base = templates[i % len(templates)]
        cfg = dataclasses.replace(base.config, seed=100_000 + i)
        samples = {name: values[:SAMPLE_ROWS] for name, values in base.samples.items()}
        out.append(dataclasses.replace(base, config=cfg, samples=samples, snapshots={}))
    return out


def fill_jobs(store: Store, count: int, rows: int) -> None:
    """`count` finished jobs (done, failed, cancelled in turn), each with `rows` progress rows written as a worker
    writes them (``worker_protocol.add_progress``)."""
    t = records.table(store)
    cfg = filler_results(1)[0].config
    statuses = ("done", "failed", "cancelled")
    for i in range(count):
        job_id, now = uuid.uuid4().hex[:16], time.time()
        with t.transact():
            records.save(t, {"job_id": job_id, "key": f"{i:064x}", "config": cfg.to_dict(), "status": statuses[i % 3],
                             "message": "finished", "pid": None, "created": now, "updated": now, "heartbeat": now,
                             "total_steps": cfg.total_steps, "owner": None})
        for step in range(rows):
            worker_protocol.add_progress(store, job_id, Progress(step=step * 10, train_loss=1.0, test_loss=1.0,
                                                                 feature_corr=0.5, seconds=float(step)))


def make_store(directory: Path, results: int, jobs: int, log: Callable[[str], None]) -> Store:
    store = Store(directory)
    filler = filler_results(results)
    for start in range(0, len(filler), 500):
        store.put_many(filler[start:start + 500])
    fill_jobs(store, jobs, ROWS)
    log(f"page bench: a store of {len(store)} results and {jobs} finished jobs")
    return store


def time_reruns(directory: Path, reruns: int) -> list[float]:
    """Seconds of each rerun of the Explore page (on its default config, not stored here) after a first run."""
    from streamlit.testing.v1 import AppTest

    from hierpoly.views.system import _clear_store_cache

    saved = {name: os.environ.get(name) for name in ("HIERPOLY_CACHE_DIR", "HIERPOLY_LOAD_PRECOMPUTED", "HIERPOLY_WARM")}
    os.environ.update(HIERPOLY_CACHE_DIR=str(directory), HIERPOLY_LOAD_PRECOMPUTED="0", HIERPOLY_WARM="0")
    _clear_store_cache()
    try:
        at = AppTest.from_file(str(locations.app_dir() / locations.APP), default_timeout=120)
        at.run()
        at.switch_page("pages/1_Explore.py").run()
        if at.exception:
            raise RuntimeError(f"the Explore page failed: {at.exception[0].value}")
        times = []
        for _ in range(reruns):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        return times
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        _clear_store_cache()


def measure_page(quick: bool = False, log: Callable[[str], None] = print) -> dict:
    """Per store size: the Explore rerun's median, min and max seconds, and the mean (see the module docstring)."""
    sizes, jobs, reruns = (QUICK["sizes"], QUICK["jobs"], QUICK["reruns"]) if quick else (SIZES, JOBS, RERUNS)
    out = {"page": "Explore, a config not stored", "jobs": jobs, "reruns": reruns, "stores": []}
    with tempfile.TemporaryDirectory() as root:
        for size in sizes:
            directory = Path(root) / f"store{size}"
            make_store(directory, size, jobs, log).close()
            times = time_reruns(directory, reruns)
            row = {"results": size, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                   "mean_s": statistics.fmean(times)}
            out["stores"].append(row)
            log(f"page bench: {size} results: rerun {row['median_s'] * 1e3:.0f} ms "
                f"[{row['min_s'] * 1e3:.0f}, {row['max_s'] * 1e3:.0f}] (median [min, max] of {reruns})")
    return out


def format_page(out: dict) -> str:
    """The page bench as text: one line per store size."""
    lines = [f"page rerun ({out['page']}, {out['jobs']} finished jobs in the table; median [min, max] of "
             f"{out['reruns']} reruns, mean beside)"]
    for row in out["stores"]:
        lines.append(f"  {row['results']:>6} stored results: {row['median_s'] * 1e3:6.1f} ms "
                     f"[{row['min_s'] * 1e3:.1f}, {row['max_s'] * 1e3:.1f}], mean {row['mean_s'] * 1e3:.1f} ms")
    return "\n".join(lines)
