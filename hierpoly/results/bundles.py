"""Result bundles: zips for sharing finished runs, imported without trusting them.

A bundle holds ``manifest.json`` and, per result, the three members the store
keeps (store.py): ``results/<key>/result.json``, ``history.npz``, ``samples.npz``.
The manifest carries the schema version, each result's config and key, and the
sha256 of every other member.

Import reads only allowlisted member names, into memory, under limits on member
count, sizes and compression ratio; verifies every sha256; recomputes each
config's key; checks arrays are plain, finite, of the expected dtype and shape
(``allow_pickle=False``); and adds all results or none, in one store transaction. It never writes a file.
A result already stored with different contents is a conflict: the import is refused
and names the key (only the operator's explicit ``overwrite`` replaces it).
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

from hierpoly import locations, settings
from hierpoly.config import TRANSFER, ConfigError, RunConfig
from hierpoly.failure import first_line
from hierpoly.jsonvalue import loads_bounded
from hierpoly.results.codec import MEMBERS, REQUIRED_MEMBERS, StoreError, decode, encode, read_zip, to_bytes
from hierpoly.results.store import Store

BUNDLE_VERSION = 1
FIRST_BLOCKS = ("all", "per_source")  # which results keep their first block in an export (export_bundle)
MAX_RESULTS = 2000
MAX_MEMBERS = 1 + len(MEMBERS) * MAX_RESULTS
MAX_BYTES = 512 << 20  # uncompressed, all members together
MAX_BUNDLE_BYTES = 256 << 20  # the zip itself
MAX_RATIO = 50.0  # uncompressed / compressed per member; float arrays rarely pass 5
_MEMBER = re.compile(r"^results/([0-9a-f]{64})/(result\.json|history\.npz|samples\.npz|snapshots\.npz|first_block\.npz)$")
PRECOMPUTED = locations.precomputed_dir()  # cache/precomputed in a checkout, else inside the installed package


class BundleError(ValueError):
    """A bundle that is refused, with a one-line reason."""


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def export_bundle(store: Store, keys: list[str], snapshots: bool = True, sample_rows: int | None = None,
                  first_blocks: str = "all") -> bytes:
    """Zip bytes holding the given stored results (deterministic for equal results).

    ``snapshots=False`` leaves out the learned-g snapshots (optional members: the replay slider);
    ``sample_rows`` keeps only the first rows of each result's scatter samples (the points the
    snapshots pair with come first). Metrics are untouched: they come from the evaluation points.
    ``first_blocks="per_source"`` keeps a first block on one transfer per source run only (the frozen
    block a store reuses for any later transfer of that source; every transfer of a source carries the
    same one) and on no other result.
    """
    if first_blocks not in FIRST_BLOCKS:
        raise BundleError(f"first_blocks must be one of {', '.join(FIRST_BLOCKS)}, got {first_blocks!r}")
    members, entries, sources = {}, [], set()
    for key in sorted(set(keys)):
        result = store.get(key)
        if result is None:
            raise BundleError(f"no stored result with key {key[:16]}")
        if not snapshots:
            result = dataclasses.replace(result, snapshots={})
        if first_blocks == "per_source":
            keep = result.config.arch == TRANSFER and result.config.source not in sources and bool(result.first_block)
            sources |= {result.config.source} if keep else set()
            result = result if keep else dataclasses.replace(result, first_block={})
        if sample_rows is not None:
            result = dataclasses.replace(result, samples={c: v[:sample_rows] for c, v in result.samples.items()})
        for name, blob in encode(result).items():
            members[f"results/{key}/{name}"] = blob
        entries.append({"key": key, "config": result.config.to_dict()})
    manifest = {
        "bundle_version": BUNDLE_VERSION,
        "results": entries,
        "sha256": {name: _sha256(blob) for name, blob in sorted(members.items())},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in [("manifest.json", json.dumps(manifest, sort_keys=True, indent=1).encode())] + sorted(members.items()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, blob)
    return buf.getvalue()


def write_bundle(store: Store, keys: list[str], path, snapshots: bool = True, sample_rows: int | None = None,
                 first_blocks: str = "all") -> None:
    """Export to a file."""
    Path(path).write_bytes(export_bundle(store, keys, snapshots, sample_rows, first_blocks))


def read_bundle(data: bytes) -> dict:
    """Validate a bundle completely; returns {key: Result}. Raises BundleError."""
    if not isinstance(data, (bytes, bytearray)):
        raise BundleError("a bundle must be bytes")
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is {len(data)} bytes, above the {MAX_BUNDLE_BYTES} limit")
    try:
        members = read_zip(
            bytes(data), lambda n: n == "manifest.json" or bool(_MEMBER.match(n)), MAX_MEMBERS, MAX_BYTES, MAX_RATIO
        )
        if "manifest.json" not in members:
            raise StoreError("no manifest.json")
        manifest = _manifest(members.pop("manifest.json"))
        hashes = manifest["sha256"]
        if set(hashes) != set(members):
            extra = sorted(set(members) ^ set(hashes))
            raise StoreError(f"members and manifest disagree ({extra[0]})")
        for name, blob in members.items():
            if _sha256(blob) != hashes[name]:
                raise StoreError(f"sha256 of {name} does not match the manifest (tampered or corrupt)")
        results = {}
        for entry in manifest["results"]:
            key = entry["key"]
            parts = {m: members.get(f"results/{key}/{m}") for m in MEMBERS}
            if any(parts[m] is None for m in REQUIRED_MEMBERS):
                raise StoreError(f"result {key[:16]} is incomplete")
            result = decode(parts)
            if result.key != key or not _lists_config(entry["config"], result.config):
                raise StoreError(f"result {key[:16]}: its config does not match the manifest")
            results[key] = result
        optional = sum((len(r.snapshots) > 0) + (len(r.first_block) > 0) for r in results.values())
        if optional + len(results) * len(REQUIRED_MEMBERS) != len(members):
            raise StoreError("members not listed in the manifest's results")
    except StoreError as err:
        raise BundleError(f"bundle refused: {err}") from None
    return results


def _lists_config(listed: dict, cfg: RunConfig) -> bool:
    """The manifest's config is `cfg`, read as a config: fields added since the bundle was made take defaults."""
    try:
        return RunConfig.from_dict(listed) == cfg
    except (ConfigError, TypeError):
        return False


def _manifest(blob: bytes) -> dict:
    try:
        manifest = loads_bounded(blob.decode("utf-8"), "manifest.json")
    except (UnicodeDecodeError, ValueError) as err:
        raise StoreError(f"manifest.json is not valid JSON ({first_line(err)})") from None
    ok = (
        isinstance(manifest, dict)
        and manifest.get("bundle_version") == BUNDLE_VERSION
        and isinstance(manifest.get("results"), list)
        and isinstance(manifest.get("sha256"), dict)
        and all(isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("config"), dict) for e in manifest["results"])
        and all(isinstance(v, str) for v in manifest["sha256"].values())
    )
    if not ok:
        raise StoreError("manifest.json is malformed or of an unknown version")
    keys = [e["key"] for e in manifest["results"]]
    if len(set(keys)) != len(keys) or len(keys) > MAX_RESULTS:
        raise StoreError("manifest lists duplicate keys or too many results")
    return manifest


def conflicts(store: Store, results: dict) -> list[str]:
    """Keys of results the store already holds, readable, with different contents."""
    out = []
    for key, result in sorted(results.items()):
        try:
            stored = store.raw(key)
        except StoreError:
            continue  # unreadable: an import may replace it
        if stored is not None and stored != to_bytes(result):
            out.append(key)
    return out


def import_bundle(store: Store, data: bytes, overwrite: bool = False) -> list[str]:
    """Add a bundle's results to the store; returns the keys added. All or nothing.

    A result already stored with the same contents is skipped; one stored with
    different contents refuses the whole bundle (BundleError naming its key) unless
    overwrite, the operator's explicit choice (``import --overwrite``). Raises
    BundleError before touching the store when anything in the bundle is wrong, and
    StoreError (the store unchanged) when writing fails, a full disk included: the
    results go in as one transaction (``Store.put_many``).
    """
    results = read_bundle(data)
    clashing = [] if overwrite else conflicts(store, results)
    if clashing:
        more = f" and {len(clashing) - 1} more" if len(clashing) > 1 else ""
        raise BundleError(f"bundle refused: result {clashing[0]}{more} is already stored with different contents; "
                          "nothing was imported (a stored result is never replaced by an import)")
    return store.put_many([results[k] for k in sorted(results)], overwrite=overwrite)


@contextmanager
def _import_lock(store: Store):
    """An exclusive lock on the store's directory for loading shipped bundles (released if the process dies)."""
    try:
        handle = open(store.directory / "precomputed.lock", "a+b")
    except OSError as err:
        raise StoreError(f"cannot lock the store at {store.directory}: {err.strerror or err}") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _manifest_keys(path: Path) -> list[str]:
    """The keys a bundle file lists, from its manifest only."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("manifest.json")
            if info.file_size > 16 << 20:
                raise BundleError(f"{path.name}: manifest too large")
            return [e["key"] for e in loads_bounded(zf.read(info), "manifest.json")["results"]]
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise BundleError(f"{path.name}: not a readable bundle ({first_line(err)})") from None


def shipped_missing(store: Store, folder: str | Path | None = None) -> int:
    """How many results of the shipped bundles the store lacks (what `load_precomputed` would add)."""
    folder = PRECOMPUTED if folder is None else Path(folder)
    paths = sorted(folder.glob("*.zip")) if folder.is_dir() else []
    try:
        keys = {k for path in paths for k in _manifest_keys(path)}
    except BundleError:
        return 0
    return sum(not store.has(k) for k in keys)


def load_precomputed(store: Store, folder: str | Path | None = None) -> list[str]:
    """Import every *.zip bundle in folder (default the shipped bundles, ``PRECOMPUTED``) whose keys the store lacks.

    Cheap when already loaded: only each bundle's manifest is read. Otherwise the import
    runs under an exclusive lock on the store, so concurrent first starts load each
    bundle exactly once, and each bundle goes in whole or not at all. A bad bundle
    raises BundleError; a store that cannot take it (full disk) raises StoreError.
    HIERPOLY_LOAD_PRECOMPUTED=0 turns off loading the default folder (tests that need an empty store).
    """
    if folder is None and settings.text("HIERPOLY_LOAD_PRECOMPUTED") == "0":
        return []
    folder = PRECOMPUTED if folder is None else Path(folder)
    wanted = {path: _manifest_keys(path) for path in (sorted(folder.glob("*.zip")) if folder.is_dir() else [])}
    if all(store.has(k) for keys in wanted.values() for k in keys):
        return []  # the usual start: everything is loaded, no lock needed
    added = []
    with _import_lock(store):  # concurrent first starts: one imports, the others find it done
        for path, keys in wanted.items():
            if all(store.has(k) for k in keys):
                continue
            try:
                added += import_bundle(store, path.read_bytes())
            except BundleError as err:
                raise BundleError(f"{path.name}: {err}") from None
            except OSError as err:
                raise BundleError(f"{path.name}: cannot read it ({err.strerror or err})") from None
    return added
