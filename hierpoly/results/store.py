"""Finished runs on disk: a diskcache of results in the format of codec.py.

Nothing here ever unpickles: the diskcache ``Disk`` used refuses to store or fetch
pickled values. The cache never evicts (``eviction_policy='none'``): diskcache's
default 1 GiB limit would cull results while ``set`` still returns True.

Values are kept inside SQLite (not in side files) so that ``put_many`` is one
transaction: a failed or interrupted import, a full disk included, leaves the
store as it was. Stores written by older versions keep some values in files;
those are still read, and a value whose file is gone counts as missing.

Damage never escapes as a raw database error: opening and reading raise
``StoreError`` with one line saying what is wrong and what to do, and listing
reports unreadable entries one by one (``problems``, ``summaries``). A row whose
key is not text (another program wrote it) is skipped by every listing and
counted in ``notes``; a value file whose path leaves the store is never read or
deleted. A full disk is not damage: it raises ``DiskFull``, and a store on a full
disk still opens, read-only (rows.py).

The store counts its changes: SQLite triggers on the results table add one to a counter
in the same database for every row inserted, changed or deleted, by whichever process or
program writes (``version``). ``summaries`` keeps its table per store and version, so a
page rerun reads no result while nothing has changed.
"""
from __future__ import annotations

import errno
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import diskcache

from hierpoly import locations
from hierpoly.failure import first_line
from hierpoly.results import rows
from hierpoly.results.codec import MEMBERS, Result, StoreError, decode_doc, from_bytes, read_zip, to_bytes

INLINE_BYTES = 1 << 26  # values up to 64 MiB stay in SQLite, so transactions cover them
SPACE_MARGIN = 1 << 20  # bytes kept free beyond a write's own size (SQLite's pages, the job table)
REPAIR_HINT = "run `python -m hierpoly doctor --repair`"
DISK_FULL_HINT = "free some space or point HIERPOLY_CACHE_DIR at another disk"


class DiskFull(StoreError):
    """A write refused or failed because the disk holding the store is full (not damage: nothing to repair)."""


class _NoPickleDisk(diskcache.Disk):
    """diskcache's Disk without pickle: keys must be str, values bytes or str."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"store keys must be text, got {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:  # a pickled key: listed as such, never unpickled
            return rows.NOT_TEXT
        key = super().get(key, raw)
        return key if isinstance(key, str) else rows.NOT_TEXT

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not read and not isinstance(value, (bytes, str)):
            raise TypeError(f"store values must be bytes or text, got {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise StoreError("refusing to unpickle a value from the store")
        if filename is not None:
            rows.inside(self._directory, filename)  # a crafted ../ path is never read
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path):
        try:
            entry = rows.entry_inside(self._directory, file_path)
        except StoreError:
            return  # a crafted ../ path: the row goes, the file outside the store stays
        if entry.is_symlink():
            entry.unlink()  # the link goes; what it points at is never followed
            return
        super().remove(file_path)


def open_cache(directory: Path, log_pages: int | None = None):
    """A diskcache that never evicts, never pickles and keeps no statistics; read-only on a full disk.

    log_pages: checkpoint the write-ahead log at this many pages and cut it back to that
    size after (the job table's many small writes would otherwise grow it by megabytes).
    """
    settings = {}
    if log_pages is not None:
        settings = {"sqlite_wal_autocheckpoint": log_pages, "sqlite_journal_size_limit": log_pages * 4096}
    try:
        return diskcache.Cache(
            str(directory),
            disk=_NoPickleDisk,
            eviction_policy="none",  # results are never culled silently
            cull_limit=0,
            size_limit=2**62,
            statistics=False,
            tag_index=False,
            disk_min_file_size=INLINE_BYTES,
            **settings,
        )
    except GUARDED as err:
        # diskcache writes its settings on every open, which a full disk refuses: read without it
        if not (is_disk_full(err, directory) and (Path(directory) / "cache.db").exists()):
            raise
        return rows.ReadOnlyCache(Path(directory), damage_error(err, "the store", Path(directory)))


def disk_free(directory: Path) -> int | None:
    """Free bytes on the disk holding directory (or its nearest existing parent: a folder that a full
    disk could not create is on that disk), None when unknown."""
    path = Path(directory)
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_is_full(directory: Path) -> bool:
    """Whether the disk holding directory has less than SPACE_MARGIN free (False when unknown)."""
    free = disk_free(directory)
    return free is not None and free < SPACE_MARGIN


def is_disk_full(err: BaseException, directory: Path | None = None) -> bool:
    """SQLite's SQLITE_FULL, an OS ENOSPC/EDQUOT, or an I/O error on a disk with (almost) no room left.

    SQLite reports a full disk as a plain "disk I/O error" when it cannot make its
    shared-memory file, so that error counts as a full disk where the disk is full.
    """
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(err, sqlite3.OperationalError) and "full" in str(err).lower():
        return True
    return directory is not None and isinstance(err, (sqlite3.Error, OSError)) and disk_is_full(directory)


def damage_error(err: BaseException, what: str, directory: Path) -> StoreError:
    """One line for a database or file error met while reading or writing `what` at `directory`."""
    if is_disk_full(err, directory):
        return DiskFull(f"the disk holding {what} at {directory} is full: {DISK_FULL_HINT}; nothing was changed")
    if isinstance(err, diskcache.Timeout):
        return StoreError(f"{what} at {directory} is busy (locked by another process for too long); try again")
    detail = first_line(err)
    return StoreError(f"{what} at {directory} cannot be read ({detail}): {REPAIR_HINT}")


GUARDED = (sqlite3.Error, OSError, diskcache.Timeout)


CREATING_S = 5.0  # how long a database may stay at 0 bytes while another process creates it


def stays_empty(db: Path, wait: float | None = None) -> bool:
    """Whether db is a file of 0 bytes and stays so for `wait` seconds (default CREATING_S).

    A process creating a database leaves it empty for a moment (SQLite writes its first page
    when it sets up the file); one that stays empty was cut short, and SQLite would open it as
    a database without tables, every row gone without a word.
    """
    deadline = time.monotonic() + (CREATING_S if wait is None else wait)
    while db.is_file() and db.stat().st_size == 0:
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
    return False


def refuse_empty_file(db: Path, what: str) -> None:
    """StoreError for a database cut to zero bytes (`stays_empty`), before SQLite opens it as an empty one."""
    if stays_empty(db):
        raise StoreError(f"{what} at {db.parent} cannot be read (its database file is empty: 0 bytes, cut short): "
                         f"{REPAIR_HINT}")


def default_dir() -> Path:
    """$HIERPOLY_CACHE_DIR, else cache/store in a checkout, else the user's cache folder (locations.py)."""
    return locations.default_store_dir()


_summaries: dict[str, tuple[tuple, object]] = {}  # directory -> (version, summaries table)
_listings: dict[str, tuple[tuple, list[str], list[int]]] = {}  # directory -> (version, text keys, rowids not text)


def count_changes(cache, prefix: str = "") -> None:
    """Give a diskcache database its change counter (idempotent): SQLite triggers add one for every row
    inserted, changed or deleted whose key starts with `prefix`, by whichever process or program writes."""
    if isinstance(cache, rows.ReadOnlyCache):
        return  # a full disk: nothing changes it, nothing is counted
    with cache.transact():
        cache._sql("CREATE TABLE IF NOT EXISTS HierpolyVersion (epoch TEXT NOT NULL, changes INTEGER NOT NULL)")
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            when = f"WHEN substr({row}.key, 1, {len(prefix)}) = '{prefix}' " if prefix else ""
            cache._sql(f"CREATE TRIGGER IF NOT EXISTS hierpoly_version_{event.lower()} AFTER {event} ON Cache {when}"
                       "BEGIN UPDATE HierpolyVersion SET changes = changes + 1; END")
        if cache._sql("SELECT count(*) FROM HierpolyVersion").fetchone()[0] == 0:
            cache._sql("INSERT INTO HierpolyVersion VALUES (?, 0)", (uuid.uuid4().hex,))


def changes(cache) -> tuple[str, int] | None:
    """(epoch, changes) of a database given a counter by ``count_changes``; None when it has none (read-only).
    The epoch is drawn when the counter is made, so a database rebuilt by doctor never repeats a version."""
    if isinstance(cache, rows.ReadOnlyCache):
        return None
    row = cache._sql("SELECT epoch, changes FROM HierpolyVersion").fetchone()
    return None if row is None else (row[0], int(row[1]))


class Store:
    """Results by config key. Safe to share between threads and processes (diskcache/SQLite)."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            refuse_empty_file(self.directory / "cache.db", "the store")
            self._cache = open_cache(self.directory)
            count_changes(self._cache)
        except GUARDED as err:
            raise damage_error(err, "the store", self.directory) from None

    @classmethod
    def salvaged(cls, directory: str | Path, err: StoreError) -> Store:
        """A store whose database SQLite cannot open, read as far as it can be (``degrade``), for the pages."""
        store = cls.__new__(cls)
        store.directory = Path(directory).expanduser()
        store.tolerate_damage()
        store.degrade(err)
        return store

    tolerant = False  # pages: reads that meet damage degrade (see `tolerate_damage`) instead of raising
    damage: str | None = None  # set when reads degraded: the one line a page's banner shows

    def version(self) -> tuple[str, int] | None:
        """Different after every change to the stored rows, by any process (``changes``); None when not counted
        (read-only, or read from a damaged database)."""
        def read():
            with self._guard():
                return changes(self._cache)
        return self.tolerated(read, None)

    @contextmanager
    def _guard(self):
        """Database and file errors become one-line StoreErrors."""
        try:
            yield
        except GUARDED as err:
            raise damage_error(err, "the store", self.directory) from None

    def tolerate_damage(self) -> None:
        """For the pages: a read that meets a damaged database switches this store to reading what it still can,
        row by row and from the file's leaf pages (``pagescan.SalvageCache``), and says so in ``damage``;
        a read that still fails answers empty (no result, no keys). Writes still raise StoreError."""
        self.tolerant = True

    def degrade(self, err: StoreError) -> None:
        """Read the rest of the session from whatever the damaged database still holds (see `tolerate_damage`)."""
        from hierpoly.results.pagescan import SalvageCache

        if self.damage is not None:
            return
        self.damage = f"{first_line(err)} (showing the results that can still be read)"
        old, self._cache = getattr(self, "_cache", None), SalvageCache(self.directory, StoreError(self.damage))
        try:
            if old is not None:
                old.close()
        except GUARDED:
            pass

    def tolerated(self, read, empty, degrade=None):
        """read(), or for a tolerant store after a damage error: read() again once `degrade(err)` (default: this
        store's own `degrade`) has switched to what can still be read, else `empty`."""
        try:
            return read()
        except StoreError as err:
            if not self.tolerant:
                raise
            if not isinstance(err, DiskFull):
                (degrade or self.degrade)(err)
        try:
            return read()
        except StoreError:
            return empty

    def raw(self, key: str) -> bytes | None:
        """The stored bytes of a result, or None when absent or its value file is gone."""
        value = self.tolerated(lambda: self._get(key), None)
        if value is not None and not isinstance(value, bytes):
            raise StoreError(f"stored value for {key[:16]} is not a result")
        return value

    def get(self, key: str) -> Result | None:
        """The stored result, or None; a stored value that fails validation raises StoreError."""
        value = self.raw(key)
        if value is None:
            return None
        result = from_bytes(value)
        if result.key != key:
            raise StoreError(f"stored value for {key[:16]} belongs to another config")
        return result

    def _get(self, key: str):
        with self._guard():
            return self._cache.get(key)  # diskcache answers None when a value file is missing

    def put(self, result: Result, overwrite: bool = False) -> None:
        """Store a finished run once (the first write wins unless overwrite), then read it back to verify.

        A key whose stored value cannot be fetched (its value file is gone, or it holds a
        refused encoding) counts as missing, so a rerun replaces it.
        """
        self.put_many([result], overwrite=overwrite)

    def put_many(self, results: Iterable[Result], overwrite: bool = False) -> list[str]:
        """Add results in one transaction, all or none; returns the keys written.

        Keys already stored (and readable) are kept unless overwrite: a concurrent
        writer's results are never replaced or removed. Every value is read back and
        decoded before the transaction commits. Raises StoreError, leaving the store unchanged.
        """
        values = {result.key: to_bytes(result) for result in results}
        self._check_space(sum(len(v) for v in values.values()))
        written = []
        try:
            with self._guard(), self._cache.transact():
                for key, value in values.items():
                    if not overwrite and self._readable(key):
                        continue
                    self._cache.set(key, value)
                    if self._cache.get(key) != value:
                        raise StoreError(f"result {key[:16]} did not read back as written")
                    written.append(key)
        except StoreError:
            self._shrink_log()
            raise
        return written

    def _check_space(self, size: int) -> None:
        """Refuse before writing when the disk cannot hold size bytes twice (the log, then the database)."""
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return  # unknown: the transaction still keeps the store whole
        if free < 2 * size + SPACE_MARGIN:
            raise DiskFull(f"the disk holding the store at {self.directory} is full: writing needs about "
                           f"{(2 * size + SPACE_MARGIN) / 1e6:.1f} MB, {free / 1e6:.1f} MB are free; "
                           f"{DISK_FULL_HINT}; nothing was changed")

    def _shrink_log(self) -> None:
        """Give back the write-ahead log a failed transaction grew (it would keep a full disk full)."""
        if self.read_only:
            return
        self._cache.close()  # reopened on next use
        try:
            con = sqlite3.connect(str(self.directory / "cache.db"), timeout=5)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
        except sqlite3.Error:
            pass  # best effort: other readers may hold the log; SQLite reuses it either way

    def _readable(self, key: str) -> bool:
        try:
            return self._cache.get(key) is not None
        except StoreError:
            return False

    def has(self, key: str) -> bool:
        """Whether a value can be fetched for key (a row whose value file is gone does not count)."""
        def read():
            with self._guard():
                return self._readable(key)
        return self.tolerated(read, False)

    def delete(self, key: str) -> bool:
        with self._guard():
            return bool(self._cache.delete(key))

    def keys(self) -> list[str]:
        """Every text key with a row in the store, readable or not (rows with other keys: `notes`).

        Listed again only when the store's version has changed since this process last listed it.
        """
        version, kept = self.version(), _listings.get(str(self.directory))
        if version is not None and kept is not None and kept[0] == version:
            self._not_text = kept[2]
            return list(kept[1])

        def read():
            with self._guard():
                return rows.listing(self._cache)
        listed = self.tolerated(read, [])
        text = sorted(key for _, key in listed if isinstance(key, str))
        self._not_text = [rowid for rowid, key in listed if not isinstance(key, str)]
        if version is not None:
            _listings[str(self.directory)] = (version, text, self._not_text)
        return list(text)

    def notes(self) -> list[str]:
        """One line for the rows the last listing skipped (rows whose key is not text), by rowid."""
        skipped = getattr(self, "_not_text", [])
        if not skipped:
            return []
        return [f"skipped {len(skipped)} row(s) of the store whose key is not text (written by another "
                f"program; rowid {rows.rowid_list(skipped)}): {REPAIR_HINT} removes them"]

    @property
    def read_only(self) -> bool:
        """Opened on a full disk: reads work, writes raise DiskFull."""
        return isinstance(self._cache, rows.ReadOnlyCache)

    def results(self) -> Iterator[Result]:
        """Every readable result; those that fail validation are skipped (see `summaries`)."""
        for key in self.keys():
            try:
                result = self.get(key)
            except StoreError:
                continue
            if result is not None:
                yield result

    def check(self, key: str, full: bool = False) -> tuple[dict | None, str | None]:
        """(result.json as decoded, None) for a readable entry, else (None, why not in one line).

        full: decode every member (arrays too), not just result.json.
        """
        try:
            value = self.raw(key)
            if value is None:
                return None, "its value file is missing"
            if full:
                result = from_bytes(value)
                if result.key != key:
                    raise StoreError("stored under another config's key")
            doc = decode_doc(read_zip(value, set(MEMBERS), len(MEMBERS), 128 << 20)["result.json"])
            if doc["key"] != key:
                raise StoreError("stored under another config's key")
        except StoreError as err:
            return None, str(err)
        return doc, None

    def problems(self, full: bool = True) -> dict[str, str]:
        """Every entry that cannot be used, with the reason: {key: reason}."""
        out = {}
        for key in self.keys():
            _, reason = self.check(key, full=full)
            if reason is not None:
                out[key] = reason
        return out

    def summaries(self):
        """One row per stored result (reads only result.json of each): a pandas DataFrame, a copy.

        Results that fail validation — from an older version of hierpoly (their keys no
        longer match their configs), damaged, or whose value file is gone — get no row;
        their keys are listed in ``table.attrs["unreadable"]`` and the reasons in
        ``table.attrs["problems"]`` so a page can say so instead of failing.
        ``table.attrs["version"]`` is (directory, ``version()``) when counted: what was
        derived from one table holds for every table of the same version. While the
        version stands, the table is not read again (this process keeps one per store).
        """
        version = self.version()
        kept = _summaries.get(str(self.directory))
        if version is not None and kept is not None and kept[0] == version:
            self.keys()  # what the listing skipped, for `notes` (kept per version too)
            return kept[1].copy()
        table = self._read_summaries()
        if version is not None:
            table.attrs["version"] = (str(self.directory), version)
            _summaries[str(self.directory)] = (version, table.copy())
        return table

    def _read_summaries(self):
        import pandas as pd

        rows, problems = [], {}
        for key in self.keys():
            doc, reason = self.check(key)
            if doc is None:
                problems[key] = reason
            else:
                rows.append(_summary_row(key, doc))
        table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
        table.attrs["unreadable"] = list(problems)
        table.attrs["problems"] = problems
        table.attrs["notes"] = self.notes()
        return table

    def size_bytes(self) -> int:
        def read():
            with self._guard():
                return int(self._cache.volume())
        return self.tolerated(read, self._file_bytes())

    def _file_bytes(self) -> int:
        """The database files' size on disk (what `size_bytes` says where SQLite cannot be asked)."""
        return sum(p.stat().st_size for p in self.directory.glob("cache.db*") if p.is_file())

    def __len__(self) -> int:
        return len(self.keys()) if self.tolerant else self._count()

    def _count(self) -> int:
        with self._guard():
            return len(self._cache)

    def close(self) -> None:
        self._cache.close()


SUMMARY_COLUMNS = [
    "key", "d", "n", "k", "link", "sigma1", "m1", "m2", "arch", "mode", "seed", "steps", "lr", "n_test",
    "status", "test_loss", "test_loss_se", "mean_h2", "feature_corr", "train_loss", "steps_run", "stopped_by",
    "converged", "seconds", "created", "source",
]


def _summary_row(key: str, doc: dict) -> dict:
    cfg, meta, metrics = doc["config"], doc["meta"], doc["metrics"]
    return {
        "key": key, "d": cfg.d, "n": cfg.n, "k": cfg.k, "link": cfg.link, "sigma1": cfg.sigma1,
        "m1": cfg.m1, "m2": cfg.m2, "arch": cfg.arch, "mode": cfg.mode, "seed": cfg.seed,
        "steps": cfg.steps, "lr": cfg.lr, "n_test": cfg.n_test, "status": doc["status"],
        "test_loss": metrics.get("test_loss"), "test_loss_se": metrics.get("test_loss_se"),
        "mean_h2": metrics.get("mean_h2"), "feature_corr": metrics.get("feature_corr"),
        "train_loss": metrics.get("train_loss"), "steps_run": meta.get("steps"),
        "stopped_by": meta.get("stopped_by"),  # plateau, step cap, closed form, fixed steps (runner.stopping)
        "converged": meta.get("converged"),
        "seconds": meta.get("seconds"), "created": meta.get("created"),
        "source": cfg.source,  # a transfer's source run key; None for every other run
    }
