"""Rows of diskcache's Cache table read straight from a database file's leaf pages, without SQLite.

For when SQLite cannot walk the table from its root: the root page or the header page
(page 1, which also holds the schema) overwritten. Every page whose first byte says
"table leaf" is parsed on its own; each cell's payload is followed through its overflow
chain; a record of the Cache table's shape (twelve columns, the first the rowid alias,
so NULL) becomes a ``rows.Row``. A damaged cell, a broken overflow chain or a record of
another shape is skipped and counted, never raised.

The page size comes from the header when it is intact, else it is the size under which
the most pages look like B-tree pages. Pages on the free list (known only while the
header is intact) are skipped: they may hold deleted rows. Frames of a write-ahead log
beside the file replace the pages they carry, as SQLite would read them.

The format: https://www.sqlite.org/fileformat2.html (B-tree pages, records, overflow).
"""
from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hierpoly.results.codec import StoreError
from hierpoly.results.rows import ReadOnlyCache, Row, value_of

MAGIC = b"SQLite format 3\0"
LEAF_TABLE, INTERIOR_TABLE, LEAF_INDEX, INTERIOR_INDEX = 0x0D, 0x05, 0x0A, 0x02
PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
CACHE_COLUMNS = 12  # rowid, key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value
KEY, RAW, MODE, FILENAME, VALUE = 1, 2, 9, 10, 11
MAX_CHAIN = 1 << 20  # overflow pages followed for one cell at most (a loop in a damaged chain ends here)


class Damaged(ValueError):
    """A cell or record that cannot be parsed."""


@dataclass(frozen=True)
class Scan:
    """What a page scan found: the Cache rows, and how many cells it could not read."""

    rows: list[Row]
    damaged_cells: int
    page_size: int


def varint(buf: bytes, at: int) -> tuple[int, int]:
    """(value, next offset) of the SQLite varint at `at`: 1 to 9 bytes, big-endian, 7 bits each but the 9th."""
    value = 0
    for i in range(9):
        if at + i >= len(buf):
            raise Damaged("varint runs past the page")
        byte = buf[at + i]
        if i == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    raise AssertionError("unreachable")


def _column(serial: int, body: bytes, at: int) -> tuple[object, int]:
    """One column's value and the offset after it, from its serial type."""
    sizes = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8, 7: 8, 8: 0, 9: 0}
    if serial in (10, 11):
        raise Damaged("reserved serial type")
    size = sizes[serial] if serial < 12 else (serial - 12) // 2
    if at + size > len(body):
        raise Damaged("column runs past the record")
    raw = body[at: at + size]
    if serial == 0:
        return None, at
    if serial in (8, 9):
        return serial - 8, at
    if serial == 7:
        return struct.unpack(">d", raw)[0], at + size
    if serial < 7:
        return int.from_bytes(raw, "big", signed=True), at + size
    if serial % 2 == 0:
        return bytes(raw), at + size
    try:
        return raw.decode("utf-8"), at + size
    except UnicodeDecodeError:
        raise Damaged("text column is not UTF-8") from None


def record(payload: bytes) -> list[object]:
    """The columns of a record: a header of serial types, then their values."""
    header_size, at = varint(payload, 0)
    if not 1 <= header_size <= len(payload):
        raise Damaged("record header out of range")
    serials = []
    while at < header_size:
        serial, at = varint(payload, at)
        serials.append(serial)
    values, pos = [], header_size
    for serial in serials:
        value, pos = _column(serial, payload, pos)
        values.append(value)
    return values


class _File:
    """The pages of a database file (and of its write-ahead log, which wins), by page number from 1."""

    def __init__(self, data: bytes, page_size: int, wal: bytes | None):
        self.data, self.page_size = data, page_size
        self.count = len(data) // page_size
        self.wal_pages = _wal_pages(wal, page_size) if wal else {}

    def page(self, number: int) -> bytes | None:
        if number in self.wal_pages:
            return self.wal_pages[number]
        if not 1 <= number <= self.count:
            return None
        start = (number - 1) * self.page_size
        return self.data[start: start + self.page_size]

    def numbers(self) -> list[int]:
        return sorted(set(range(1, self.count + 1)) | set(self.wal_pages))


def _wal_pages(wal: bytes, page_size: int) -> dict[int, bytes]:
    """The newest frame of each page in a write-ahead log of this page size ({} when it does not match)."""
    if len(wal) < 32 or struct.unpack(">I", wal[8:12])[0] != page_size:
        return {}
    out, at = {}, 32
    while at + 24 + page_size <= len(wal):
        number = struct.unpack(">I", wal[at: at + 4])[0]
        if number:
            out[number] = wal[at + 24: at + 24 + page_size]
        at += 24 + page_size
    return out


def _header(data: bytes) -> tuple[int | None, int]:
    """(page size, reserved bytes per page) from an intact header, else (None, 0)."""
    if len(data) < 100 or not data.startswith(MAGIC):
        return None, 0
    size = struct.unpack(">H", data[16:18])[0]
    size = 65536 if size == 1 else size
    if size not in PAGE_SIZES:
        return None, 0
    return size, data[20]


def _looks_like_btree(page: bytes, offset: int = 0) -> bool:
    kind = page[offset]
    if kind not in (LEAF_TABLE, INTERIOR_TABLE, LEAF_INDEX, INTERIOR_INDEX):
        return False
    cells = struct.unpack(">H", page[offset + 3: offset + 5])[0]
    start = struct.unpack(">H", page[offset + 5: offset + 7])[0] or 65536
    head = offset + (8 if kind in (LEAF_TABLE, LEAF_INDEX) else 12)
    return head + 2 * cells <= start <= len(page)


def guess_page_size(data: bytes) -> int:
    """The size under which the most pages (page 1 aside) look like B-tree pages."""
    def score(size: int) -> int:
        pages = len(data) // size
        return sum(_looks_like_btree(data[i * size: (i + 1) * size]) for i in range(1, pages))
    return max(PAGE_SIZES, key=score)


def _free_pages(f: _File) -> set[int]:
    """The free list's pages (trunks and leaves), read from the header; {} when it cannot be followed."""
    trunk, out = struct.unpack(">I", f.data[32:36])[0], set()
    usable = f.page_size // 4
    while trunk and trunk not in out and len(out) < f.count:
        page = f.page(trunk)
        if page is None:
            break
        out.add(trunk)
        nxt, leaves = struct.unpack(">II", page[:8])
        if leaves > usable - 2:
            break
        out.update(struct.unpack(f">{leaves}I", page[8: 8 + 4 * leaves]))
        trunk = nxt
    return out


def _payload(f: _File, page: bytes, at: int, usable: int) -> tuple[int, bytes]:
    """(rowid, whole payload) of the table-leaf cell at `at`, its overflow chain followed."""
    size, at = varint(page, at)
    rowid, at = varint(page, at)
    most_local = usable - 35
    if size <= most_local:
        local = size
    else:
        least = (usable - 12) * 32 // 255 - 23
        local = least + (size - least) % (usable - 4)
        local = local if local <= most_local else least
    if at + local > len(page):
        raise Damaged("cell runs past its page")
    parts, have = [page[at: at + local]], local
    if size > local:
        if at + local + 4 > len(page):
            raise Damaged("overflow pointer runs past its page")
        nxt, seen = struct.unpack(">I", page[at + local: at + local + 4])[0], set()
        while have < size:
            over = f.page(nxt) if nxt not in seen and len(seen) < MAX_CHAIN else None
            if over is None:
                raise Damaged("broken overflow chain")
            seen.add(nxt)
            take = min(usable - 4, size - have)
            parts.append(over[4: 4 + take])
            have += take
            nxt = struct.unpack(">I", over[:4])[0]
    if rowid >= 1 << 63:
        rowid -= 1 << 64
    return rowid, b"".join(parts)


def _cache_row(rowid: int, columns: list[object]) -> Row | None:
    """A Row when the record has the Cache table's shape, else None."""
    if len(columns) != CACHE_COLUMNS or columns[0] is not None:
        return None
    raw, mode, filename = columns[RAW], columns[MODE], columns[FILENAME]
    if not isinstance(raw, int) or not isinstance(mode, int) or not (filename is None or isinstance(filename, str)):
        return None
    return Row(rowid, columns[KEY], bool(raw), mode, filename, columns[VALUE])


def _leaf_rows(f: _File, number: int, usable: int) -> tuple[list[Row], int]:
    page = f.page(number)
    offset = 100 if number == 1 else 0
    if page is None or len(page) < offset + 8 or page[offset] != LEAF_TABLE or not _looks_like_btree(page, offset):
        return [], 0
    found, damaged = [], 0
    cells = struct.unpack(">H", page[offset + 3: offset + 5])[0]
    for i in range(cells):
        pointer = struct.unpack(">H", page[offset + 8 + 2 * i: offset + 10 + 2 * i])[0]
        try:
            rowid, payload = _payload(f, page, pointer, usable)
            row = _cache_row(rowid, record(payload))
        except (Damaged, KeyError, struct.error):
            damaged += 1
            continue
        if row is not None:
            found.append(row)
    return found, damaged


def scan(db: Path) -> Scan:
    """Every Cache row on the leaf pages of db (and of db-wal), and the count of cells that could not be read."""
    data = Path(db).read_bytes()
    wal_path = Path(str(db) + "-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else None
    size, reserved = _header(data)
    free: set[int] = set()
    if size is None:
        size = guess_page_size(data)
    f = _File(data, size, wal)
    if _header(data)[0] is not None:
        free = _free_pages(f)
    found_rows: list[Row] = []
    damaged = 0
    for number in f.numbers():
        if number in free:
            continue
        found, bad = _leaf_rows(f, number, size - reserved)
        damaged += bad
        found_rows += found
    return Scan(sorted(found_rows, key=lambda r: r.rowid), damaged, size)  # a rowid may repeat: a stale copy


class SalvageCache(ReadOnlyCache):
    """A damaged store read for the pages: the rows SQLite still reaches, then every other row on a leaf page.

    Reads only (a write raises the StoreError given); the scan is redone when the file changes.
    """

    def __init__(self, directory: Path, refusal: StoreError):
        self.directory = Path(directory)
        self._refusal = refusal
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()
        self._scanned: tuple[tuple, dict[str, Row], list[Row]] | None = None

    def _signature(self) -> tuple:
        db = self.directory / "cache.db"
        return tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
                     for p in (db, Path(str(db) + "-wal")))

    def _scan(self) -> tuple[dict[str, Row], list[Row]]:
        """({text key: row}, rows with other keys) from the file's pages, cached until the file changes."""
        with self._lock:
            signature = self._signature()
            if self._scanned is None or self._scanned[0] != signature:
                try:
                    found = scan(self.directory / "cache.db").rows
                except OSError:
                    found = []
                by_key: dict[str, Row] = {}
                for row in found:
                    if row.text_key:
                        by_key.setdefault(row.key, row)
                self._scanned = (signature, by_key, [row for row in found if not row.text_key])
            return self._scanned[1], self._scanned[2]

    def rows(self) -> Iterator[Row]:
        try:
            seen = list(super().rows())
        except sqlite3.Error:
            seen = []
        keys = {row.key for row in seen if row.text_key}
        by_key, other = self._scan()
        rowids = {row.rowid for row in seen}
        yield from seen
        yield from (row for key, row in by_key.items() if key not in keys)
        yield from (row for row in other if row.rowid not in rowids)

    def get(self, key, default=None):
        try:
            value = super().get(key)
        except (StoreError, sqlite3.Error):
            value = None
        if value is None and key in self._scan()[0]:
            value = value_of(self._scan()[0][key], self.directory)
        return default if value is None else value

    def volume(self) -> int:
        return sum(size for size, _ in filter(None, self._signature()))
