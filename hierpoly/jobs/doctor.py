"""Check a store and its job table; repair what cannot be read: ``python -m hierpoly doctor [--repair]``.

Checks: SQLite's integrity check of both databases, that every stored value
decodes (a missing value file, a pickled row, a damaged zip), rows whose key is
not text, value files no row refers to, damaged job records, table entries of no
job, and running jobs whose worker is gone. Repair says what it removes, then:
moves a damaged database aside (keeping every result that still decodes, read
row by row: rows.py), deletes unreadable results, rows with other keys (by
rowid), orphan files, damaged records and orphan entries, and records stale jobs
(``scheduler.supervise``, which also starts a worker for the jobs queued behind them).
Value files outside the store's directory are never read or deleted.

A full disk is not damage: checking works on it (read-only), repairing waits for room.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hierpoly.jobs import doctor_queries, records, scheduler
from hierpoly.results import rows
from hierpoly.results.codec import Result, StoreError, from_bytes
from hierpoly.results.store import DISK_FULL_HINT, DiskFull, Store, disk_free, disk_is_full

DB = "cache.db"


@dataclass(frozen=True)
class Finding:
    """One problem: what it concerns, what is wrong, what --repair does."""

    what: str  # store database | result | result row | value file | job table | job record | job entry | stale job
    name: str
    problem: str
    repair: str

    def line(self) -> str:
        return f"{self.what} {self.name}: {self.problem} -> {self.repair}"


def integrity(db: Path) -> str | None:
    """None when SQLite's integrity check passes (or there is no database yet), else the problem."""
    if not db.exists():
        return None
    try:
        con = rows.connect(db)
        try:
            report = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        return str(err)
    return None if report == [("ok",)] else "; ".join(str(r[0]) for r in report[:3])


def value_files(directory: Path) -> set[str]:
    """Value files (diskcache's ``*.val``) under a cache directory, relative paths."""
    return {str(p.relative_to(directory)) for p in directory.glob("*/*/*.val")}


def referenced_files(db: Path) -> set[str]:
    return {row.filename for row in rows.readable_rows(db)[0] if row.filename}


def salvage(directory: Path) -> list[Result]:
    """Every result in a (damaged) store database that still decodes, read row by row without diskcache."""
    results = []
    for row in rows.readable_rows(directory / DB)[0]:
        try:
            if not row.text_key:
                continue
            blob = rows.value_of(row, directory)
            if not isinstance(blob, bytes):
                continue
            result = from_bytes(blob)
            if result.key == row.key:
                results.append(result)
        except (StoreError, OSError, TypeError, ValueError):
            continue
    return results


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
    out = [Finding("job record", job_id, reason, "delete it") for job_id, reason in doctor_queries.damaged(store).items()]
    out += [Finding("job entry", name, "belongs to no job", "delete it") for name in doctor_queries.orphans(store)]
    out += [Finding("stale job", job_id, reason, "mark it failed") for job_id, reason in doctor_queries.stale(store).items()]
    return out


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
        kept = salvage(directory)
        moved = _move_aside(directory / DB)
        say(f"moved the damaged database to {moved.name}; keeping {len(kept)} readable results")
        Store(directory).put_many(kept)
        return repair(directory, _store_findings(directory) + _job_findings(Store(directory)), say)
    store = Store(directory)
    for finding in findings:
        _repair_one(store, finding)


def _repair_one(store: Store, finding: Finding) -> None:
    if finding.what == "result":
        store.delete(finding.name)  # a value file outside the store stays (store._NoPickleDisk.remove)
    elif finding.what == "result row":
        _delete_row(store.directory, int(finding.name))
    elif finding.what == "value file":
        rows.inside(store.directory, finding.name).unlink(missing_ok=True)
    elif finding.what == "job table":
        records.forget_table(store)
        _move_aside(Path(finding.name))
    elif finding.what == "job record":
        doctor_queries.remove(finding.name, store)
    elif finding.what == "job entry":
        doctor_queries.remove_entries([finding.name], store)
    elif finding.what == "stale job":
        scheduler.supervise(store)


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
            rows.inside(directory, row.filename).unlink(missing_ok=True)
        except StoreError:
            pass  # outside the store: never touched
