"""Check a store and its job table; repair what cannot be read: ``python -m hierpoly doctor [--repair]``.

Checks: SQLite's integrity check of both databases, that every stored value
decodes (a missing value file, a pickled row, a damaged zip), rows whose key is
not text (in both databases), value files no row refers to, damaged job records,
table entries of no job, running jobs whose worker is gone, reserve files of
workers that are gone, and checkpoints (a stopped run's saved state) that belong to
no live job: no queued or running job has their key and the process that wrote them
is gone. Repair says what it removes, then: moves a damaged database aside (keeping
every result that still decodes, read row by row by SQLite and from every leaf page
of the file: rows.py, pagescan.py), deletes unreadable results, rows with other keys
(by rowid), orphan files, damaged records, orphan entries and such checkpoints, and
records stale jobs (``scheduler.supervise``, which also starts a worker for the jobs
queued behind them), all in one pass. Value files outside the store's directory are
never read or deleted; a value file that is a link is removed as a link.

A full disk is not damage: checking works on it (read-only), repairing waits for room.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hierpoly.jobs import doctor_queries, processes, records, scheduler
from hierpoly.results import bundles, checkpoints, pagescan, rows
from hierpoly.results.codec import Result, StoreError, from_bytes
from hierpoly.results.store import DISK_FULL_HINT, DiskFull, Store, disk_free, disk_is_full, stays_empty

DB = "cache.db"


@dataclass(frozen=True)
class Finding:
    """One problem: what it concerns, what is wrong, what --repair does."""

    what: str  # store database | result | result row | value file | job table | job row | job record | job entry
    # | stale job | reserve file | checkpoint
    name: str
    problem: str
    repair: str

    def line(self) -> str:
        return f"{self.what} {self.name}: {self.problem} -> {self.repair}"


def integrity(db: Path) -> str | None:
    """None when SQLite's integrity check passes (or there is no database yet), else the problem.

    A file of zero bytes is damage too: this project's databases are never empty files, and SQLite
    would read one as a database without tables, so every result it held would vanish without a word.
    """
    if not db.exists():
        return None
    if stays_empty(db):
        return "the database file is empty (0 bytes): it was cut short"
    lines = rows.problems(db, "integrity_check")
    if lines is None:
        return None
    return "; ".join(lines[:3]) + (f"; … ({len(lines)} problems)" if len(lines) > 3 else "")


def value_files(directory: Path) -> set[str]:
    """Value files (diskcache's ``*.val``, links included) under a cache directory, relative paths."""
    return {str(p.relative_to(directory)) for p in directory.glob("*/*/*.val")}


def referenced_files(db: Path) -> set[str]:
    return {row.filename for row in rows.readable_rows(db)[0] if row.filename}


@dataclass(frozen=True)
class Salvage:
    """What a damaged store database still holds: results that decode, and counts of what was lost."""

    results: list[Result]
    lost: int  # rows with a text key whose value does not decode (or belongs to another key)
    not_text: int  # rows whose key is not text: never results of this project
    damaged_cells: int  # cells of leaf pages that could not be read at all


def _candidates(db: Path) -> tuple[list[rows.Row], int]:
    """Rows as SQLite reads them row by row, then every row on the file's leaf pages (its tree may be cut)."""
    found = rows.readable_rows(db)[0]
    try:
        scanned = pagescan.scan(db)
    except OSError:
        return found, 0
    return found + scanned.rows, scanned.damaged_cells


def salvage(directory: Path) -> Salvage:
    """Every result in a (damaged) store database that still decodes: SQLite's reading and a page scan together."""
    kept: dict[str, Result] = {}
    failed: set[str] = set()
    not_text: set[int] = set()
    candidates, damaged_cells = _candidates(directory / DB)
    for row in candidates:
        if not row.text_key:
            not_text.add(row.rowid)
            continue
        if row.key in kept:
            continue
        try:
            blob = rows.value_of(row, directory)
            result = from_bytes(blob) if isinstance(blob, bytes) else None
        except (StoreError, OSError, TypeError, ValueError, RecursionError):
            result = None
        if result is not None and result.key == row.key:
            kept[row.key] = result
        else:
            failed.add(row.key)
    return Salvage(list(kept.values()), len(failed - set(kept)), len(not_text), damaged_cells)


def not_text_rows(db: Path) -> list[rows.Row]:
    """Rows whose key is not text (another program's): no reader can name them, so they go by rowid."""
    return [row for row in rows.readable_rows(db)[0] if not row.text_key]


def disk_note(directory: Path) -> str | None:
    """One line when the disk holding the store is full (checks still work; repairs need room)."""
    if not disk_is_full(directory):
        return None
    return f"the disk holding the store at {directory} is full ({disk_free(directory)} bytes free): {DISK_FULL_HINT}"


def _store_findings(directory: Path) -> list[Finding]:
    problem = integrity(directory / DB)
    if problem is not None:
        return [Finding("store database", str(directory / DB), problem,
                        "move it aside and keep every result that still decodes")]
    store = Store(directory)
    out = [Finding("result", key, reason, "delete it (its config can be run again)")
           for key, reason in store.problems().items()]
    out += [Finding("result row", str(row.rowid), row.describe(), "delete the row")
            for row in not_text_rows(directory / DB)]
    for name in sorted(value_files(directory) - referenced_files(directory / DB)):
        out.append(Finding("value file", name, "no result refers to it", "delete it"))
    return out


def _job_findings(store: Store) -> list[Finding]:
    db = store.directory / "jobs" / DB
    problem = integrity(db)
    if problem is not None:
        return [Finding("job table", str(db), problem, "move it aside and start an empty job table")]
    out = [Finding("job row", str(row.rowid), row.describe(), "delete the row") for row in not_text_rows(db)]
    out += [Finding("job record", job_id, reason, "delete it") for job_id, reason in doctor_queries.damaged(store).items()]
    out += [Finding("job entry", name, "belongs to no job", "delete it") for name in doctor_queries.orphans(store)]
    out += [Finding("stale job", job_id, reason, "mark it failed") for job_id, reason in doctor_queries.stale(store).items()]
    out += [Finding("reserve file", path.name, f"left by worker process {pid}, which is gone", "delete it")
            for path, pid in stale_reserves(store.directory)]
    return out + _checkpoint_findings(store)


def stale_reserves(directory: Path) -> list[tuple[Path, int]]:
    """The reserve files (jobs/reserve-PID, worker.py) whose worker is no longer running."""
    out = []
    for path in sorted((directory / "jobs").glob("reserve-*")):
        pid = path.name[len("reserve-"):]
        if pid.isdigit() and not records.process_alive(int(pid), None):
            out.append((path, int(pid)))
    return out


def _checkpoint_findings(store: Store) -> list[Finding]:
    """Checkpoints no live job and no run still training owns: a cancelled, stopped or finished run's saved state
    (a checkpoint saved at a cancel or at the end of training says so, whether or not its writer lives on)."""
    live = {job.key for job in records.list_jobs(store) if not job.finished}
    out = []
    for saved in checkpoints.listing(store.directory):
        writing = not saved.doc.get("stopped") and _writer_alive(saved.doc.get("writer")) if saved.doc else False
        if saved.problem is None and (checkpoints.run_name(saved.name) in live or writing):  # inline runs are no jobs
            continue
        if saved.problem is not None and ".tmp-" in saved.file and _writer_alive({"pid": saved.file.rsplit("-", 1)[1]}):
            continue  # being written now
        stored = saved.problem is None and store.has(checkpoints.run_name(saved.name))
        steps = (saved.doc or {}).get("steps") or [0]
        problem = saved.problem or (f"its run's result is stored (saved at step {max(steps)})" if stored else
                                    f"belongs to no live job (saved at step {max(steps)}, {saved.bytes / 1e6:.1f} MB): "
                                    "running its config again resumes it")
        out.append(Finding("checkpoint", saved.file, problem, "delete it"))
    return out


def _writer_alive(writer) -> bool:
    try:
        return processes.process_alive(int(writer["pid"]), writer.get("start"))
    except (TypeError, KeyError, ValueError):
        return False


def check(directory: Path) -> list[Finding]:
    """Every problem of the store at directory and of its job table."""
    findings = _store_findings(directory)
    if any(f.what == "store database" for f in findings):
        return findings  # the job table is checked once the store opens again
    return findings + _job_findings(Store(directory))


def _move_aside(db: Path) -> Path:
    """Rename a database and its WAL files to <name>.damaged-<time>; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = db.with_name(db.name + suffix)
        if part.exists():
            part.rename(target.with_name(target.name + suffix))
    return target


def repair(directory: Path, findings: list[Finding], say=print) -> None:
    """Fix every finding (see the module docstring); `say` gets one line per action.

    Raises DiskFull, changing nothing, when the disk has no room for the repair.
    """
    note = disk_note(directory)
    if note is not None:
        raise DiskFull(f"not repairing: {note}")
    for finding in findings:
        say(f"repairing {finding.line()}")
    if any(f.what == "store database" for f in findings):
        _salvage_database(directory, say)
        return repair(directory, _store_findings(directory) + _job_findings(Store(directory)), say)
    store = Store(directory)
    for finding in findings:
        _repair_one(store, finding)


def _salvage_database(directory: Path, say) -> None:
    """Move the damaged database aside and store every result it still holds; say what was kept and lost."""
    found = salvage(directory)
    moved = _move_aside(directory / DB)
    say(f"moved the damaged database to {moved.name}; kept {len(found.results)} results, lost {found.lost} "
        f"whose values do not decode" + (f" and {found.damaged_cells} unreadable cells" if found.damaged_cells else "")
        + (f"; left out {found.not_text} rows whose key is not text" if found.not_text else ""))
    Store(directory).put_many(found.results)
    missing = bundles.shipped_missing(Store(directory))
    if missing:
        say(f"{missing} shipped results were not among those kept: they are loaded again from "
            f"{bundles.PRECOMPUTED} at the next start (HIERPOLY_LOAD_PRECOMPUTED=0 leaves them out)")


def _repair_one(store: Store, finding: Finding) -> None:
    if finding.what == "result":
        store.delete(finding.name)  # a value file outside the store stays (store._NoPickleDisk.remove)
    elif finding.what == "result row":
        _delete_row(store.directory, int(finding.name))
    elif finding.what == "value file":
        rows.entry_inside(store.directory, finding.name).unlink(missing_ok=True)  # a link goes, its target stays
    elif finding.what == "job table":
        records.forget_table(store)
        _move_aside(Path(finding.name))
    elif finding.what == "job record":
        doctor_queries.remove(finding.name, store)
    elif finding.what == "job entry":
        doctor_queries.remove_entries([finding.name], store)
    elif finding.what == "job row":
        rows.delete(store.directory / "jobs" / DB, int(finding.name))
    elif finding.what == "stale job":
        scheduler.supervise(store)
    elif finding.what == "reserve file":
        (store.directory / "jobs" / finding.name).unlink(missing_ok=True)
    elif finding.what == "checkpoint":
        checkpoints.remove(store.directory, finding.name)


def _delete_row(directory: Path, rowid: int) -> None:
    """Delete a row by rowid, and its value file when that lies inside the store."""
    db = directory / DB
    try:
        con = rows.connect(db)
        try:
            row = rows.read(con, rowid)
        finally:
            con.close()
    except sqlite3.Error:
        row = None
    rows.delete(db, rowid)
    if row is not None and row.filename:
        try:
            rows.entry_inside(directory, row.filename).unlink(missing_ok=True)
        except StoreError:
            pass  # outside the store: never touched
