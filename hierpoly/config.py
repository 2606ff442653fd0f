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

from hierpoly.fieldspec import MORE, Choice, Number, PresetOrText, declare, field_specs
from hierpoly.targets import LINK_PRESETS, SUPPORTED_K, TargetError, canonical_link, check_link, raw_link

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


def pair_count(d: int) -> int:
    """P = D(D+1)/2 pair products of x̃ = (x, 1), D = d + 1 (engine/tensor.py)."""
    return (d + 1) * (d + 2) // 2


def poly_space_dim(d: int, k: int) -> int:
    """Dimension of the polynomials of degree ≤ k in d variables: C(d+k, k)."""
    return math.comb(d + k, k)


@dataclass(frozen=True)
class RunConfig:
    """One training run of the three-layer network on h = g ∘ p (the README says what each part is).

    The defaults are the paper's where it sets one (k, link, sigma1, and m1, m2 for joint training). Each field
    is declared once (fieldspec.py): its help, its bounds and how the Explore form edits it; the command line's
    options, the URL's parameters, the form's controls and the simple checks below are made from it.
    """

    d: int = declare(help="input dimension; x ~ N(0, I_d)", label="d: input dimension", edit=Number(step=1),
                     at_least=1, at_most=4096)
    n: int = declare(help="training samples; the paper's scale is n ≈ d^k (layer-wise training splits them in half "
                          "into D1 and D2)", label="n: training samples", edit=Number(step=256), at_least=2)
    k: int = declare(3, help="degree of the feature p = Σ λ_i h_k(x_i)",
                     label="k: degree of the feature p", edit=Choice(SUPPORTED_K))
    link: str = declare("cubic", help="the link g, a preset or coefficients 'c0,c1,...' (std:LINK applies it to p/√d); "
                                      "g(z) = C·poly(z) with C chosen so that E[h²] = 1 exactly",
                        label="link g", edit=PresetOrText(tuple(LINK_PRESETS), custom="custom coefficients",
                                                          text_label="coefficients c0, c1, c2, … of g",
                                                          placeholder="0, 1, 0, 1"))
    sigma1: str = declare("cube", help="first activation; σ2 is ReLU", label="σ1: first activation",
                          edit=Choice(SIGMA1))
    m1: int | None = declare(None, help="first width (default d² joint, C(d+k, k) layer-wise)",
                             label="m1: first width (empty = d² joint, C(d+k, k) layer-wise)",
                             edit=Number(step=1, placeholder="auto"), at_least=1)
    m2: int = declare(1000, help="second width", label="m2: second width", edit=Number(step=50), at_least=1)
    # The form offers ARCHS: a transfer is made by transfer_config, which names its source.
    arch: str = declare("three_layer", help="three_layer: the paper's network; kernel, two_layer: the baselines",
                        label="model", edit=Choice(ARCHS), group=MORE)
    # (transfer: joint = Adam on the second block a, b, c; layerwise = Algorithm 1's stage 2, ridge GD in c)
    mode: str = declare("joint", help="joint: Adam on all parameters (Figure 2); layerwise: Algorithm 1",
                        label="training mode", edit=Choice(MODES))
    steps: int | None = declare(None, help=f"joint: the step cap (default {JOINT_CAP}); layer-wise: T1, stage 1's "
                                           "steps (default 5000)",
                                label="steps (joint: cap; layer-wise: T1, stage 1; empty = default)",
                                edit=Number(step=100, placeholder="auto"), at_least=1)
    lr: float | None = declare(None, help="joint: Adam's base rate (µP, model.py; default 1e-2); layer-wise: η1 "
                                          "(default 1/L, the largest stable GD step)",
                               label="learning rate (joint: Adam; layer-wise: η1, stage 1; empty = default)",
                               edit=Number(step=1e-3, format="%g", placeholder="auto"), above=0)
    weight_decay: float = declare(1e-6, help="layer-wise: ξ1, stage 1's weight decay (small: the 1/m1 multiplier "
                                             "shrinks the Gram); joint: unused",
                                  label="layer-wise ξ1: stage-1 weight decay", edit=Number(format="%g"), group=MORE,
                                  at_least=0)
    # Algorithm 1's stage 2 (joint refuses them). None: as stage 1, resolved below.
    steps2: int | None = declare(None, help="layer-wise: T2, stage 2's steps (default T1)",
                                 label="layer-wise T2: stage-2 steps (empty = T1)",
                                 edit=Number(step=100, placeholder="as stage 1"), group=MORE, only_mode="layerwise",
                                 at_least=1)
    lr2: float | None = declare(None, help="layer-wise: η2, stage 2's rate (default lr when given, else stage 2's "
                                           "own 1/L)",
                                label="layer-wise η2: stage-2 learning rate (empty = as stage 1)",
                                edit=Number(step=1e-3, format="%g", placeholder="as stage 1"), group=MORE,
                                only_mode="layerwise", above=0)
    weight_decay2: float | None = declare(None, help="layer-wise: ξ2, stage 2's weight decay (default ξ1)",
                                          label="layer-wise ξ2: stage-2 weight decay (empty = ξ1)",
                                          edit=Number(format="%g", placeholder="as stage 1"), group=MORE,
                                          only_mode="layerwise", at_least=0)
    tol: float = declare(1e-3, help="joint: stop when the train loss improves by less than this (relative) over "
                                    "`patience` steps",
                         label="joint: stop when the train loss improves by less than (relative)",
                         edit=Number(step=1e-4, format="%g"), group=MORE, at_least=0, below=1)
    patience: int = declare(1000, help="joint: the window of the plateau and feature rules, in steps",
                            label="joint: … over this many steps", edit=Number(step=100), group=MORE, at_least=1)
    lr_drops: int = declare(2, help="joint: the plateau rule first lowers the learning rate this many times, then "
                                    "stops",
                            label="joint: lower the learning rate this many times before stopping",
                            edit=Number(step=1), group=MORE, at_least=0, at_most=10)
    lr_decay: float = declare(0.3, help="joint: the factor on the learning rate at each drop",
                              label="joint: factor on the learning rate at each drop", edit=Number(format="%g"),
                              group=MORE, above=0, at_most=1)
    feature_tol: float = declare(0.01, help="joint: stop when g moved by less than this (relative) over `patience` "
                                            "steps; 0: off",
                                 label="joint: also stop when g moves by less than (relative, over `patience` steps; "
                                       "0 = never)",
                                 edit=Number(step=1e-3, format="%g"), group=MORE, at_least=0, below=1)
    # τ_b is our choice
    b_scale: float = declare(4.0, help="the biases b ~ τ_b = Uniform[-b_scale, b_scale]",
                             label="b ~ Uniform[-b, b]", edit=Number(format="%g"), group=MORE, above=0)
    # below 2^31: JAX keys take 32 bits
    seed: int = declare(0, help="one seed draws λ, the initialisation, the training and the test data",
                        label="seed", edit=Number(step=1), at_least=0, at_most=2**31 - 1)
    n_test: int = declare(8192, help="fresh monitor points: the live test loss and correlation, the plot samples",
                          label="monitor points (the live curves)", edit=Number(step=256), group=MORE, at_least=16)
    n_eval: int = declare(2**20, help="more fresh points for the final test loss and correlation (streamed; h is "
                                      "heavy-tailed)",
                          label="evaluation points (the final test loss: h is heavy-tailed)",
                          edit=Number(step=65536), group=MORE, at_least=16, at_most=2**26)
    # set by transfer_config, not by hand (edit None): the form and the `run` command leave it out
    source: str | None = declare(None, help="transfer only: the key of the three-layer run whose first block is "
                                            "reused")

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
        for spec in field_specs(type(self)):
            if spec.type is float:  # 1 and 1.0: one key
                value = fill.get(spec.name, getattr(self, spec.name))
                fill[spec.name] = None if value is None else float(value)
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

    for spec in field_specs(type(cfg)):  # each field's declared type and bounds
        problem = spec.problem(getattr(cfg, spec.name))
        need(problem is None, problem)
    need(cfg.arch in ALL_ARCHS, f"arch must be one of {', '.join(ALL_ARCHS)}, got {cfg.arch!r}")
    need(cfg.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    need(cfg.mode != "layerwise" or cfg.n >= 4, "layer-wise training splits n into D1 and D2: n must be at least 4")
    need(cfg.arch in ("three_layer", TRANSFER) or cfg.mode == "joint",
         f"the {cfg.arch} baseline is trained as a whole (mode joint); layer-wise training is the three-layer network's")
    need(cfg.k in SUPPORTED_K, f"feature degree k must be one of {', '.join(map(str, SUPPORTED_K))}, got {cfg.k}")
    need(cfg.sigma1 in SIGMA1, f"sigma1 must be one of {', '.join(SIGMA1)}, got {cfg.sigma1!r}")
    for spec in field_specs(type(cfg)):
        need(spec.only_mode in (None, cfg.mode) or getattr(cfg, spec.name) is None,
             f"{spec.name} applies to {spec.only_mode} training only; leave it empty in {cfg.mode} mode")
    _validate_source(cfg, need)
    try:
        canonical_link(cfg.link)
        if isinstance(cfg.d, int) and isinstance(cfg.k, int):  # else their own checks above have failed
            check_link(cfg.link, cfg.d, cfg.k)
    except (TargetError, OverflowError) as err:
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
