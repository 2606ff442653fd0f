"""Figure 2 grids: a ``SweepSpec`` (one target, its cells and seeds), a ``SweepFamily``
(several targets), and which of their runs are stored.

A ``SweepSpec`` is a grid of cells (d, n), each trained for several seeds, by the
three-layer network and — unless ``baselines=False`` — by the two baselines of
``baselines.py`` (the same configs with ``arch`` replaced, hence the same data).
The named grids are in presets.py; ``sweep.run_sweep`` runs what is missing.

Importing this module does not import JAX.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from hierpoly.config import ARCHS, MODES, ConfigError, RunConfig
from hierpoly.jobs.executors import SweepError
from hierpoly.targets import SUPPORTED_K, canonical_link, parse_link

PAPER_MULTIPLES = tuple(2.0**j for j in range(-3, 4))  # n = d^k · 2^j, j = -3..3
# where the cpu grid's seed-median correlation crosses 0.8, 0.9 and 0.95 (measured): 5 network seeds there
CPU_CROSSINGS = (0.25, 0.5, 1.0, 2.0)
CPU_CROSSING_CELLS = ((32, 0.125),)  # and d = 32's d^3/8, where its seed median crosses 0.8
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
    crossing_cells: tuple[tuple[int, float], ...] = ()  # (d, multiple): one d's other cells around a crossing
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
        need(not (self.crossing_multiples or self.crossing_cells) or self.multiples is not None,
             "crossing_multiples and crossing_cells need a grid of multiples")
        need(all(d in self.ds and m in (self.multiples or ()) for d, m in self.crossing_cells),
             f"crossing_cells must be (d, multiple) pairs of the grid, got {self.crossing_cells}")
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
        crossing = {*self.crossing_multiples, *(m for d_, m in self.crossing_cells if d_ == d)}
        if arch == "three_layer" and n in {n_for(m, d, self.k) for m in crossing}:
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
    return coverage_of_runs(spec, stored_runs(spec, store, summaries))


def coverage_of_runs(spec: SweepSpec, runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs.groupby(["arch", "d", "n"])["seed"].nunique() if len(runs) else pd.Series(dtype=int)
    rows = [
        {"arch": a, "d": d, "n": n, "n_over_dk": n / d**spec.k, "stored": int(counts.get((a, d, n), 0)),
         "wanted": spec.seeds_for(d, n, a)}
        for d, n in spec.cells() for a in spec.archs
    ]
    return pd.DataFrame(rows, columns=["arch", "d", "n", "n_over_dk", "stored", "wanted"])


def missing(spec: SweepSpec, store) -> list[RunConfig]:
    """The grid's configs whose key is not stored, cheapest first."""
    return [cfg for cfg in spec.configs() if not store.has(cfg.key())]


def ds_text(drawn, wanted, n_counts: dict[int, tuple[int, int]] | None = None) -> str:
    """'d = 8, 12, 16, 20, 24', with the grid's d that have no stored run ('…; d = 32, 40 not run yet') and, given
    n_counts (d: (n stored, n in the grid)), the d stored at some of their n only ('…; d = 32 at 2 of 7 n')."""
    drawn, wanted = sorted(drawn), sorted(wanted)
    text = "d = " + ", ".join(str(d) for d in drawn)
    part = [f"d = {d} at {got} of {of} n" for d, (got, of) in sorted((n_counts or {}).items()) if d in drawn and got < of]
    absent = [d for d in wanted if d not in drawn]
    return text + "".join(f"; {p}" for p in part) + (
        f"; d = {', '.join(str(d) for d in absent)} not run yet" if absent else "")


def n_counts(spec: SweepSpec, cells: pd.DataFrame) -> dict[int, tuple[int, int]]:
    """Per d with cells: at how many of the grid's n it has one, of how many."""
    return {int(d): (int(group["n"].nunique()), len(spec.n_values(int(d)))) for d, group in cells.groupby("d")}
