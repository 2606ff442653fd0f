"""Finished runs on disk: a diskcache of results in the format of codec.py.

Nothing here ever unpickles: the diskcache ``Disk`` used refuses to store or fetch
pickled values. The cache never evicts (``eviction_policy='none'``): diskcache's
default 1 GiB limit would cull results while ``set`` still returns True.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import diskcache

from hierpoly.runs.codec import MEMBERS, Result, StoreError, decode_doc, from_bytes, read_zip, to_bytes

REPO = Path(__file__).resolve().parents[2]


class _NoPickleDisk(diskcache.Disk):
    """diskcache's Disk without pickle: keys must be str, values bytes or str."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"store keys must be text, got {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise StoreError("refusing to unpickle a key from the store")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not read and not isinstance(value, (bytes, str)):
            raise TypeError(f"store values must be bytes or text, got {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise StoreError("refusing to unpickle a value from the store")
        return super().fetch(mode, filename, value, read)


def open_cache(directory: Path) -> diskcache.Cache:
    """A diskcache that never evicts, never pickles and keeps no statistics."""
    return diskcache.Cache(
        str(directory),
        disk=_NoPickleDisk,
        eviction_policy="none",  # results are never culled silently
        cull_limit=0,
        size_limit=2**62,
        statistics=False,
        tag_index=False,
    )


def default_dir() -> Path:
    """$HIERPOLY_CACHE_DIR, or cache/store under the project."""
    env = os.environ.get("HIERPOLY_CACHE_DIR")
    return Path(env).expanduser() if env else REPO / "cache" / "store"


class Store:
    """Results by config key. Safe to share between threads and processes (diskcache/SQLite)."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = open_cache(self.directory)
        except OSError as err:
            raise StoreError(f"cannot open the store at {self.directory}: {err.strerror or err}") from None

    def get(self, key: str) -> Result | None:
        """The stored result, or None; a stored value that fails validation raises StoreError."""
        value = self._cache.get(key)
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise StoreError(f"stored value for {key[:16]} is not a result")
        result = from_bytes(value)
        if result.key != key:
            raise StoreError(f"stored value for {key[:16]} belongs to another config")
        return result

    def put(self, result: Result, overwrite: bool = False) -> None:
        """Store a finished run once (the first write wins unless overwrite), then read it back to verify."""
        value = to_bytes(result)
        key = result.key
        if overwrite:
            self._cache.set(key, value)
        elif not self._cache.add(key, value):
            return  # already stored: results are written once
        if self._cache.get(key) != value:
            raise StoreError(f"result {key[:16]} did not read back as written")
        from_bytes(value)  # and decodes

    def has(self, key: str) -> bool:
        return key in self._cache

    def delete(self, key: str) -> bool:
        return bool(self._cache.delete(key))

    def keys(self) -> list[str]:
        return sorted(self._cache.iterkeys())

    def results(self) -> Iterator[Result]:
        """Every readable result; those that fail validation are skipped (see `summaries`)."""
        for key in self.keys():
            try:
                result = self.get(key)
            except StoreError:
                continue
            if result is not None:
                yield result

    def raw(self, key: str) -> bytes | None:
        """The stored bytes of a result (for bundles)."""
        return self._cache.get(key)

    def summaries(self):
        """One row per stored result (reads only result.json of each): a pandas DataFrame.

        Results that fail validation — from an older version of hierpoly (their keys no
        longer match their configs) or damaged — get no row; their keys are listed in
        ``table.attrs["unreadable"]`` so a page can say so instead of failing.
        """
        import pandas as pd

        rows, unreadable = [], []
        for key in self.keys():
            value = self._cache.get(key)
            if value is None:
                continue
            try:
                if not isinstance(value, bytes):
                    raise StoreError("not a result")
                doc = decode_doc(read_zip(value, set(MEMBERS), len(MEMBERS), 128 << 20)["result.json"])
                if doc["key"] != key:
                    raise StoreError("stored under another config's key")
            except StoreError:
                unreadable.append(key)
                continue
            cfg, meta, metrics = doc["config"], doc["meta"], doc["metrics"]
            rows.append(
                {
                    "key": key, "d": cfg.d, "n": cfg.n, "k": cfg.k, "link": cfg.link, "sigma1": cfg.sigma1,
                    "m1": cfg.m1, "m2": cfg.m2, "arch": cfg.arch, "mode": cfg.mode, "seed": cfg.seed,
                    "steps": cfg.steps, "lr": cfg.lr, "n_test": cfg.n_test, "status": doc["status"],
                    "test_loss": metrics.get("test_loss"), "feature_corr": metrics.get("feature_corr"),
                    "train_loss": metrics.get("train_loss"), "steps_run": meta.get("steps"),
                    "seconds": meta.get("seconds"), "created": meta.get("created"),
                }
            )
        columns = [
            "key", "d", "n", "k", "link", "sigma1", "m1", "m2", "arch", "mode", "seed", "steps", "lr", "n_test",
            "status", "test_loss", "feature_corr", "train_loss", "steps_run", "seconds", "created",
        ]
        table = pd.DataFrame(rows, columns=columns)
        table.attrs["unreadable"] = unreadable
        return table

    def size_bytes(self) -> int:
        return int(self._cache.volume())

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()
