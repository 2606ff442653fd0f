"""Check a store and its job table; repair what cannot be read: ``python -m hierpoly doctor [--repair]``.

Checks: SQLite's integrity check of both databases, that every stored value
decodes (a missing value file, a pickled row, a damaged zip), value files no
row refers to, damaged job records, table entries of no job, and running jobs
whose worker is gone. Repair says what it removes, then: moves a damaged
database aside (keeping every result that still decodes), deletes unreadable
results, orphan files, damaged records and orphan entries, and marks stale jobs.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from hierpoly.jobs import table as jobs
from hierpoly.results.codec import Result, StoreError, from_bytes
from hierpoly.results.store import Store

DB = "cache.db"


@dataclass(frozen=True)
class Finding:
    """One problem: what it concerns, what is wrong, what --repair does."""

    what: str  # store database | result | value file | job table | job record | job entry | stale job
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
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        return str(err)
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def _rows(db: Path) -> list[tuple]:
    """(key, raw, mode, filename, value) of every Cache row SQLite can still read, best effort."""
    out = []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            for row in con.execute("SELECT key, raw, mode, filename, value FROM Cache"):
                out.append(row)
        finally:
            con.close()
    except sqlite3.Error:
        pass  # keep what was read before the damage
    return out


def value_files(directory: Path) -> set[str]:
    """Value files (diskcache's ``*.val``) under a cache directory, relative paths."""
    return {str(p.relative_to(directory)) for p in directory.glob("*/*/*.val")}


def referenced_files(db: Path) -> set[str]:
    return {row[3] for row in _rows(db) if row[3]}


def salvage(directory: Path) -> list[Result]:
    """Every result in a (damaged) store database that still decodes, read without diskcache."""
    results = []
    for key, raw, mode, filename, value in _rows(directory / DB):
        try:
            if not raw or mode not in (1, 2):  # raw text keys; values stored raw (1) or in a binary file (2)
                continue
            blob = bytes(value) if mode == 1 else (directory / filename).read_bytes()
            result = from_bytes(blob)
            if result.key == key:
                results.append(result)
        except (StoreError, OSError, TypeError, ValueError):
            continue
    return results


def _store_findings(directory: Path) -> list[Finding]:
    problem = integrity(directory / DB)
    if problem is not None:
        return [Finding("store database", str(directory / DB), problem,
                        "move it aside and keep every result that still decodes")]
    store = Store(directory)
    out = [Finding("result", key, reason, "delete it (its config can be run again)")
           for key, reason in store.problems().items()]
    for name in sorted(value_files(directory) - referenced_files(directory / DB)):
        out.append(Finding("value file", name, "no result refers to it", "delete it"))
    return out


def _job_findings(store: Store) -> list[Finding]:
    db = store.directory / "jobs" / DB
    problem = integrity(db)
    if problem is not None:
        return [Finding("job table", str(db), problem, "move it aside and start an empty job table")]
    out = [Finding("job record", job_id, reason, "delete it") for job_id, reason in jobs.damaged(store).items()]
    out += [Finding("job entry", name, "belongs to no job", "delete it") for name in jobs.orphans(store)]
    out += [Finding("stale job", job_id, reason, "mark it failed") for job_id, reason in jobs.stale(store).items()]
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
    """Fix every finding (see the module docstring); `say` gets one line per action."""
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
        store.delete(finding.name)
    elif finding.what == "value file":
        (store.directory / finding.name).unlink(missing_ok=True)
    elif finding.what == "job table":
        jobs.forget_table(store)
        _move_aside(Path(finding.name))
    elif finding.what == "job record":
        jobs.remove(finding.name, store)
    elif finding.what == "job entry":
        jobs.remove_entries([finding.name], store)
    elif finding.what == "stale job":
        jobs.supervise(store)
