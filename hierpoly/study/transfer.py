"""Transfer grids: a learned feature reused for new links, beside the network from scratch and the kernel.

A ``TransferSpec`` names its sources (the three-layer runs at n = multiple · d^k of one
seed, e.g. the cpu preset's shipped runs), the links g', the sample sizes N and the
seeds. Each (d, N, link, seed) has three runs, all ordinary ``RunConfig``s, stored and
reused like any other: the transfer (engine/transfer.py), the three-layer network trained
from scratch on h' = g' ∘ p with N samples, and the kernel baseline on the same data.
``configs()`` lists them (``sweep.run_sweep`` runs what is missing); ``report`` reads the
store only, naming what is missing.

Importing this module does not import JAX.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierpoly.config import ConfigError, RunConfig, scratch_config, transfer_config
from hierpoly.jobs.executors import SweepError
from hierpoly.study.specs import n_for

ROLES = ("transfer", "scratch", "kernel")


def transfer_runs(source: RunConfig, link: str, n: int, seed: int = 0, mode: str = "joint") -> dict[str, RunConfig]:
    """The three runs of one comparison, by role: the transfer of `source`'s feature to `link` with n samples,
    the same network from scratch on h' = link ∘ p, and the kernel baseline on the scratch run's data."""
    scratch = scratch_config(source, link, n, seed)
    return {
        "transfer": transfer_config(source, link, n, seed, mode=mode),
        "scratch": scratch,
        "kernel": dataclasses.replace(scratch, arch="kernel"),
    }


@dataclass(frozen=True)
class TransferSpec:
    """Sources × links × N × seeds, each with its transfer, scratch and kernel run."""

    name: str
    ds: tuple[int, ...]  # the sources' input dimensions
    ns: tuple[int, ...]  # N: fresh samples of h' (the same for every d)
    links: tuple[str, ...]  # the new links g'
    seeds: int = 3  # seeds 0 .. seeds-1 of each (d, N, link)
    source_multiple: float = 4.0  # the source runs' n = multiple · d^k
    source_seed: int = 0
    k: int = 3
    mode: str = "joint"  # the transfer's fit: joint (Adam on a, b, c) or layerwise (stage 2, ridge GD in c)
    doc: str = ""

    def __post_init__(self):
        if not self.ds or not self.ns or not self.links:
            raise SweepError(f"transfer grid {self.name!r} needs at least one d, one N and one link")
        try:
            self.configs()
        except ConfigError as err:
            raise SweepError(f"transfer grid {self.name!r}: {err}") from None

    def source(self, d: int) -> RunConfig:
        """The source run of one d: the cpu grid's network config (joint, m1 = d², m2 = 1000, 2^20 points)."""
        return RunConfig(d=d, n=n_for(self.source_multiple, d, self.k), k=self.k, seed=self.source_seed)

    def runs(self, d: int, n: int, link: str, seed: int) -> dict[str, RunConfig]:
        """The three runs of one (d, N, link, seed), by role."""
        return transfer_runs(self.source(d), link, n, seed, self.mode)

    def cells(self) -> list[tuple[int, int, str]]:
        return [(d, n, link) for d in self.ds for link in self.links for n in sorted(set(self.ns))]

    def configs(self) -> list[RunConfig]:
        """Every run, cheapest first: the transfers (they share one source each), then kernels, then scratch."""
        out = {c.key(): c for d, n, link in self.cells() for s in range(self.seeds)
               for c in self.runs(d, n, link, s).values()}
        order = {"transfer": 0, "kernel": 1, "three_layer": 2}
        return sorted(out.values(), key=lambda c: (order[c.arch], c.d, c.n, c.link, c.seed))

    def with_options(self, **changes) -> TransferSpec:
        return dataclasses.replace(self, **changes)


def report(spec: TransferSpec, store) -> dict:
    """Per (d, N, link, role): the test loss's median, min and max over the stored seeds, its mean and the
    mean's standard error, and what is missing.

    The SE is the seeds' spread (std / √seeds) when two or more are stored; with one seed it is that run's
    own SE over its 2^20 evaluation points. Returns {"cells": [...], "missing": [...], "sources": [...], "claims"}.
    """
    cells, missing = [], []
    for d, n, link in spec.cells():
        per_role = {role: [] for role in ROLES}
        for seed in range(spec.seeds):
            for role, cfg in spec.runs(d, n, link, seed).items():
                result = store.get(cfg.key())
                if result is None:
                    missing.append({"d": d, "n": n, "link": link, "seed": seed, "role": role, "key": cfg.key()})
                else:
                    per_role[role].append(result.metrics)
        for role, metrics in per_role.items():
            cells.append({"d": d, "n": n, "link": link, "role": role, "seeds": len(metrics), **_summary(metrics)})
    sources = [{"d": d, "key": spec.source(d).key(), "stored": store.has(spec.source(d).key())} for d in spec.ds]
    return {"name": spec.name, "mode": spec.mode, "cells": cells, "missing": missing, "sources": sources,
            "claims": claims(cells)}


HALF = 0.5  # test loss 0.5: half of E[h'^2] = 1 explained


def claims(cells: list[dict]) -> dict:
    """Per link, the readings of the transfer claim from the stored cells' medians over seeds (one seed
    cannot move them).

    ``half_n``: per d, the smallest N whose transfer median test loss is at most HALF (None: no stored N
    reaches it), and ``half_n_spread``, the largest over the smallest of them (a one-dimensional fit: about 1
    across d). ``beats``: per (d, N) stored for all three roles, whether the transfer's
    median is below both scratch's and the kernel's; ``beats_everywhere`` is their conjunction (None: no such
    cell). ``beats_every_seed``: the same cells, whether even the transfer's worst seed is below the best seed
    of scratch and of the kernel.
    """
    by = {(c["d"], c["n"], c["link"], c["role"]): c for c in cells if c["test_loss"] is not None}
    out = {}
    for link in sorted({c["link"] for c in cells}):
        ds = sorted({c["d"] for c in cells if c["link"] == link})
        half = {d: min((n for (dd, n, ll, role), c in by.items() if (dd, ll, role) == (d, link, "transfer")
                        and _median(c) <= HALF), default=None) for d in ds}
        reached = [n for n in half.values() if n is not None]
        compared = [(d, n) for (d, n, ll, role) in by if ll == link and role == "transfer"
                    and (d, n, link, "scratch") in by and (d, n, link, "kernel") in by]
        beats = {f"d={d} N={n}": _wins(by, d, n, link, _median, _median) for d, n in compared}
        every_seed = {f"d={d} N={n}": _wins(by, d, n, link, _worst, _best) for d, n in compared}
        out[link] = {"half_n": {str(d): n for d, n in half.items()},
                     "half_n_spread": max(reached) / min(reached) if len(reached) > 1 else None,
                     "beats": beats, "beats_everywhere": all(beats.values()) if beats else None,
                     "beats_every_seed": all(every_seed.values()) if every_seed else None}
    return out


def _wins(by: dict, d: int, n: int, link: str, transfer_stat, rival_stat) -> bool:
    """Whether the transfer's statistic is below both rivals' at (d, N, link)."""
    rivals = [rival_stat(by[(d, n, link, role)]) for role in ("scratch", "kernel")]
    return bool(transfer_stat(by[(d, n, link, "transfer")]) < min(rivals))


def _median(cell: dict) -> float:
    return cell["test_loss_median"]


def _worst(cell: dict) -> float:
    return cell["test_loss_max"]


def _best(cell: dict) -> float:
    return cell["test_loss_min"]


def _summary(metrics: list[dict]) -> dict:
    if not metrics:
        return {"test_loss": None, "test_loss_se": None, "test_loss_median": None, "test_loss_min": None,
                "test_loss_max": None, "feature_corr": None, "outside_loss_share": None}
    losses = np.array([m["test_loss"] for m in metrics])
    se = float(np.std(losses, ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else float(metrics[0]["test_loss_se"])
    outside = [m["outside_loss_share"] for m in metrics if "outside_loss_share" in m]  # transfers measured with it
    return {"test_loss": float(losses.mean()), "test_loss_se": se, "test_loss_median": float(np.median(losses)),
            "test_loss_min": float(losses.min()), "test_loss_max": float(losses.max()),
            "feature_corr": float(np.mean([m["feature_corr"] for m in metrics])),
            "outside_loss_share": float(np.mean(outside)) if outside else None}


def table(rep: dict) -> pd.DataFrame:
    """The report's cells as one row per (d, N, link): per role its median over seeds, their min–max and
    the mean ± SE."""
    rows = {}
    for c in rep["cells"]:
        row = rows.setdefault((c["d"], c["n"], c["link"]), {"d": c["d"], "n": c["n"], "link": c["link"]})
        role, stored = c["role"], c["test_loss"] is not None
        row[role] = c["test_loss_median"]
        row[f"{role}_min–max"] = f"{c['test_loss_min']:.3f}–{c['test_loss_max']:.3f}" if stored else "–"
        row[f"{role}_mean"] = f"{c['test_loss']:.3f} ± {c['test_loss_se']:.3f}" if stored else "–"
    return pd.DataFrame(list(rows.values()))
