"""Figure 2 grids (presets and custom), which of their runs are stored, and running what is missing.

A ``SweepSpec`` is a grid of cells (d, n), each trained for several seeds, by the
three-layer network and — unless ``baselines=False`` — by the two baselines of
``baselines.py`` (the same configs with ``arch`` replaced, hence the same data).
``run_sweep`` runs only the configs whose key is not stored, through an executor,
so a rerun is a no-op.

The executors that fill the gaps (local, inline, ray) are in executors.py.

Importing this module does not import JAX.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from hierpoly.config import ARCHS, MODES, ConfigError, RunConfig
from hierpoly.jobs import executors
from hierpoly.jobs.executors import EXECUTORS, Executor, SweepError, outcome  # noqa: F401  (re-exported)
from hierpoly.study import analysis
from hierpoly.targets import SUPPORTED_K, canonical_link, parse_link

PAPER_MULTIPLES = tuple(2.0**j for j in range(-3, 4))  # n = d^k · 2^j, j = -3..3
# where the cpu grid's seed-mean correlation crosses 0.8, 0.9 and 0.95 (measured): 5 network seeds there
CPU_CROSSINGS = (0.25, 0.5, 1.0, 2.0)
MIN_N = 4  # the smallest n of a grid cell: layer-wise training splits n into D1 and D2


def n_for(multiple: float, d: int, k: int) -> int:
    """n = multiple · d^k, rounded, and at least MIN_N (also the Learn page's classroom runs)."""
    return max(MIN_N, round(multiple * d**k))


@dataclass(frozen=True)
class SweepSpec:
    """A grid of (d, n) cells × seeds × architectures. Exactly one of ``ns`` and ``multiples``."""

    name: str  # preset name or "custom"
    ds: tuple[int, ...]  # input dimensions
    ns: tuple[int, ...] | None = None  # the same n values for every d
    multiples: tuple[float, ...] | None = None  # n = round(multiple · d^k) for each d
    seeds: int = 3  # seeds 0 .. seeds-1 per cell
    crossing_multiples: tuple[float, ...] = ()  # cells n = multiple · d^k around the crossings: more network seeds
    crossing_seeds: int = 5  # network seeds in those cells (κ's interval is a bootstrap over seeds)
    two_layer_seeds: int | None = None  # seeds of the two-layer baseline (None: ``seeds``); it costs as much as the network
    baselines: bool = True  # also the kernel and two_layer baselines on the same data
    k: int = 3  # feature degree
    link: str = "cubic"
    sigma1: str = "cube"
    mode: str = "joint"  # joint (Figure 2) or layerwise
    m1: int | None = None  # None: the config's default (d^2 joint, C(d+k, k) layer-wise)
    m2: int = 1000
    steps: int | None = None  # None: the config's default cap (JOINT_CAP) with the stopping rules
    n_test: int = 8192  # monitor points (progress rows, plot samples)
    n_eval: int = 2**20  # points of the final test loss and correlation
    doc: str = ""  # how to run it and what it should show

    def __post_init__(self):
        def need(ok, message):
            if not ok:
                raise SweepError(message)

        need(len(self.ds) > 0, "a sweep needs at least one d")
        need(all(isinstance(d, int) and d >= 1 for d in self.ds), f"d values must be whole numbers ≥ 1, got {self.ds}")
        need((self.ns is None) != (self.multiples is None), "give either n values or multiples of d^k, not both or neither")
        if self.ns is not None:
            need(len(self.ns) > 0 and all(isinstance(n, int) and n >= 2 for n in self.ns), f"n values must be whole numbers ≥ 2, got {self.ns}")
        if self.multiples is not None:
            need(len(self.multiples) > 0 and all(m > 0 for m in self.multiples), f"multiples of d^k must be positive, got {self.multiples}")
        need(self.k in SUPPORTED_K, f"feature degree k must be one of {', '.join(map(str, SUPPORTED_K))}, got {self.k}")
        need(isinstance(self.seeds, int) and self.seeds >= 1, f"seeds must be a whole number ≥ 1, got {self.seeds}")
        need(isinstance(self.crossing_seeds, int) and self.crossing_seeds >= 1,
             f"crossing_seeds must be a whole number ≥ 1, got {self.crossing_seeds}")
        need(not self.crossing_multiples or self.multiples is not None, "crossing_multiples need a grid of multiples")
        need(self.two_layer_seeds is None or (isinstance(self.two_layer_seeds, int) and self.two_layer_seeds >= 1),
             f"two_layer_seeds must be a whole number ≥ 1, got {self.two_layer_seeds}")
        need(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        try:  # every config of the grid must validate before anything runs
            self.configs()
        except ConfigError as err:
            raise SweepError(f"sweep {self.name!r}: {err}") from None

    @property
    def archs(self) -> tuple[str, ...]:
        return ARCHS if self.baselines else ("three_layer",)

    def n_values(self, d: int) -> tuple[int, ...]:
        """The n grid of one d, ascending and without repeats."""
        if self.ns is not None:
            return tuple(sorted(set(self.ns)))
        return tuple(sorted({n_for(m, d, self.k) for m in self.multiples}))

    def cells(self) -> list[tuple[int, int]]:
        return [(d, n) for d in self.ds for n in self.n_values(d)]

    def config(self, d: int, n: int, seed: int = 0, arch: str = "three_layer") -> RunConfig:
        """The run of one cell; a baseline's is the network's with ``arch`` replaced (and trained jointly)."""
        cfg = RunConfig(
            d=d, n=n, k=self.k, link=self.link, sigma1=self.sigma1, m1=self.m1, m2=self.m2, mode=self.mode,
            steps=self.steps, seed=seed, n_test=self.n_test, n_eval=self.n_eval,
        )
        if arch == "three_layer":
            return cfg
        # the baselines train as a whole whatever the network's mode (same data, same first-layer width)
        return dataclasses.replace(cfg, arch=arch, mode="joint", steps2=None, lr2=None, weight_decay2=None)

    def configs(self) -> list[RunConfig]:
        """Every run of the grid, cheapest cells first (so the figure fills from the left)."""
        out = [self.config(d, n, s, a) for d, n in self.cells() for a in self.archs for s in range(self.seeds_for(d, n, a))]
        # the two-layer baseline last: it costs as much as the network and no criterion needs it first
        return sorted(out, key=lambda c: (c.arch == "two_layer", c.n * c.d * c.m1, ARCHS.index(c.arch), c.seed))

    def seeds_for(self, d: int, n: int, arch: str = "three_layer") -> int:
        """Seeds wanted in one cell: ``crossing_seeds`` for the network in a crossing cell (never fewer than ``seeds``)."""
        if arch == "three_layer" and n in {n_for(m, d, self.k) for m in self.crossing_multiples}:
            return max(self.seeds, self.crossing_seeds)
        if arch == "two_layer" and self.two_layer_seeds is not None:
            return self.two_layer_seeds
        return self.seeds

    def with_options(self, **changes) -> SweepSpec:
        """A copy with some fields changed (e.g. seeds=5, baselines=False), validated again."""
        return dataclasses.replace(self, **changes)

    @property
    def q(self) -> int:
        """The link's degree: kernels need about d^{kq} samples, the network about d^k."""
        return len(parse_link(self.link)) - 1

    @property
    def target(self) -> dict:
        """What one κ belongs to: feature degree, link, σ1 and training mode (the arch is per run)."""
        return {"k": self.k, "q": self.q, "link": canonical_link(self.link), "sigma1": self.sigma1, "mode": self.mode}


@dataclass(frozen=True)
class SweepFamily:
    """Several grids run and read together, each of one target (the exponent table's rows)."""

    name: str
    grids: tuple[SweepSpec, ...]
    doc: str = ""

    def __post_init__(self):
        if not self.grids:
            raise SweepError(f"sweep family {self.name!r} has no grids")

    @property
    def seeds(self) -> int:
        return max(g.seeds for g in self.grids)

    def configs(self) -> list[RunConfig]:
        """Every run of every grid once (grids may share runs), grid after grid, each cheapest first.

        Grid after grid, so a sweep stopped early leaves whole grids (each gives a κ), not
        the small-n corner of all of them (which gives none).
        """
        unique = {cfg.key(): cfg for grid in self.grids for cfg in grid.configs()}
        return list(unique.values())


# ------------------------------------------------------------------- presets
def paper(seeds: int = 3, baselines: bool = True) -> SweepSpec:
    """The paper's Figure 2 grid (GPU-sized): d ∈ {16, 24, 32, 40}, n = d^3 · 2^j, j = -3..3.

    m1 = d^2, m2 = 1000, joint Adam to convergence (the plateau and feature rules, lr 1e-2, cap JOINT_CAP);
    test loss and correlation over 2^20 fresh points per run.
    Run: ``python -m hierpoly sweep --preset paper`` on a GPU machine (up to
    n = 512000 at d = 40), or on a cluster with ``--executor ray``.
    Should show: the feature correlation rising from ≲ 0.7 at n = d^3/8 to ≳ 0.95 at
    8 d^3 for every d, curves that coincide against n/d^3, and κ ≈ 3.
    """
    return SweepSpec("paper", (16, 24, 32, 40), multiples=PAPER_MULTIPLES, seeds=seeds, baselines=baselines, doc=paper.__doc__)


def cpu(seeds: int = 3, baselines: bool = True) -> SweepSpec:
    """Figure 2 at laptop scale: d ∈ {8, 12, 16, 20}, n = d^3 · 2^j, j = -3..3 (28 cells).

    Everything else as ``paper``; 5 network seeds in the cells around the crossings (n = d^3/4 … 2 d^3),
    one seed of the two-layer baseline (with its rate tuning it costs several network runs).
    Run: ``python -m hierpoly sweep --preset cpu``
    (about three hours on a 2-core CPU: the largest cell is n = 64000 at d = 20), then
    ``python -m hierpoly figure2 --preset cpu``.
    Should show (measured, shipped in cache/precomputed/cpu.zip): every network run
    stopped on a rule (115 on the feature rule, 1 on the plateau rule, none at the cap);
    for every d, median correlation ≤ 0.25 at the smallest n and ≥ 0.99 at the largest;
    network test loss ≤ 0.1 at the largest n for d ≥ 12 while the kernel baseline stays
    ≥ 0.8 (its floor 1 − ||P_{≤3} h||² ≈ 0.73–0.79); κ from the seed median below 3 at
    these small d: 2.59 [2.37, 2.65] at 0.8, 2.54 [2.27, 2.80] at 0.9, 2.42 [2.09, 2.54]
    at 0.95, 2.49 from the collapse (the mean's κ at 0.9, 1.58, is set by seed 4).
    """
    return SweepSpec("cpu", (8, 12, 16, 20), multiples=PAPER_MULTIPLES, seeds=seeds, baselines=baselines,
                     crossing_multiples=CPU_CROSSINGS, two_layer_seeds=1, doc=cpu.__doc__)


def tiny(seeds: int = 1, baselines: bool = True) -> SweepSpec:
    """A seconds-sized grid for tests and demos: d ∈ {4, 6}, n = d^3/2 and 2 d^3, 200 steps, m2 = 100, 2^16 evaluation points.

    Run: ``python -m hierpoly sweep --preset tiny`` (12 short jobs with baselines).
    Should show: the machinery working (jobs, store, figure2), not the science — too few
    steps and too small d for a clean law.
    """
    return SweepSpec(
        "tiny", (4, 6), multiples=(0.5, 2.0), seeds=seeds, baselines=baselines, m2=100, steps=200, n_test=2048, n_eval=2**16,
        doc=tiny.__doc__,
    )


# link degree q = 2, 3, 4, each with E[g'] ≠ 0 on p/√d (the theory's condition for the d^k rate)
EXPONENT_LINKS = ("std:h1+h2", "cubic", "std:h1+h4")


def exponents(seeds: int = 3, baselines: bool = False) -> SweepFamily:
    """The exponent table: κ in n*(d) ∝ d^κ for k ∈ {1, 2, 3} and links of degree q ∈ {2, 3, 4}.

    Every link meets the theory's condition E[g'(z)] ≠ 0 (Stein: h's degree-k part points
    at p): q = 3 is the paper's z³; q = 2, 4 are ``std:h1+h2`` and ``std:h1+h4``, i.e.
    g(s) = h_1(s) + h_q(s) on the standardised s = p/√d (E[g'] = 1, half the variance in
    the degree-1 part). A mixed link must act on p/√d: on the raw p its top power takes
    over as d grows (for k = 1, z + z² has 1/(1 + 3d) of E[h²] along p), which pushes κ up by up to 1.
    Seven grids of the three-layer network (joint Adam, m1 = d^2, m2 = 1000, to convergence
    as in ``paper``, 2^20 evaluation points), n = d^k · 2^j:
      k = 1, q = 2, 3, 4: d ∈ {8, 16, 24}, j = 0..5 (n = d … 32 d);
      k = 2, q = 3: d ∈ {6, 8, 10, 12}, j = -1..4 (n = d^2/2 … 16 d^2); q = 2, 4: j = 0..5;
      k = 3, q = 3: the cpu preset's network runs (d ∈ {8, 12, 16, 20}, j = -3..3), reused as shipped.
    Only the network: κ is about it; the kernel's d^{kq} is printed beside it, not run.
    Run: ``python -m hierpoly sweep --preset exponents --executor inline`` (378 runs beside
    the cpu ones, each trained to its stopping rule: hours on a 2-core CPU; resumable), then
    ``python -m hierpoly figure2 --preset exponents``.
    Should show: for the cubic link, κ near k and far below the kernel's kq = 3, 6, 9.
    Only the k = 3 row is shipped (the cpu bundle's runs); the six other grids are not yet
    measured with runs trained to their stopping rule.
    """
    grids = [custom((8, 16, 24), multiples=tuple(2.0**j for j in range(0, 6)), seeds=seeds, baselines=baselines,
                    k=1, link=link) for link in EXPONENT_LINKS]
    # k = 2: the mixed links' correlation rises more slowly (half of h is off p), so their range is one doubling up
    grids += [custom((6, 8, 10, 12), multiples=tuple(2.0**j for j in (range(-1, 5) if link == "cubic" else range(0, 6))),
                     seeds=seeds, baselines=baselines, k=2, link=link) for link in EXPONENT_LINKS]
    grids.append(cpu(seeds=seeds, baselines=baselines))
    grids = [dataclasses.replace(g, name=f"k={g.k} {g.link}") for g in grids]
    return SweepFamily("exponents", tuple(grids), doc=exponents.__doc__)


PRESETS: dict[str, Callable[..., SweepSpec | SweepFamily]] = {"paper": paper, "cpu": cpu, "tiny": tiny, "exponents": exponents}


def preset(name: str, seeds: int | None = None, baselines: bool | None = None) -> SweepSpec | SweepFamily:
    """A preset by name; ``seeds`` and ``baselines`` override its own (None: the preset's)."""
    if name not in PRESETS:
        raise SweepError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    options = {k: v for k, v in (("seeds", seeds), ("baselines", baselines)) if v is not None}
    return PRESETS[name](**options)


def grids(spec: SweepSpec | SweepFamily) -> tuple[SweepSpec, ...]:
    """The single-target grids of a spec or family."""
    return spec.grids if isinstance(spec, SweepFamily) else (spec,)


def custom(
    ds, ns=None, multiples=None, seeds: int = 1, mode: str = "joint", baselines: bool = True, **options
) -> SweepSpec:
    """A grid of your own: d list, and n list or multiples of d^k; other SweepSpec fields as keywords."""
    return SweepSpec(
        "custom", tuple(ds), ns=None if ns is None else tuple(ns), multiples=None if multiples is None else tuple(multiples),
        seeds=seeds, mode=mode, baselines=baselines, **options,
    )


def seeds_text(spec: SweepSpec) -> str:
    """How many seeds a grid wants, in words: '3 seeds' or '3 seeds, 5 for the network around the crossings, …'."""
    parts = [f"{spec.seeds} seed{'s' * (spec.seeds != 1)}"]
    if spec.crossing_multiples and spec.crossing_seeds > spec.seeds:
        parts.append(f"{spec.crossing_seeds} for the network around the crossings")
    if spec.baselines and spec.two_layer_seeds is not None and spec.two_layer_seeds != spec.seeds:
        parts.append(f"{spec.two_layer_seeds} for the two-layer baseline")
    return ", ".join(parts)


# ------------------------------------------------------------ what is stored
def stored_runs(spec: SweepSpec | SweepFamily, store, summaries: pd.DataFrame | None = None) -> pd.DataFrame:
    """The store's summaries of this grid's runs, any seed (more seeds than the spec's count count too).

    A stored run belongs to the grid when its key is the key of ``spec.config`` at its
    own (d, n, seed, arch): every other setting must match exactly. A family's runs are
    those of any of its grids, each once. ``summaries``: ``store.summaries()`` already read.
    """
    table = store.summaries() if summaries is None else summaries
    if isinstance(spec, SweepFamily):
        tables = [stored_runs(grid, store, table) for grid in spec.grids]
        return pd.concat(tables, ignore_index=True).drop_duplicates("key").reset_index(drop=True)
    if table.empty:
        return table
    cells, archs = set(spec.cells()), set(spec.archs)

    def belongs(row) -> bool:
        if (row.d, row.n) not in cells or row.arch not in archs or row.seed < 0:
            return False
        try:
            return spec.config(int(row.d), int(row.n), int(row.seed), row.arch).key() == row.key
        except ConfigError:
            return False

    return table[[belongs(row) for row in table.itertuples(index=False)]].reset_index(drop=True)


def coverage(spec: SweepSpec, store, summaries: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (arch, d, n): seeds stored and wanted, for the grid heatmap and missing-cell reports."""
    return _coverage(spec, stored_runs(spec, store, summaries))


def _coverage(spec: SweepSpec, runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs.groupby(["arch", "d", "n"])["seed"].nunique() if len(runs) else pd.Series(dtype=int)
    rows = [
        {"arch": a, "d": d, "n": n, "n_over_dk": n / d**spec.k, "stored": int(counts.get((a, d, n), 0)),
         "wanted": spec.seeds_for(d, n, a)}
        for d, n in spec.cells() for a in spec.archs
    ]
    return pd.DataFrame(rows, columns=["arch", "d", "n", "n_over_dk", "stored", "wanted"])


# ------------------------------------------------------------- the report
@dataclass(frozen=True)
class Figure2Report:
    """Figure 2 of one grid from the store: what the CLI's ``figure2`` prints and the page shows."""

    spec: SweepSpec
    threshold: float
    runs: pd.DataFrame  # the grid's stored runs, one row per run
    cells: pd.DataFrame  # analysis.aggregate: one row per (arch, d, n)
    table: pd.DataFrame  # analysis.figure2_cells: one row per (d, n), baselines beside the network
    kappa: dict  # analysis.kappas: κ at `threshold`, by_threshold, collapse
    exponents: list[dict]  # analysis.exponent_table: this grid's target, with its κ (empty when nothing stored)
    coverage: pd.DataFrame  # one row per (arch, d, n): seeds stored and wanted

    @property
    def short(self) -> pd.DataFrame:
        """The (arch, d, n) cells with fewer seeds stored than wanted."""
        return self.coverage[self.coverage["stored"] < self.coverage["wanted"]]

    def to_json(self) -> dict:
        """Plain JSON (non-finite numbers become None): one grid of the CLI's ``figure2 --json``."""
        return {
            "name": self.spec.name, **self.spec.target, "seeds_wanted": self.spec.seeds,
            "cells": [_clean_row(row) for row in self.table.to_dict("records")],
            "kappa": self.kappa,
            "missing": [_clean_row(row) for row in self.short.to_dict("records")],
        }


_TARGET_FIELDS = ("k", "q", "link", "sigma1", "mode", "arch", "kernel_kq", "ds", "first_stage_signal")


def _clean_row(row: dict) -> dict:
    out = {}
    for name, value in row.items():
        value = value.item() if hasattr(value, "item") else value
        out[name] = None if isinstance(value, float) and not math.isfinite(value) else value
    return out


def figure2_report(spec: SweepSpec, store, threshold: float = analysis.THRESHOLD,
                   summaries: pd.DataFrame | None = None, statistic: str = analysis.STATISTIC) -> Figure2Report:
    """The table, κ (every threshold, the collapse) and coverage of one grid from its stored runs.

    ``statistic``: the seed statistic κ is read from, ``median`` (the default) or ``mean``.
    """
    # a std: link is one target with a raw link per d: label the runs with the grid's link
    runs = stored_runs(spec, store, summaries)
    runs = runs.assign(link=canonical_link(spec.link)) if len(runs) else runs
    cells = analysis.aggregate(runs, threshold=threshold)
    entries = analysis.exponent_table(runs, threshold=threshold, statistic=statistic)
    criterion = analysis.criterion_for(spec.k, spec.link, spec.sigma1)
    kappa = entries[0] if entries else analysis.kappas(runs, threshold=threshold, criterion=criterion,
                                                        statistic=statistic)
    kappa = {name: value for name, value in kappa.items() if name not in _TARGET_FIELDS}
    if not entries:  # no stored run: the family's table still lists the grid, with its reason
        entries = [{**spec.target, "arch": "three_layer", "kernel_kq": spec.k * spec.q,
                    "first_stage_signal": analysis.first_stage_signal(spec.link), "ds": list(spec.ds), **kappa}]
    entries = [{**entry, "diagnosis": analysis.diagnosis(entry, cells, statistic)} for entry in entries]
    return Figure2Report(spec, threshold, runs, cells, analysis.figure2_cells(cells), kappa, entries,
                         _coverage(spec, runs))


def figure2_json(spec: SweepSpec | SweepFamily, store, threshold: float = analysis.THRESHOLD,
                 statistic: str = analysis.STATISTIC) -> tuple[dict, list[Figure2Report]]:
    """``figure2 --json`` of a grid or a family, and each grid's report (the store is read once).

    One grid: its cells, ``kappa`` and ``exponents`` (one entry). A family (the exponents
    preset): ``exponents``, one entry per grid (k, q, link, estimate or reason, low, high, …),
    and ``grids``, each grid's own report.
    """
    summaries = store.summaries()
    reports = [figure2_report(grid, store, threshold, summaries, statistic) for grid in grids(spec)]
    head = {"preset": spec.name, "threshold": threshold, "statistic": statistic, "seeds_wanted": spec.seeds}
    exponents = [entry for rep in reports for entry in rep.exponents]
    if isinstance(spec, SweepFamily):
        return {**head, "exponents": exponents, "grids": [rep.to_json() for rep in reports]}, reports
    grid = reports[0].to_json()
    return {**head, **{name: grid[name] for name in ("k", "q", "link", "cells", "kappa", "missing")},
            "exponents": exponents}, reports


# ---------------------------------------------------------------- executors
@dataclass(frozen=True)
class SweepProgress:
    """What a sweep reports as it goes: configs finished (stored or not) out of the grid's total."""

    done: int
    total: int
    last: dict | None = None  # the row of the config that just finished
    running: str | None = None  # a short note on the job now running, e.g. "d=8 n=512 seed 0 kernel: step 300/4000"


def missing(spec: SweepSpec, store) -> list[RunConfig]:
    """The grid's configs whose key is not stored, cheapest first."""
    return [cfg for cfg in spec.configs() if not store.has(cfg.key())]


def run_sweep(
    spec: SweepSpec,
    executor: str | Executor = "local",
    store=None,
    on_progress: Callable[[SweepProgress], None] | None = None,
) -> list[dict]:
    """Run the grid's configs that are not stored; a rerun is a no-op.

    Args:
        spec: the grid (a preset or ``custom``).
        executor: a name in EXECUTORS or an Executor.
        store: a ``store.Store`` (default: the project store, $HIERPOLY_CACHE_DIR).
        on_progress: called with a SweepProgress as configs finish and while jobs run.
    Returns:
        one row per config of the grid (``outcome``): stored ones with ``cached`` true,
        the others with the status their run ended in (done, failed, diverged, cancelled, refused).
    """
    from hierpoly.results.store import Store

    store = store if store is not None else Store()
    if isinstance(executor, str):
        executor = executors.get(executor)
    configs = spec.configs()
    todo = [cfg for cfg in configs if not store.has(cfg.key())]
    todo_keys = {cfg.key() for cfg in todo}
    rows = {cfg.key(): outcome(cfg, "done", "already in the store", store, cached=True) for cfg in configs if cfg.key() not in todo_keys}
    state = {"done": len(rows)}

    def report(last=None, running=None):
        if on_progress is not None:
            on_progress(SweepProgress(state["done"], len(configs), last, running))

    def on_done(row):
        state["done"] += 1
        report(last=row)

    report()
    if todo:
        for row in executor.run(todo, store, on_done, lambda note: report(running=note)):
            rows[row["key"]] = row
    return [rows[cfg.key()] for cfg in configs if cfg.key() in rows]
