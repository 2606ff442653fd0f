"""The rows of a diskcache database read one at a time with plain SQLite, for when diskcache cannot help.

Two readers need this: ``doctor`` salvaging results from a damaged database, and a
store on a full disk (diskcache writes its settings each time it opens a database,
so it cannot open one there). Both go row by row:

- rowids are listed first; a listing that stops at a damaged page is completed by
  looking up every rowid up to the largest one seen, one by one;
- each row is then read by its rowid alone, so one unreadable row (or the row SQLite
  would have read ahead of it) costs that row only;
- a value file is read only when its path stays inside the store's directory;
- a file cut short (SQLite then refuses the whole database, its header promising
  more pages than there are) is read from a copy whose header counts the pages left.

Columns are diskcache's: ``key, raw, mode, filename, value``; mode 1 keeps the value
in the row, 2 and 3 in a file, 4 is pickled (never read).
"""
from __future__ import annotations

import sqlite3
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hierpoly.results.codec import StoreError

MODE_RAW, MODE_BINARY, MODE_TEXT, MODE_PICKLE = 1, 2, 3, 4  # diskcache.core's value modes
MAX_PROBES = 1 << 20  # rowids looked up one by one after a listing stopped early


@dataclass(frozen=True)
class Row:
    """One row of diskcache's Cache table, as stored."""

    rowid: int
    key: object  # str for every row this project writes
    raw: bool  # False: the key was pickled by another program
    mode: int
    filename: str | None
    value: object

    @property
    def text_key(self) -> bool:
        return self.raw and isinstance(self.key, str)

    def describe(self) -> str:
        """The row in a few words, without decoding its key."""
        kind = "a pickled key" if not self.raw else f"a {type(self.key).__name__} key"
        return f"row {self.rowid} has {kind}, not text"


def inside(directory: Path, filename: str) -> Path:
    """The path of a value file, refused (StoreError) when it leaves the directory (``../``, absolute)."""
    base = Path(directory).resolve()
    path = (base / filename).resolve()
    if base not in path.parents:
        raise StoreError(f"value file path {filename!r} leaves the store: refused")
    return path


def entry_inside(directory: Path, filename: str) -> Path:
    """The path of a directory entry to delete, its last part not followed (a link is removed as a link);
    StoreError when the entry itself lies outside the directory."""
    base = Path(directory).resolve()
    path = base / filename
    entry = path.parent.resolve() / path.name
    if base not in entry.parents or path.name in ("", ".", ".."):
        raise StoreError(f"value file path {filename!r} leaves the store: refused")
    return entry


def value_of(row: Row, directory: Path) -> bytes | str | None:
    """The row's value: bytes or text, None when its value file is gone; StoreError for a pickled one."""
    if row.mode == MODE_RAW:
        return bytes(row.value) if isinstance(row.value, (bytes, memoryview)) else row.value
    if row.mode in (MODE_BINARY, MODE_TEXT):
        path = inside(directory, row.filename or "")
        try:
            return path.read_bytes() if row.mode == MODE_BINARY else path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise StoreError(f"value file {row.filename} cannot be read ({err})") from None
    if row.mode == MODE_PICKLE:
        raise StoreError("refusing to unpickle a value from the store")
    raise StoreError(f"row {row.rowid} has an unknown value mode {row.mode}")


def connect(db: Path, timeout: float = 30.0) -> sqlite3.Connection:
    """A read-only connection; on a full disk (no room for SQLite's shared-memory file) an immutable one.

    Each is used by the one thread that opened it (ReadOnlyCache keeps one per thread); any thread may close it.
    """
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout, check_same_thread=False)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.Error:
        # immutable: no locks, no -shm file; changes still in the write-ahead log are not seen
        return sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True, timeout=timeout, check_same_thread=False)


def problems(db: Path, pragma: str = "quick_check") -> list[str] | None:
    """None when SQLite's own check of db (``quick_check`` or ``integrity_check``) passes, else its problem lines
    (or why it cannot run)."""
    try:
        con = connect(db)
        try:
            report = con.execute(f"PRAGMA {pragma}").fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        return [str(err)]
    if report == [("ok",)]:
        return None
    return [line for r in report for line in str(r[0]).splitlines() if not line.startswith("***")] or [
        f"the {pragma.replace('_', ' ')} failed"]


def quick_check(db: Path) -> str | None:
    """None when SQLite's quick_check of db passes, else its first problem (or why it cannot run)."""
    lines = problems(db)
    return None if lines is None else "; ".join(lines[:2])


def rowids(con: sqlite3.Connection) -> list[int]:
    """Every rowid SQLite can find, listed first so that each row is read on its own."""
    seen: set[int] = set()
    complete = False
    for query in ("SELECT rowid FROM Cache NOT INDEXED", "SELECT rowid FROM Cache INDEXED BY Cache_key_raw"):
        try:
            for (rowid,) in con.execute(query):
                seen.add(rowid)
            complete = True
        except sqlite3.Error:
            continue  # the other path through the file may pass the damage
    if complete:
        return sorted(seen)
    try:
        top = con.execute("SELECT max(rowid) FROM Cache").fetchone()[0] or 0
    except sqlite3.Error:
        top = 0
    top = max([top, *seen])
    for rowid in range(1, min(top, MAX_PROBES) + 1):
        if rowid not in seen:
            try:
                if con.execute("SELECT 1 FROM Cache WHERE rowid = ?", (rowid,)).fetchone():
                    seen.add(rowid)
            except sqlite3.Error:
                continue
    return sorted(seen)


def read(con: sqlite3.Connection, rowid: int) -> Row | None:
    """One row by its rowid, None when absent; sqlite3.Error when its page is damaged."""
    found = con.execute("SELECT key, raw, mode, filename, value FROM Cache WHERE rowid = ?", (rowid,)).fetchone()
    if found is None:
        return None
    key, raw, mode, filename, value = found
    return Row(rowid, key, bool(raw), int(mode or 0), filename, value)


def _opens(db: Path) -> bool:
    try:
        con = connect(db)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return True


def _whole_pages(db: Path, folder: Path) -> Path | None:
    """A copy of a truncated database cut to whole pages, its header's page count (offset 28) set to them."""
    try:
        data = bytearray(db.read_bytes())
    except OSError:
        return None
    if len(data) < 100 or not data.startswith(b"SQLite format 3\0"):
        return None
    page_size = struct.unpack(">H", data[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = len(data) // page_size
    if page_size < 512 or pages == 0:
        return None
    data = data[: pages * page_size]
    data[28:32] = struct.pack(">I", pages)
    copy = folder / "cut.db"
    copy.write_bytes(bytes(data))
    return copy


def readable_rows(db: Path) -> tuple[list[Row], dict[int, str]]:
    """Every row that can be read, and {rowid: why not} for those that cannot."""
    if _opens(db):
        return _read_rows(db)
    with tempfile.TemporaryDirectory() as folder:
        copy = _whole_pages(db, Path(folder))
        return _read_rows(copy) if copy is not None else ([], {0: "the database cannot be opened"})


def _read_rows(db: Path) -> tuple[list[Row], dict[int, str]]:
    good, bad = [], {}
    try:
        con = connect(db)
    except sqlite3.Error as err:
        return [], {0: str(err)}
    try:
        for rowid in rowids(con):
            try:
                row = read(con, rowid)
            except sqlite3.Error as err:
                bad[rowid] = str(err)
                continue
            if row is not None:
                good.append(row)
    finally:
        con.close()
    return good, bad


def delete(db: Path, rowid: int) -> None:
    """Delete one row by its rowid (diskcache's triggers keep its count and size right)."""
    con = sqlite3.connect(str(db), timeout=30)
    try:
        with con:
            con.execute("DELETE FROM Cache WHERE rowid = ?", (rowid,))
    finally:
        con.close()


def listing(cache) -> list[tuple[int, object]]:
    """(rowid, key) of every row of a diskcache or ReadOnlyCache, NOT_TEXT for a key that is not text.

    Plain SQL in rowid order: diskcache's own listing walks the keys in order and stops at a
    NULL key (nothing compares greater than NULL), hiding every row after it.
    """
    if isinstance(cache, ReadOnlyCache):
        return [(row.rowid, row.key if row.text_key else NOT_TEXT) for row in cache.rows()]
    found = cache._sql("SELECT rowid, key, raw FROM Cache ORDER BY rowid").fetchall()
    return [(rowid, key if raw == 1 and isinstance(key, str) else NOT_TEXT) for rowid, key, raw in found]


def not_text_rowids(cache) -> list[int]:
    """The rowids of a cache's rows whose key is not text, by one query (no key is read into Python)."""
    if isinstance(cache, ReadOnlyCache):
        return [rowid for rowid, key in listing(cache) if not isinstance(key, str)]
    found = cache._sql("SELECT rowid FROM Cache WHERE NOT (raw = 1 AND typeof(key) = 'text') ORDER BY rowid")
    return [rowid for (rowid,) in found.fetchall()]


def text_keys(cache) -> list[str]:
    """The text keys of a diskcache or ReadOnlyCache, in rowid order (other rows: see `listing`)."""
    return [key for _, key in listing(cache) if isinstance(key, str)]


def rowid_list(rowids: list[int], most: int = 10) -> str:
    """'3, 7, 12' or '3, 7, … (40 in all)': rowids to name in one line."""
    shown = ", ".join(str(r) for r in rowids[:most])
    return shown if len(rowids) <= most else f"{shown}, … ({len(rowids)} in all)"


class ReadOnlyCache:
    """The part of diskcache's Cache API the store and the job table read, served row by row from SQLite.

    Used on a full disk: listing, reading, counting work; a write raises the StoreError
    given (the disk is full), so callers report it in one line.
    """

    def __init__(self, directory: Path, refusal: StoreError):
        self.directory = Path(directory)
        self._refusal = refusal
        self._local = threading.local()  # SQLite connections serve only the thread that opened them
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._con.execute("SELECT 1")  # fails here, in one line, when the database cannot be opened

    @property
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = connect(self.directory / "cache.db")
            with self._lock:
                self._opened.append(con)
        return con

    def rows(self) -> Iterator[Row]:
        for rowid in rowids(self._con):
            try:
                row = read(self._con, rowid)
            except sqlite3.Error:
                continue
            if row is not None:
                yield row

    def iterkeys(self) -> Iterator[object]:
        for row in self.rows():
            yield row.key if row.text_key else NOT_TEXT

    def get(self, key, default=None):
        try:
            found = self._con.execute("SELECT rowid FROM Cache WHERE key = ? AND raw = 1", (key,)).fetchone()
            row = read(self._con, found[0]) if found else None
        except sqlite3.Error as err:
            raise StoreError(f"the store at {self.directory} cannot be read ({err})") from None
        if row is None:
            return default
        value = value_of(row, self.directory)
        return default if value is None else value

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return sum(1 for _ in self.rows())

    def volume(self) -> int:
        page_count, page_size = (self._con.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "page_size"))
        return int(page_count * page_size)

    @contextmanager
    def transact(self):
        yield  # reads only: a write inside raises

    def set(self, key, value, *args, **kwargs):
        raise self._refusal

    def delete(self, key, *args, **kwargs):
        raise self._refusal

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for con in opened:
            con.close()  # check_same_thread=False: the closing thread may differ; none is used after
        self._local = threading.local()


class _NotText:
    """Stands for a key that is not text (pickled, or bytes or a number) in a key listing."""

    def __repr__(self) -> str:
        return "<key that is not text>"


NOT_TEXT = _NotText()
