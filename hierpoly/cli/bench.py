"""`bench`: the training step's speed, a demo run's latency, and what the presets would take here."""
from __future__ import annotations

import json
import sys


def _shipped_runs() -> dict:
    """Per cell (d, n) of the cpu preset, each shipped joint network run's config, steps and share of the
    wall seconds (a batched run's: the batch's over its seeds, so a cell's shares sum to its wall time)."""
    from hierpoly.results import bundles
    from hierpoly.study import presets

    wanted = {cfg.key() for cfg in presets.cpu().configs() if cfg.arch == "three_layer"}
    cells: dict = {}
    for path in sorted(bundles.PRECOMPUTED.glob("*.zip")):
        for key, result in bundles.read_bundle(path.read_bytes()).items():
            if key in wanted:
                batch = int(result.meta.get("extra", {}).get("batched_seeds", 1))  # a batch records its wall time per seed
                cells.setdefault((result.config.d, result.config.n), {})[key] = (
                    result.config, int(result.meta["steps"]), float(result.meta["seconds"]) / batch)
    return {cell: list(runs.values()) for cell, runs in cells.items()}


def cmd_bench(args) -> int:
    from hierpoly.engine import bench
    from hierpoly.jobs import latency
    from hierpoly.study import presets

    paper = presets.paper()
    paper_cells = [(paper.config(d, n), paper.seeds_for(d, n)) for d, n in paper.cells()]
    out = bench.run_bench(quick=args.quick, shipped_runs=None if args.quick else _shipped_runs(), paper_cells=paper_cells)
    out["demo_run"] = latency.measure_demo(args.quick, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(out) if args.json else bench.format_report(out))
    return 0



def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="ms per training step: production path vs the plain formulation")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress goes to stderr)")
    p.add_argument("--quick", action="store_true", help="a seconds-long variant with small sizes (for tests)")
    p.set_defaults(func=cmd_bench)
