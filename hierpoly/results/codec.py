"""The result format: one finished run as deterministic bytes, and the validating reader.

Each stored value (store.py) is a small zip (deterministic bytes, no compression) of three
members, the same members a bundle carries per result (bundles.py):

    result.json    config, status, message, metrics, meta (JSON, finite numbers only)
    history.npz    equal-length columns step, train_loss, test_loss, feature_corr, seconds
    samples.npz    float32 columns p, g, h, h_pred (≤ SAMPLE_ROWS rows; may be empty)
    snapshots.npz  optional: step int64 (r,) and g float32 (r, SNAPSHOT_POINTS), the learned
                   feature on the first monitor points as training went (pairs with samples' p)
    first_block.npz optional: the trained first block of a three-layer or transfer run, float32
                   u (m1,), s (m1,), V (m1, d): what a transfer freezes (results stored before it
                   was added lack it; a transfer then retrains its source, jobs/runner.py)

Nothing here ever unpickles: arrays are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field

import numpy as np

from hierpoly.config import ConfigError, RunConfig
from hierpoly.failure import first_line
from hierpoly.jsonvalue import MAX_DEPTH, depth, jsonable, loads_bounded

FORMAT_VERSION = 1  # of result.json; bump when the members change
HISTORY_COLUMNS = {  # name -> dtype
    "step": np.dtype("int64"),
    "train_loss": np.dtype("float64"),
    "test_loss": np.dtype("float64"),
    "feature_corr": np.dtype("float64"),
    "seconds": np.dtype("float64"),
}
SAMPLE_COLUMNS = ("p", "g", "h", "h_pred")  # float32
MAX_SAMPLE_ROWS = 2000
MAX_HISTORY_ROWS = 200_000
MAX_JSON_BYTES = 1 << 20
MAX_MESSAGE = 4096  # characters of a result's message
MAX_META_TEXT = 256  # characters of a text field of meta
MAX_NUMBER = 1e300  # larger numbers in meta are damage, not measurements
SNAPSHOT_POINTS = 256  # columns of snapshots' g: the first monitor points
MAX_SNAPSHOT_ROWS = 128  # the runner thins to about 100; bounded so a bundle stays small
REQUIRED_MEMBERS = ("result.json", "history.npz", "samples.npz")
MEMBERS = REQUIRED_MEMBERS + ("snapshots.npz", "first_block.npz")  # every member a result may have
FIRST_BLOCK = ("u", "s", "V")  # the first block's parameters (engine/model.py)
# test_loss: plain MSE over n_eval fresh points, test_loss_se its standard error, mean_h2 the points'
# mean h² (a diagnostic: E[h²] = 1), test_loss_cv[_se] the control-variate estimate (engine/metrics.py)
METRICS = ("train_loss", "test_loss", "test_loss_se", "mean_h2", "test_loss_cv", "test_loss_cv_se", "feature_corr")
# a transfer's tail (engine/evaluation.py, population_metrics' g_range): shares in [0, 1], stored when measured
SHARE_METRICS = ("outside_points", "outside_loss_share")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: equal results give equal bytes


class StoreError(ValueError):
    """A stored or offered result that is malformed, with a one-line reason."""


@dataclass(frozen=True)
class Result:
    """One finished run: what it was, how it went, and what to plot."""

    config: RunConfig
    status: str  # only "done" results are stored
    message: str
    metrics: dict  # METRICS
    history: dict = field(compare=False)  # column -> (rows,) array, see HISTORY_COLUMNS
    samples: dict = field(compare=False)  # column -> (≤ 2000,) float32 array
    meta: dict = field(compare=False)  # versions, device, git_commit, seconds, created, C, steps, stopped_by, converged, extra
    snapshots: dict = field(compare=False, default_factory=dict)  # {} or step (r,) int64, g (r, 256) float32
    first_block: dict = field(compare=False, default_factory=dict)  # {} or u (m1,), s (m1,), V (m1, d) float32

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def params(self) -> dict:
        """The trained parameters this result keeps, by name (float32 arrays): the first block ``u, s, V`` of a
        three-layer or transfer run, the learned feature g (what a transfer freezes). Nothing else is stored:
        not the second block ``a, b, c``, nor the baselines' parameters, and runs stored before first blocks
        were (the shipped bundles among them) keep none ({}). Every parameter of a run: retrain its config in
        this process, ``hierpoly.engine.train.run(result.config).params`` (seeded: the same run within one build).
        """
        return dict(self.first_block)

    def __repr__(self) -> str:  # the arrays are many: a line a notebook can show
        c, corr, loss = self.config, self.metrics.get("feature_corr"), self.metrics.get("test_loss")
        numbers = ", ".join(f"{name} {v:.4g}" for name, v in (("test_loss", loss), ("feature_corr", corr)) if v is not None)
        params = ", ".join(name for name in FIRST_BLOCK if name in self.first_block) or "none"
        return (f"Result(d={c.d} n={c.n} k={c.k} {c.link} {c.arch} {c.mode} seed {c.seed}: {self.status}, {numbers}; "
                f"params stored: {params}; key {self.key[:12]})")


# ------------------------------------------------------------------ encoding
def _zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip with fixed timestamps and no compression: same members, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])
    return buf.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    members = {}
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
        members[f"{name}.npy"] = buf.getvalue()
    return _zip_bytes(members)


def read_zip(data: bytes, allowed, max_members: int, max_bytes: int, max_ratio: float | None = None) -> dict[str, bytes]:
    """Read allowlisted members of a zip into memory under limits; anything else is a StoreError.

    ``allowed`` is a set of names or a predicate on names.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise StoreError(f"not a valid zip file ({err})") from None
    if len(infos) > max_members:
        raise StoreError(f"too many members: {len(infos)} > {max_members}")
    ok = allowed if callable(allowed) else allowed.__contains__
    out, total = {}, 0
    for info in infos:
        name = info.filename
        if not ok(name):
            raise StoreError(f"unexpected member {name!r}")
        if name in out:
            raise StoreError(f"duplicate member {name!r}")
        if info.flag_bits & 0x1:
            raise StoreError(f"encrypted member {name!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise StoreError(f"member {name!r} uses an unsupported compression")
        if max_ratio is None and info.compress_type != zipfile.ZIP_STORED:
            raise StoreError(f"member {name!r} must be stored uncompressed")
        if max_ratio is not None and info.file_size > max_ratio * max(info.compress_size, 1024):
            raise StoreError(f"member {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold: refused")
        total += info.file_size
        if info.file_size > max_bytes or total > max_bytes:
            raise StoreError(f"members larger than the {max_bytes} byte limit")
        try:
            with zf.open(info) as fh:
                blob = fh.read(info.file_size + 1)  # never trust the header's size alone
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as err:
            raise StoreError(f"member {name!r} is corrupt ({err})") from None
        if len(blob) != info.file_size:
            raise StoreError(f"member {name!r} does not match its declared size")
        out[name] = blob
    return out


def _read_npz(data: bytes, columns, what: str) -> dict[str, np.ndarray]:
    members = read_zip(data, {f"{c}.npy" for c in columns}, len(columns), 64 << 20)
    out = {}
    for name, blob in members.items():
        try:
            arr = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise StoreError(f"{what}: array {name} is not a plain numeric array ({first_line(err)})") from None
        out[name[: -len(".npy")]] = arr
    return out


def encode(result: Result) -> dict[str, bytes]:
    """The members of a result (see module docstring; snapshots.npz only when it has some); validates first."""
    check(result)
    doc = {
        "format": FORMAT_VERSION,
        "key": result.key,
        "config": result.config.to_dict(),
        "status": result.status,
        "message": result.message,
        "metrics": result.metrics,
        "meta": jsonable(result.meta),
    }
    members = {
        "result.json": json.dumps(doc, sort_keys=True, allow_nan=False).encode(),
        "history.npz": _npz_bytes({c: result.history[c] for c in HISTORY_COLUMNS}),
        "samples.npz": _npz_bytes({c: result.samples[c] for c in SAMPLE_COLUMNS if c in result.samples}),
    }
    if result.snapshots:
        members["snapshots.npz"] = _npz_bytes({c: result.snapshots[c] for c in ("step", "g")})
    if result.first_block:
        members["first_block.npz"] = _npz_bytes({c: result.first_block[c] for c in FIRST_BLOCK})
    return members


def _no_constants(name):
    raise ValueError(f"non-finite number {name} in JSON")


def decode_doc(blob: bytes) -> dict:
    """result.json, checked: format, finite numbers, config that validates and matches its key."""
    if len(blob) > MAX_JSON_BYTES:
        raise StoreError("result.json is too large")
    try:
        doc = loads_bounded(blob.decode("utf-8"), "result.json", parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as err:
        raise StoreError(f"result.json is not valid JSON ({first_line(err)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        raise StoreError("result.json has an unknown format version")
    for name in ("config", "metrics", "meta"):
        if not isinstance(doc.get(name), dict):
            raise StoreError(f"result.json: {name} must be an object")
    for name in ("status", "message"):
        if not isinstance(doc.get(name), str):
            raise StoreError(f"result.json: {name} must be text")
    try:
        cfg = RunConfig.from_dict(doc["config"])
    except (ConfigError, TypeError) as err:
        raise StoreError(f"result.json: invalid config ({err})") from None
    if cfg.key() != doc.get("key"):
        raise StoreError("result.json: the config does not match its key (tampered or from another version)")
    doc["config"] = cfg
    return doc


def decode(members: dict[str, bytes | None]) -> Result:
    """A Result from its members (snapshots.npz may be absent or None), every part validated (see `check`)."""
    missing = [m for m in REQUIRED_MEMBERS if members.get(m) is None]
    if missing:
        raise StoreError(f"result is missing {', '.join(missing)}")
    doc = decode_doc(members["result.json"])
    history = _read_npz(members["history.npz"], HISTORY_COLUMNS, "history")
    samples = _read_npz(members["samples.npz"], SAMPLE_COLUMNS, "samples")
    snapshots = _read_npz(members["snapshots.npz"], ("step", "g"), "snapshots") if members.get("snapshots.npz") else {}
    first_block = _read_npz(members["first_block.npz"], FIRST_BLOCK, "first_block") if members.get("first_block.npz") else {}
    result = Result(doc["config"], doc["status"], doc["message"], doc["metrics"], history, samples, doc["meta"], snapshots,
                    first_block)
    check(result)
    return result


def check(result: Result) -> None:
    """Refuse anything but a finished run with finite numbers of the expected dtypes and shapes."""
    if result.status != "done":
        raise StoreError(f"only finished runs are stored, this one is {result.status!r}")
    if not isinstance(result.message, str) or len(result.message) > MAX_MESSAGE:
        raise StoreError(f"message must be text of at most {MAX_MESSAGE} characters")
    unknown = set(result.metrics) - set(METRICS) - set(SHARE_METRICS) if isinstance(result.metrics, dict) else {"?"}
    if unknown:
        raise StoreError(f"metrics must be an object of the known metrics, got {sorted(map(str, unknown))[0]!r}")
    check_meta(result.meta)
    for name in METRICS:
        value = result.metrics.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise StoreError(f"metric {name} must be a finite number, got {value!r}")
    for name in SHARE_METRICS:
        value = result.metrics.get(name, 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise StoreError(f"metric {name} must be a share in [0, 1], got {value!r}")
    if set(result.history) != set(HISTORY_COLUMNS):
        raise StoreError(f"history must have exactly the columns {', '.join(HISTORY_COLUMNS)}")
    rows = None
    for name, dtype in HISTORY_COLUMNS.items():
        rows = _check_column(f"history.{name}", result.history[name], dtype, rows, MAX_HISTORY_ROWS)
    if set(result.samples) not in (set(), set(SAMPLE_COLUMNS)):
        raise StoreError(f"samples must be empty or have exactly the columns {', '.join(SAMPLE_COLUMNS)}")
    rows = None
    for name in result.samples:
        rows = _check_column(f"samples.{name}", result.samples[name], np.dtype("float32"), rows, MAX_SAMPLE_ROWS)
    _check_snapshots(result.snapshots)
    _check_first_block(result.first_block, result.config)


def _number(value, low: float = -math.inf, integer: bool = False) -> bool:
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= MAX_NUMBER


def _short_text(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_META_TEXT


META_REQUIRED = ("seconds", "steps")  # every run records them (jobs/runner.py); pages and studies read them
# what each meta field may hold (the others optional: older results lack some); anything a page reads is here
META_FIELDS = {
    "seconds": ("a number of seconds ≥ 0", lambda v: _number(v, 0.0)),
    "steps": ("a whole number ≥ 0", lambda v: _number(v, 0, integer=True)),
    "C": ("a finite number", _number),
    "created": ("a time as text", _short_text),
    "stopped_by": ("text or null", lambda v: v is None or _short_text(v)),
    "converged": ("true, false or null", lambda v: v is None or isinstance(v, bool)),
    "git_commit": ("text or null", lambda v: v is None or _short_text(v)),
    "versions": ("an object of texts", lambda v: isinstance(v, dict) and all(x is None or _short_text(x) for x in v.values())),
    "device": ("an object", lambda v: isinstance(v, dict)),
    "extra": ("an object", lambda v: isinstance(v, dict)),
}
EXTRA_FIELDS = {  # meta.extra's fields that pages read
    "lr_drops": ("a whole number ≥ 0", lambda v: _number(v, 0, integer=True)),
    "stopped_by": ("text or null", lambda v: v is None or _short_text(v)),
}


def check_meta(meta) -> None:
    """Each known field of a result's meta of its type and range, the whole nested at most MAX_DEPTH deep."""
    if not isinstance(meta, dict):
        raise StoreError("meta must be an object")
    missing = [name for name in META_REQUIRED if name not in meta]
    if missing:
        raise StoreError(f"meta.{missing[0]} is missing")
    for where, fields, values in (("meta", META_FIELDS, meta), ("meta.extra", EXTRA_FIELDS, meta.get("extra") or {})):
        for name, (kind, ok) in fields.items():
            if name in values and not ok(values[name]):
                raise StoreError(f"{where}.{name} must be {kind}, got {str(values[name])[:40]!r}")
    if depth(meta, MAX_DEPTH) > MAX_DEPTH:
        raise StoreError(f"meta is nested too deeply (more than {MAX_DEPTH} levels)")


def _check_first_block(block: dict, cfg: RunConfig) -> None:
    """Empty, or u (m1,), s (m1,), V (m1, d) float32 and finite, for a three-layer or transfer run's widths."""
    if not block:
        return
    if cfg.arch not in ("three_layer", "transfer"):
        raise StoreError(f"a {cfg.arch} result carries no first block")
    if set(block) != set(FIRST_BLOCK):
        raise StoreError("first_block must be empty or have exactly the arrays u, s, V")
    shapes = {"u": (cfg.m1,), "s": (cfg.m1,), "V": (cfg.m1, cfg.d)}
    for name, shape in shapes.items():
        arr = block[name]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != shape:
            got = f"{arr.dtype}{arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise StoreError(f"first_block.{name} must be a float32 array of shape {shape}, got {got}")
        if not np.isfinite(arr).all():
            raise StoreError(f"first_block.{name} holds non-finite values")


def _check_snapshots(snapshots: dict) -> None:
    """Empty, or step (r,) int64 and g (r, ≤ SNAPSHOT_POINTS) float32, finite, r ≤ MAX_SNAPSHOT_ROWS."""
    if not snapshots:
        return
    if set(snapshots) != {"step", "g"}:
        raise StoreError("snapshots must be empty or have exactly the columns step, g")
    rows = _check_column("snapshots.step", snapshots["step"], np.dtype("int64"), None, MAX_SNAPSHOT_ROWS)
    g = snapshots["g"]
    if not isinstance(g, np.ndarray) or g.dtype != np.float32 or g.ndim != 2 or g.shape[1] > SNAPSHOT_POINTS:
        got = f"{g.dtype}{g.shape}" if isinstance(g, np.ndarray) else type(g).__name__
        raise StoreError(f"snapshots.g must be a (rows, ≤ {SNAPSHOT_POINTS}) float32 array, got {got}")
    if g.shape[0] != rows:
        raise StoreError(f"snapshots.g has {g.shape[0]} rows, snapshots.step {rows}")
    if not np.isfinite(g).all():
        raise StoreError("snapshots.g holds non-finite values")


def _check_column(name: str, arr, dtype: np.dtype, rows: int | None, max_rows: int) -> int:
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1:
        got = f"{arr.dtype}{arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise StoreError(f"{name} must be a 1-d {dtype} array, got {got}")
    if rows is not None and arr.shape[0] != rows:
        raise StoreError(f"{name} has {arr.shape[0]} rows, the other columns {rows}")
    if arr.shape[0] > max_rows:
        raise StoreError(f"{name} has {arr.shape[0]} rows, more than {max_rows}")
    if not np.isfinite(arr).all():
        raise StoreError(f"{name} holds non-finite values")
    return arr.shape[0]


def to_bytes(result: Result) -> bytes:
    """The stored value of a result."""
    return _zip_bytes(encode(result))


def from_bytes(value: bytes) -> Result:
    return decode(read_zip(value, set(MEMBERS), len(MEMBERS), 128 << 20))  # snapshots.npz optional
