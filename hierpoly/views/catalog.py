"""The run library behind the Results page: stored results and unfinished jobs in one table.

Pure pandas over ``Store.summaries()`` and ``jobs.list_jobs()``; no Streamlit, no JAX.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from hierpoly.targets import link_name

COLUMNS = ["key", "model", "d", "n", "k", "link", "mode", "arch", "m1", "m2", "seed", "steps", "status", "test_loss",
           "feature_corr", "train_loss", "seconds", "created", "stored"]
FILTERS = ("model", "d", "n", "k", "status")
# the names a reader knows the models by; the layer-wise network is Algorithm 1's
MODEL_NAMES = {("three_layer", "joint"): "network", ("three_layer", "layerwise"): "network (layer-wise)",
               ("kernel", "joint"): "kernel", ("two_layer", "joint"): "two-layer"}


def model_name(arch: str, mode: str) -> str:
    """'network', 'network (layer-wise)', 'kernel' or 'two-layer'."""
    return MODEL_NAMES.get((arch, mode), MODEL_NAMES.get((arch, "joint"), str(arch)))


def runs_table(summaries: pd.DataFrame, jobs: Sequence = ()) -> pd.DataFrame:
    """Stored results, plus the newest job of every key that is not stored (running, failed, …).

    Args:
        summaries: ``Store.summaries()``.
        jobs: ``jobs.list_jobs()`` (newest first).
    Returns:
        one row per key with the COLUMNS; ``stored`` tells results from jobs.
    """
    rows = summaries.assign(stored=True).to_dict("records") if len(summaries) else []
    seen = {row["key"] for row in rows}
    for job in jobs:
        if job.key in seen:
            continue
        seen.add(job.key)
        cfg = job.config
        last = job.last.to_json() if job.last is not None else {}
        rows.append({
            "key": job.key, "d": cfg.d, "n": cfg.n, "k": cfg.k, "link": cfg.link, "mode": cfg.mode, "arch": cfg.arch,
            "m1": cfg.m1, "m2": cfg.m2, "seed": cfg.seed, "steps": cfg.steps, "status": job.status,
            "test_loss": last.get("test_loss"), "feature_corr": last.get("feature_corr"),
            "train_loss": last.get("train_loss"), "seconds": last.get("seconds"), "created": _iso(job.created),
            "stored": False,
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    table["model"] = [model_name(arch, mode) for arch, mode in zip(table["arch"], table["mode"], strict=True)]
    # a std: preset by its name, the same at every d (the store keeps each d's raw coefficients)
    table["link"] = [link_name(str(link), int(d)) for link, d in zip(table["link"], table["d"], strict=True)]
    return table.reindex(columns=COLUMNS).sort_values(["d", "n", "seed", "created"]).reset_index(drop=True)


def _iso(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def filter_options(table: pd.DataFrame) -> dict[str, list]:
    """The distinct values of each filter column, sorted."""
    return {name: sorted(table[name].dropna().unique().tolist()) for name in FILTERS if name in table}


def filter_runs(table: pd.DataFrame, selected: Mapping[str, Sequence]) -> pd.DataFrame:
    """Rows whose filter columns take one of the selected values (an empty selection keeps everything)."""
    mask = pd.Series(True, index=table.index)
    for name, values in selected.items():
        if values:
            mask &= table[name].isin(list(values))
    return table[mask].reset_index(drop=True)


def label(row: Mapping) -> str:
    """A short label for one row: the model, d, n, k, link, seed and the key's start."""
    model = row.get("model") or model_name(row.get("arch", "three_layer"), row.get("mode", "joint"))
    link = link_name(str(row["link"]), int(row["d"])) if row.get("link") else "?"
    return f"{model} d={row['d']} n={row['n']} k={row['k']} {link} seed={row['seed']} [{str(row['key'])[:8]}]"
