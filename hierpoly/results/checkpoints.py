"""A run's whole training state on disk between chunks, so that a stopped run resumes: ``<store>/checkpoints/``.

One file per run, ``<name>.ckpt`` (name: the run's key; a batch of seeds: ``checkpoint_name`` of its keys), a
zip of two members in the result format's spirit (codec.py):

    checkpoint.json   what the saved state is: the writer, the step, the loop's own fields (JSON)
    state.npz         the arrays: parameters, optimiser state, the stopping rules' clock, history rows

Written atomically (a temporary file beside it, fsynced, then renamed over the old one): a kill at any
moment leaves the previous checkpoint or the new one, never half of one. Nothing here ever unpickles:
the arrays are read with ``allow_pickle=False``. The engine decides what the arrays mean (engine/loop.py);
the runner deletes a run's checkpoint once its result is stored (jobs/runner.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hierpoly.results.codec import StoreError, read_zip

FOLDER = "checkpoints"
SUFFIX = ".ckpt"
FORMAT = 1
MEMBERS = ("checkpoint.json", "state.npz")
MAX_BYTES = 8 << 30  # a checkpoint holds a run's parameters and Adam's moments: large widths, not unbounded


def folder(store_dir: Path) -> Path:
    return Path(store_dir) / FOLDER


def path(store_dir: Path, name: str) -> Path:
    if not name or any(c not in "0123456789abcdefghijklmnopqrstuvwxyz-" for c in name):
        raise StoreError(f"a checkpoint name is a run's key, got {name!r}")
    return folder(store_dir) / f"{name}{SUFFIX}"


def part_name(key: str, part: str) -> str:
    """The checkpoint of one loop of a run that has several (the two-layer baseline's trials and final run)."""
    return f"{key}-{part}"


def run_name(name: str) -> str:
    """The run (key, or a batch's name) a checkpoint belongs to."""
    return name if name.startswith("seeds-") else name.split("-")[0]


def checkpoint_name(keys: list[str]) -> str:
    """The name of a batch of seeds' checkpoint: one per batch, whatever order the keys come in."""
    return "seeds-" + hashlib.sha256(",".join(sorted(keys)).encode()).hexdigest()[:40]


def encode(arrays: dict[str, np.ndarray], doc: dict) -> bytes:
    state = io.BytesIO()
    np.savez(state, **{name: np.asarray(arr) for name, arr in arrays.items()})  # ascontiguousarray makes 0-d 1-d
    members = {"checkpoint.json": json.dumps({"format": FORMAT, **doc}, sort_keys=True).encode(),
               "state.npz": state.getvalue()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def decode(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, doc) of a checkpoint's bytes; StoreError when it is not one."""
    members = read_zip(data, set(MEMBERS), len(MEMBERS), MAX_BYTES)
    if set(members) != set(MEMBERS):
        raise StoreError(f"a checkpoint has the members {', '.join(MEMBERS)}")
    try:
        doc = json.loads(members["checkpoint.json"])
        with np.load(io.BytesIO(members["state.npz"]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError) as err:  # pickled arrays are refused here too (allow_pickle=False)
        raise StoreError(f"damaged checkpoint ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreError(f"not a checkpoint of format {FORMAT}")
    return arrays, doc


def save(store_dir: Path, name: str, arrays: dict[str, np.ndarray], doc: dict) -> int:
    """Replace the run's checkpoint atomically; returns its size in bytes. OSError (a full disk) leaves the old one."""
    target = path(store_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = encode(arrays, doc)
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_folder(target.parent)
    return len(data)


def _sync_folder(directory: Path) -> None:
    """Make the rename itself durable (best effort where the OS cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(store_dir: Path, name: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """The run's saved (arrays, doc), None when it has none; StoreError when the file is damaged."""
    try:
        data = path(store_dir, name).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StoreError(f"checkpoint {name[:16]} cannot be read ({err})") from None
    return decode(data)


def discard(store_dir: Path, name: str) -> None:
    """Delete the run's checkpoints, its parts' too (its result is stored, or it cannot be resumed)."""
    path(store_dir, name).unlink(missing_ok=True)
    for part in folder(store_dir).glob(f"{name}-*{SUFFIX}"):
        part.unlink(missing_ok=True)


@dataclass(frozen=True)
class Saved:
    """One checkpoint on disk, as doctor lists it."""

    name: str  # the run's key (or the batch's name)
    file: str  # the file's name in the folder
    bytes: int
    doc: dict | None  # None: damaged
    problem: str | None  # why it cannot be read


def listing(store_dir: Path) -> list[Saved]:
    """Every checkpoint under the store, readable or not; temporary files of a writer that died count as damaged."""
    out = []
    for file in sorted(folder(store_dir).glob(f"*{SUFFIX}*")):
        name = file.name.split(SUFFIX)[0]
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            continue  # replaced or deleted meanwhile
        if not file.name.endswith(SUFFIX):
            out.append(Saved(name, file.name, size, None, "a partial write left by a stopped writer"))
            continue
        try:
            _, doc = decode(file.read_bytes())
            out.append(Saved(name, file.name, size, doc, None))
        except (StoreError, OSError) as err:
            out.append(Saved(name, file.name, size, None, str(err)))
    return out


def remove(store_dir: Path, file_name: str) -> None:
    """Delete a checkpoint (or a partial write) by its file's name within the folder."""
    target = folder(store_dir) / Path(file_name).name
    if target.name.endswith(SUFFIX) or f"{SUFFIX}.tmp-" in target.name:
        target.unlink(missing_ok=True)
