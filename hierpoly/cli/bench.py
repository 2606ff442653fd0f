"""`bench`: the training step's speed, a demo run's latency, and what the presets would take here."""
from __future__ import annotations

import json
import sys


def cmd_bench(args) -> int:
    from hierpoly.bench import latency, page, projections, report
    from hierpoly.study import presets

    if args.page:  # no JAX: what a page rerun costs as the store grows
        out = page.measure_page(args.quick, log=lambda line: print(line, file=sys.stderr))
        print(json.dumps(out) if args.json else page.format_page(out))
        return 0

    paper = presets.paper()
    paper_cells = [(paper.config(d, n), paper.seeds_for(d, n)) for d, n in paper.cells()]
    out = report.run_bench(quick=args.quick, shipped_runs=None if args.quick else projections.shipped_runs(),
                           paper_cells=paper_cells)
    out["demo_run"] = latency.measure_demo(args.quick, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(out) if args.json else report.format_report(out))
    return 0


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="ms per training step: production path vs the plain formulation")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress goes to stderr)")
    p.add_argument("--quick", action="store_true", help="a seconds-long variant with small sizes (for tests)")
    p.add_argument("--page", action="store_true",
                   help="only a page rerun's server time with 10, 1,000 and 10,000 stored results and 2,000 finished jobs")
    p.set_defaults(func=cmd_bench)
