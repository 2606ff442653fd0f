"""Frozen, validated run configurations and their stable keys.

A ``RunConfig`` is complete once built: defaults that depend on other fields
(widths, step caps) are resolved in ``__post_init__``, so two configs that
describe the same run have the same ``key()``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from hierpoly.targets import SUPPORTED_K, TargetError, canonical_link, raw_link

# Bump when the math or the stored result format changes: old results then get
# new keys instead of being silently reused.
SCHEMA_VERSION = 4  # 2: test_loss relative to the zero predictor; 3: final metrics over n_eval points;
# 4: plain MSE with its standard error, lr drops on plateau, ReLU two-layer baseline, layer-wise η2, ξ2, T2

# A baseline's own version, in its key beside the schema's: a new way to train it renews only its results.
ARCH_REVISION = {"two_layer": 2}  # 2: rate and stopping step chosen on the holdout

# joint: a cap the stopping rules beat (transition cells settle by 13-32k steps on the cpu grid); it bounds a run's cost
JOINT_CAP = 64000
SIGMA1 = ("cube", "square", "relu")
MODES = ("joint", "layerwise")
# three_layer: the paper's network (1). The others are Figure 2's baselines on the same data:
# kernel = random features, the first layer's features fitted to h directly (stage 1 of
# Algorithm 1 alone); two_layer = a ReLU two-layer network of about the same parameter count,
# trained with Adam at a rate and for a number of steps chosen on a holdout (engine/baselines.py).
ARCHS = ("three_layer", "kernel", "two_layer")
# transfer: the first block (u, s, V) of a stored three-layer run (`source`, its key) frozen, and the second
# block fitted to a new link g' on the same feature p (engine/transfer.py). Not a grid architecture: a sweep's
# archs are ARCHS; a transfer names its source run.
TRANSFER = "transfer"
ALL_ARCHS = ARCHS + (TRANSFER,)
SIGMA1_DEGREE = {"cube": 3, "square": 2, "relu": None}  # None: not a polynomial
# Algorithm 1's stage-2 fields (T2, η2, ξ2) and the stage-1 fields they default to.
STAGE2 = {"steps2": "steps", "lr2": "lr", "weight_decay2": "weight_decay"}


# Fields added after results were stored, with the default that leaves them out of the key: an existing
# run's key stays what it was (its stored result is found again), a new setting makes a new key.
KEY_OMITS_DEFAULT = {"source": None}
_HEX = set("0123456789abcdef")

# the joint stopping rules' settings: layer-wise training and the kernel fit never read them
_JOINT_ONLY = ("tol", "patience", "lr_drops", "lr_decay", "feature_tol")


class ConfigError(ValueError):
    """A config value that cannot be run, with a message for a person."""


def two_layer_width(cfg: RunConfig) -> int:
    """The ReLU two-layer baseline's width m: m(d+2) parameters ≈ the network's m1(d+2) + 3 m2 (V, s, u; a, b, c)."""
    return max(1, round((cfg.m1 * (cfg.d + 2) + 3 * cfg.m2) / (cfg.d + 2)))


def first_block_by_pairs(cfg: RunConfig) -> bool:
    """Whether joint training computes the cubic first block from pair products (engine/tensor.py).

    Only how a step is computed, never its result (so not part of the key). Chosen where its
    matmul flops, 2·2·n·P·D with D = d + 1, P = D(D+1)/2 (forward and data gradient), are at most
    the direct path's 6·n·d·m1, and d ≥ PAIRS_FROM_D: `python -m hierpoly bench` (first_block_paths,
    README "Performance") measured it slower at d = 3 and 4 (tiny matmuls: overhead dominates) and
    faster at d = 6, 8, 12, 16, 20.
    """
    if cfg.arch != "three_layer" or cfg.mode != "joint" or cfg.sigma1 != "cube" or cfg.d < PAIRS_FROM_D:
        return False
    D = cfg.d + 1
    return 2 * D * (D + 1) * D <= 6 * cfg.d * cfg.m1


PAIRS_FROM_D = 6  # the smallest d at which the bench measured the pair-product first block faster


def poly_space_dim(d: int, k: int) -> int:
    """Dimension of the polynomials of degree ≤ k in d variables: C(d+k, k)."""
    return math.comb(d + k, k)


@dataclass(frozen=True)
class RunConfig:
    """One training run of the three-layer network on h = g ∘ p (the README says what each part is)."""

    d: int  # input dimension; x ~ N(0, I_d)
    n: int  # training samples (layer-wise: split in half into D1 and D2)
    k: int = 3  # degree of the feature p = Σ λ_i h_k(x_i); the paper's is 3
    link: str = "cubic"  # preset name or coefficients "c0,c1,..." of g (std:... on p/√d); the paper's is cubic
    sigma1: str = "cube"  # first activation: cube (paper), square or relu; σ2 is ReLU
    m1: int | None = None  # first width; None: d^2 (joint, paper) or C(d+k, k) (layer-wise)
    m2: int = 1000  # second width (paper: 1000)
    arch: str = "three_layer"  # three_layer (the paper's), a baseline (kernel, two_layer) or transfer
    mode: str = "joint"  # joint: Adam on all parameters (Figure 2); layerwise: Algorithm 1
    # (transfer: joint = Adam on the second block a, b, c; layerwise = Algorithm 1's stage 2, ridge GD in c)
    steps: int | None = None  # joint: step cap; layer-wise: T1; None: 64000 / 5000
    lr: float | None = None  # joint: Adam base rate (µP, model.py), None: 1e-2; layer-wise: η1, None: 1/L
    weight_decay: float = 1e-6  # layer-wise: ξ1 (small: the 1/m1 multiplier shrinks the Gram); joint: unused
    # Algorithm 1's stage 2 (layer-wise only; joint refuses them). None: as stage 1, resolved below.
    steps2: int | None = None  # T2; None: T1
    lr2: float | None = None  # η2; None: lr when given, else stage 2's own 1/L (stays None)
    weight_decay2: float | None = None  # ξ2; None: ξ1
    tol: float = 1e-3  # joint: stop when train loss improves < tol (relative) over `patience` steps
    patience: int = 1000  # joint: window of the plateau and feature rules, in steps
    lr_drops: int = 2  # joint: the plateau rule first lowers the learning rate this many times, then stops
    lr_decay: float = 0.3  # joint: factor on the learning rate at each drop
    feature_tol: float = 0.01  # joint: stop when g moved by less than this (relative) over `patience` steps; 0: off
    b_scale: float = 4.0  # τ_b = Uniform[-b_scale, b_scale] for the biases b (our choice)
    seed: int = 0  # one seed draws λ, the initialisation, the training and the test data
    n_test: int = 8192  # fresh monitor points: test loss and correlation while training, plot samples
    n_eval: int = 2**20  # more fresh points for the final test loss and correlation (streamed)
    source: str | None = None  # transfer only: the key of the three-layer run whose first block is reused

    def __post_init__(self):
        _validate(self)
        fill = {}
        if self.m1 is None:
            fill["m1"] = self.d**2 if self.mode == "joint" else poly_space_dim(self.d, self.k)
        if self.steps is None:
            fill["steps"] = JOINT_CAP if self.mode == "joint" else 5000
        if self.lr is None and self.mode == "joint":
            fill["lr"] = 1e-2  # layer-wise None stays: 1/L, the largest stable GD step (train.py)
        if self.mode == "layerwise" and self.arch != TRANSFER:  # stage 2 left to None repeats stage 1 (lr None stays: its own 1/L)
            for name, first in STAGE2.items():
                if getattr(self, name) is None:
                    fill[name] = fill.get(first, getattr(self, first))
        fill["link"] = raw_link(self.link, self.d)  # a std: link becomes this d's raw coefficients
        for name in ("lr", "weight_decay", "lr2", "weight_decay2", "tol", "lr_decay", "feature_tol", "b_scale"):  # 1 and 1.0: one key
            value = fill.get(name, getattr(self, name))
            fill[name] = None if value is None else float(value)
        if self.mode != "joint" or self.arch == "kernel":  # settings these runs never read: one key for one run
            fill.update({f.name: f.default for f in dataclasses.fields(self) if f.name in _JOINT_ONLY})
        if self.arch == "kernel":
            fill.update(steps=JOINT_CAP, lr=1e-2)  # a closed-form fit: no steps, no rate
        for name, value in fill.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def total_steps(self) -> int:
        """Steps at most: T1 + T2 for layer-wise, the step cap for joint."""
        return self.steps + (self.steps2 if self.mode == "layerwise" else 0)

    def key(self) -> str:
        """sha256 of the canonical JSON of the config, the schema version and the arch's revision (if any)."""
        versions = {"schema": SCHEMA_VERSION}
        if self.arch in ARCH_REVISION:
            versions["revision"] = ARCH_REVISION[self.arch]
        config = {name: value for name, value in self.to_dict().items()
                  if not (name in KEY_OMITS_DEFAULT and value == KEY_OMITS_DEFAULT[name])}
        payload = json.dumps({**versions, "config": config}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def warnings(self) -> list[str]:
        """Settings that run but may not do what the user expects."""
        out = []
        degree = SIGMA1_DEGREE[self.sigma1]
        if degree is not None and degree < self.k:
            out.append(
                f"σ1 = {self.sigma1} gives features of degree {degree}, which cannot represent "
                f"a degree-{self.k} feature p; expect poor feature correlation"
            )
        if self.mode == "layerwise":
            dim = poly_space_dim(self.d, self.k)
            if self.m1 < dim:
                out.append(
                    f"layer-wise training keeps V fixed, so its m1 = {self.m1} random features must span "
                    f"the {dim} polynomials of degree ≤ {self.k} in d = {self.d} variables: use m1 ≥ {dim}"
                )
        return out


def _validate(cfg: RunConfig) -> None:
    def need(ok: bool, message: str):
        if not ok:
            raise ConfigError(message)

    for name in ("d", "n", "k", "m1", "m2", "steps", "steps2", "patience", "lr_drops", "seed", "n_test", "n_eval"):
        value = getattr(cfg, name)
        if value is None and name in ("m1", "steps", "steps2"):
            continue
        need(isinstance(value, int) and not isinstance(value, bool), f"{name} must be a whole number, got {value!r}")
    for name in ("lr", "weight_decay", "lr2", "weight_decay2", "tol", "lr_decay", "feature_tol", "b_scale"):
        value = getattr(cfg, name)
        if value is None and name in ("lr", "lr2", "weight_decay2"):
            continue
        need(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            f"{name} must be a finite number, got {value!r}",
        )
    need(cfg.d >= 1, f"input dimension d must be at least 1, got {cfg.d}")
    need(cfg.d <= 4096, f"input dimension d = {cfg.d} is above the supported 4096")
    need(cfg.n >= 2, f"sample size n must be at least 2, got {cfg.n}")
    need(cfg.arch in ALL_ARCHS, f"arch must be one of {', '.join(ALL_ARCHS)}, got {cfg.arch!r}")
    need(cfg.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    need(cfg.mode != "layerwise" or cfg.n >= 4, "layer-wise training splits n into D1 and D2: n must be at least 4")
    need(cfg.arch in ("three_layer", TRANSFER) or cfg.mode == "joint",
         f"the {cfg.arch} baseline is trained as a whole (mode joint); layer-wise training is the three-layer network's")
    need(cfg.k in SUPPORTED_K, f"feature degree k must be one of {', '.join(map(str, SUPPORTED_K))}, got {cfg.k}")
    need(cfg.sigma1 in SIGMA1, f"sigma1 must be one of {', '.join(SIGMA1)}, got {cfg.sigma1!r}")
    need(cfg.m1 is None or cfg.m1 >= 1, f"width m1 must be at least 1, got {cfg.m1}")
    need(cfg.m2 >= 1, f"width m2 must be at least 1, got {cfg.m2}")
    need(cfg.steps is None or cfg.steps >= 1, f"steps must be at least 1, got {cfg.steps}")
    need(cfg.lr is None or cfg.lr > 0, f"learning rate must be positive, got {cfg.lr}")
    need(cfg.weight_decay >= 0, f"weight decay must be ≥ 0, got {cfg.weight_decay}")
    need(cfg.steps2 is None or cfg.steps2 >= 1, f"steps2 (T2) must be at least 1, got {cfg.steps2}")
    need(cfg.lr2 is None or cfg.lr2 > 0, f"stage-2 learning rate lr2 must be positive, got {cfg.lr2}")
    need(cfg.weight_decay2 is None or cfg.weight_decay2 >= 0,
         f"stage-2 weight decay must be ≥ 0, got {cfg.weight_decay2}")
    for name in STAGE2:
        need(cfg.mode == "layerwise" or getattr(cfg, name) is None,
             f"{name} applies to layer-wise training (Algorithm 1's stage 2) only; leave it empty in joint mode")
    need(0 <= cfg.tol < 1, f"tol must be in [0, 1), got {cfg.tol}")
    need(cfg.patience >= 1, f"patience must be at least 1 step, got {cfg.patience}")
    need(0 <= cfg.lr_drops <= 10, f"lr_drops must be between 0 and 10, got {cfg.lr_drops}")
    need(0 < cfg.lr_decay <= 1, f"lr_decay must be in (0, 1], got {cfg.lr_decay}")
    need(0 <= cfg.feature_tol < 1, f"feature_tol must be in [0, 1), got {cfg.feature_tol}")
    need(cfg.b_scale > 0, f"b_scale must be positive, got {cfg.b_scale}")
    need(cfg.seed >= 0, f"seed must be ≥ 0, got {cfg.seed}")
    need(cfg.seed < 2**31, f"seed must be below 2^31 = {2**31} (JAX keys take 32 bits), got {cfg.seed}")
    need(cfg.n_test >= 16, f"n_test must be at least 16, got {cfg.n_test}")
    need(16 <= cfg.n_eval <= 2**26, f"n_eval must be between 16 and 2^26 = {2**26}, got {cfg.n_eval}")
    _validate_source(cfg, need)
    need(isinstance(cfg.link, str), f"link must be text, got {cfg.link!r}")
    try:
        canonical_link(cfg.link)
    except TargetError as err:
        raise ConfigError(str(err)) from None


def _validate_source(cfg: RunConfig, need) -> None:
    """A transfer names its source by key and fits one stage; no other run has a source."""
    if cfg.arch != TRANSFER:
        need(cfg.source is None, f"source applies to transfer runs only (arch {cfg.arch!r} trains from scratch)")
        return
    need(isinstance(cfg.source, str) and len(cfg.source) == 64 and set(cfg.source) <= _HEX,
         f"a transfer's source must be a stored run's key (64 hex digits), got {cfg.source!r}")
    need(cfg.sigma1 == "cube" and cfg.m1 is not None,
         "a transfer reuses a three-layer first block with σ1 = cube: give its sigma1 and m1 (transfer_config does)")
    for name in STAGE2:
        need(getattr(cfg, name) is None,
             f"{name} is not a transfer setting: a transfer fits one stage, set by steps, lr and weight_decay")


# ------------------------------------------------------------------ transfer
# What a transfer copies from its source: the target's feature (d, k), the frozen first block's shape and
# activation, the second block's width and τ_b, and the measurement's points.
TRANSFER_COPIES = ("d", "k", "sigma1", "m1", "m2", "b_scale", "n_test", "n_eval")


def source_problem(source: RunConfig) -> str | None:
    """Why `source` cannot lend its first block to a transfer, in one line; None when it can."""
    if source.arch != "three_layer" or source.mode != "joint":
        what = source.arch if source.arch != "three_layer" else f"three-layer {source.mode}"
        return f"the source must be a three-layer run trained jointly, this one is {what}"
    if source.sigma1 != "cube":
        return f"the source's first activation must be cube (the paper's σ1), this one is {source.sigma1}"
    return None


def transfer_config(source: RunConfig, link: str, n: int, seed: int = 0, mode: str = "joint", **options) -> RunConfig:
    """The transfer of `source`'s first block to link g' = `link` with n fresh samples (validated, one-line errors).

    Args:
        source: a stored three-layer joint run with σ1 = cube (`source_problem` says why not).
        link: the new link g' (any link the target parser accepts), on the same feature p.
        n: fresh training samples of h' = g' ∘ p.
        seed: draws the fresh samples, the second block's initialisation and the evaluation points.
        mode: joint (Adam on a, b, c under the joint rules: the lower test loss in every cell measured, see
            study/presets.py) or layerwise (Algorithm 1's stage 2: ridge GD in c, a and b at their init).
        options: other RunConfig fields (steps, lr, weight_decay, ...).
    """
    problem = source_problem(source)
    if problem is not None:
        raise ConfigError(problem)
    copied = {name: getattr(source, name) for name in TRANSFER_COPIES}
    return RunConfig(**copied, n=n, link=link, seed=seed, mode=mode, arch=TRANSFER, source=source.key(), **options)


def scratch_config(source: RunConfig, link: str, n: int, seed: int = 0) -> RunConfig:
    """The transfer's contrast: the source's network and training, from scratch on h' = link ∘ p with n samples."""
    return dataclasses.replace(source, n=n, link=link, seed=seed)


def transfer_mismatch(cfg: RunConfig, source: RunConfig) -> str | None:
    """Why `cfg` is not a transfer of `source` (a field it should have copied differs); None when it is."""
    if cfg.source != source.key():
        return f"the transfer names source {cfg.source[:16]}, not {source.key()[:16]}"
    for name in TRANSFER_COPIES:
        if getattr(cfg, name) != getattr(source, name):
            return f"the transfer's {name} = {getattr(cfg, name)} differs from its source's {getattr(source, name)}"
    return source_problem(source)
