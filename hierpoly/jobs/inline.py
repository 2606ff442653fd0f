"""The inline executor: in this process, no background jobs, a cell's seeds through
``runner.execute_seeds`` (one after another on a CPU, each stored as it ends; batched into one
program on an accelerator). The fastest way to fill a grid on one machine from the command line.

Importing this module does not import JAX.
"""
from __future__ import annotations

import dataclasses

from hierpoly.config import RunConfig
from hierpoly.jobs.executors import outcome


def seed_groups(configs: list[RunConfig]) -> list[list[RunConfig]]:
    """Configs that differ only in their seed, grouped (in first-seen order)."""
    groups: dict[str, list[RunConfig]] = {}
    for cfg in configs:
        groups.setdefault(dataclasses.replace(cfg, seed=0).key(), []).append(cfg)
    return list(groups.values())


class InlineExecutor:
    """Every cell in this process, its seeds through ``runner.execute_seeds``."""

    name = "inline"

    def run(self, configs, store, on_done, on_note) -> list[dict]:
        from hierpoly.jobs import runner

        rows = []
        for group in seed_groups(configs):
            first = group[0]
            label = f"d={first.d} n={first.n} {first.arch} seed"

            def note(i, row, label=label, group=group):
                where = f"{label} {group[i].seed} ({i + 1} of {len(group)})"
                on_note(f"{where}: step {row.step}" if row.is_history else f"{where}: {row.label}")

            for ended in runner.execute_seeds(group, on_progress=note, results=store):
                runner.keep(store, ended)
                rows.append(outcome(ended.config, ended.status, ended.message, ended.result))
                on_done(rows[-1])
        return rows
