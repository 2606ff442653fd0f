"""`sweep`, `figure2`, `check-convergence`: a grid's runs, its Figure 2 and κ, and whether they have settled."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

from hierpoly.cli.options import (
    fail,
    load_precomputed,
    option_help,
    parse_count,
    parse_multiple,
    parse_seed,
    print_notes,
)
from hierpoly.config import RunConfig
from hierpoly.failure import first_line
from hierpoly.fieldspec import field_spec
from hierpoly.jsonvalue import jsonable


def add_sweep_and_figure2(sub) -> None:
    """`sweep` fills a grid through the job system; `figure2` reads the store only."""
    from hierpoly.study.presets import PRESETS

    for name, text in (("sweep", "run the grid's configs not yet stored"), ("figure2", "Figure 2's table and κ from the store")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--preset", choices=tuple(PRESETS), default=None, help="a named grid (see hierpoly/study/presets.py)")
        p.add_argument("--d", type=int, nargs="+", default=None, help="custom grid: input dimensions")
        p.add_argument("--n", type=int, nargs="+", default=None, help="custom grid: n values (the same for every d)")
        p.add_argument("--multiples", type=parse_multiple, nargs="+", default=None, help="custom grid: n = multiple · d^k")
        p.add_argument("--seeds", type=parse_count, default=None, help="seeds per cell (preset default: its own)")
        p.add_argument("--mode", default=None, help="custom grid: joint | layerwise (default joint)")
        p.add_argument("--steps", type=int, default=None, help="custom grid: step cap")
        _add_target_args(p)
        p.add_argument("--no-baselines", action="store_true", help="only the three-layer network")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(func=cmd_sweep if name == "sweep" else cmd_figure2)
    p.add_argument("--threshold", type=float, default=0.9, help="feature correlation that defines n*(d)")
    p.add_argument("--statistic", choices=("median", "mean"), default="median",
                   help="seed statistic per cell that κ is read from (default median; mean: the sensitivity figure)")
    p.add_argument("--out", default=None, help="write the figure: .html always, .png/.svg when kaleido is installed")
    sub.choices["sweep"].add_argument("--executor", default="local", help="where runs execute (local; others registered)")
    sub.choices["sweep"].add_argument(
        "--address", default=None,
        help="with --executor ray: auto | HOST:PORT | ray://HOST:PORT (default: $RAY_ADDRESS, else a local Ray); "
        "with --fetch: the Jobs API, http://HEAD:8265",
    )
    sub.choices["sweep"].add_argument(
        "--print-bundle", action="store_true",
        help="after the sweep, print the grid's stored results as a bundle on stdout (for a `ray job submit` job)",
    )
    sub.choices["sweep"].add_argument(
        "--fetch", default=None, metavar="JOB_ID",
        help="run nothing: import the bundle a finished Ray job printed (--print-bundle), read through --address",
    )


_GRID_OPTIONS = ("k", "link", "sigma1", "m1", "m2", "n_test", "n_eval")  # SweepSpec fields a custom grid may set


def _add_target_args(p: argparse.ArgumentParser) -> None:
    """A custom grid's target and widths; unset options keep SweepSpec's defaults (RunConfig's)."""
    for name in _GRID_OPTIONS:
        spec = field_spec(RunConfig, name)
        p.add_argument(spec.flag, type=spec.type, default=None, help=f"custom grid: {option_help(spec)}")


def _spec_from_args(args):
    from hierpoly.jobs import executors
    from hierpoly.study import presets, specs

    options = {name: getattr(args, name) for name in _GRID_OPTIONS if getattr(args, name) is not None}
    if args.preset is not None:
        if options or any(v is not None for v in (args.d, args.n, args.multiples, args.steps, args.mode)):
            raise executors.SweepError("give either --preset or a custom grid (--d with --n or --multiples), not both")
        return presets.preset(args.preset, seeds=args.seeds, baselines=False if args.no_baselines else None)
    if args.d is None:
        raise executors.SweepError("give --preset NAME or a custom grid: --d D... with --n N... or --multiples M...")
    return specs.custom(
        args.d, ns=args.n, multiples=args.multiples, seeds=args.seeds or 1, mode=args.mode or "joint",
        baselines=not args.no_baselines, steps=args.steps, **options,
    )


def run_with_bar(spec, executor, store) -> list[dict]:
    """`sweep.run_sweep` with a progress bar on stderr: runs done of the grid, and what is running."""
    from tqdm import tqdm

    from hierpoly.study import sweep

    bar = tqdm(total=len(spec.configs()), file=sys.stderr, unit="run", dynamic_ncols=True, desc=f"sweep {spec.name}")

    def on_progress(p):
        bar.update(p.done - bar.n)
        if p.running:
            bar.set_postfix_str(p.running)

    try:  # a Ray driver prints the raylet's notes (a worker died, ...) on stdout: send them to stderr
        with contextlib.redirect_stdout(sys.stderr):
            return sweep.run_sweep(spec, executor=executor, store=store, on_progress=on_progress)
    finally:
        bar.close()


def cmd_sweep(args) -> int:
    from hierpoly.jobs import executors
    from hierpoly.results.store import Store

    try:
        spec = _spec_from_args(args)
    except executors.SweepError as err:
        return fail(str(err))
    if args.fetch is not None:
        return _fetch_sweep(args, spec)
    if args.print_bundle and args.json:
        return fail("--print-bundle writes the bundle on stdout: leave out --json")
    if args.executor not in executors.EXECUTORS:
        return fail(f"unknown executor {args.executor!r}; available: {', '.join(executors.EXECUTORS)}")
    executor = args.executor
    if args.address is not None:
        if args.executor != "ray":
            return fail("--address is for --executor ray")
        from hierpoly.jobs.cluster import RayExecutor

        try:
            executor = RayExecutor(address=args.address)
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON's (see below)
                executor.connect()  # a dead address or a refused token: one line, in seconds, before any progress bar
        except executors.SweepError as err:
            return fail(str(err))
    store = Store()
    load_precomputed(store)
    try:
        rows = run_with_bar(spec, executor, store)
    except executors.SweepError as err:
        return fail(str(err))
    bad = [r for r in rows if r["status"] != "done"]
    if args.json:
        print(json.dumps({"preset": spec.name, "cells": rows}))
    else:
        ran = sum(not r["cached"] for r in rows)
        print(f"sweep {spec.name}: {len(rows)} runs, {len(rows) - ran} already stored, {ran} run now, {len(bad)} not done")
        for r in bad:
            print(f"  d={r['d']} n={r['n']} seed {r['seed']} {r['arch']}: {r['status']}: {r['message']}")
    if args.print_bundle:
        _print_bundle(spec, store)
    return 1 if bad else 0


def _print_bundle(spec, store) -> None:
    """The grid's stored results as a bundle in the log (what `sweep --fetch` reads back)."""
    from hierpoly.jobs.ray_job import bundle_to_log
    from hierpoly.results import bundles

    keys = [cfg.key() for cfg in spec.configs() if store.has(cfg.key())]
    if keys:
        print(bundle_to_log(bundles.export_bundle(store, keys)), flush=True)


def _fetch_sweep(args, spec) -> int:
    """`sweep --fetch JOB_ID`: import a finished Ray job's bundle, then report the grid as the local store has it."""
    from hierpoly.jobs import executors
    from hierpoly.jobs.ray_job import fetch_job_bundle
    from hierpoly.results import bundles
    from hierpoly.results.store import Store

    if args.address is None:
        return fail("--fetch needs --address http://HEAD:8265 (the Ray Jobs API)")
    try:
        status, data = fetch_job_bundle(args.address, args.fetch)
        store = Store()
        added = bundles.import_bundle(store, data)
    except (executors.SweepError, bundles.BundleError) as err:
        return fail(str(err))
    stored = {cfg.key(): store.get(cfg.key()) for cfg in spec.configs()}
    rows = [executors.outcome(cfg, "done", "fetched", stored[cfg.key()]) if stored[cfg.key()] is not None
            else executors.outcome(cfg, "missing", "not in the job's bundle") for cfg in spec.configs()]
    missing = sum(r["status"] != "done" for r in rows)
    if args.json:
        print(json.dumps({"preset": spec.name, "job": args.fetch, "job_status": status, "added": len(added), "cells": rows}))
    else:
        print(f"sweep {spec.name}: job {args.fetch} {status}, {len(added)} results added, {len(rows) - missing}/{len(rows)} of the grid stored")
    return 1 if missing else 0


def _write_figure2(rep, statistic: str, out: str) -> list[str]:
    """HTML always (both x axes, the κ-axis view, n*(d) log–log); PNG/SVG of the collapse too when asked
    and kaleido is installed. Returns notes."""
    from pathlib import Path

    from hierpoly.views import plots

    path = Path(out)
    cells, k, kappa = rep.cells, rep.spec.k, rep.kappa
    figs = [plots.figure2(cells, x=x, k=k, runs=rep.runs, statistic=statistic) for x in ("n", "n_over_dk")]
    figs += [plots.kappa_axis_figure(cells, k, k * rep.spec.q, kappa["criterion"], statistic, rep.threshold),
             plots.n_star_figure(kappa, k)]
    html_path = path if path.suffix.lower() in (".html", ".htm") else path.with_suffix(".html")
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    html_path.write_text("<html><head><meta charset='utf-8'><title>Figure 2</title></head><body>" + "".join(parts) + "</body></html>")
    notes = [f"wrote {html_path}"]
    if path.suffix.lower() in (".png", ".svg", ".pdf"):
        try:
            figs[1].write_image(str(path))  # the collapse panel: the figure's point
            notes.append(f"wrote {path}")
        except (ImportError, ValueError, RuntimeError) as err:
            reason = first_line(err)
            notes.append(f"note: {path.name} not written: an image backend is needed (pip install kaleido): {reason}")
    return notes


def _write_exponents(report: dict, out: str) -> list[str]:
    """The κ-vs-k figure as HTML (PNG/SVG too when asked and kaleido is installed)."""
    from pathlib import Path

    from hierpoly.study import exponents
    from hierpoly.views import plots

    path = Path(out)
    fig = plots.exponent_figure(exponents.exponent_frame(report["exponents"]))
    html_path = path if path.suffix.lower() in (".html", ".htm") else path.with_suffix(".html")
    html_path.write_text(fig.to_html(include_plotlyjs=True))
    notes = [f"wrote {html_path}"]
    if path.suffix.lower() in (".png", ".svg", ".pdf"):
        try:
            fig.write_image(str(path))
            notes.append(f"wrote {path}")
        except (ImportError, ValueError, RuntimeError) as err:
            reason = first_line(err)
            notes.append(f"note: {path.name} not written: an image backend is needed (pip install kaleido): {reason}")
    return notes


def cmd_figure2(args) -> int:
    from hierpoly.jobs import executors
    from hierpoly.results.store import Store
    from hierpoly.study import figure2, specs

    try:
        spec = _spec_from_args(args)
    except executors.SweepError as err:
        return fail(str(err))
    if not 0 < args.threshold < 1:
        return fail(f"--threshold must be in (0, 1), got {args.threshold}")
    store = Store()
    load_precomputed(store)
    report, reports = figure2.figure2_json(spec, store, args.threshold, args.statistic)
    print_notes(store)
    family = isinstance(spec, specs.SweepFamily)
    if args.out:
        try:
            notes = _write_exponents(report, args.out) if family else _write_figure2(reports[0], args.statistic, args.out)
        except OSError as err:
            return fail(f"cannot write {args.out}: {err.strerror or err}")
        for note in notes:
            print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    elif family:
        print(figure2.exponents_text(report))
    else:
        print(figure2.grid_text({**report, "name": spec.name, "seeds_wanted": spec.seeds}, args.threshold))
    return 0


def cmd_check_convergence(args) -> int:
    from tqdm import tqdm

    from hierpoly.jobs import executors
    from hierpoly.results.store import Store
    from hierpoly.study import convergence, presets, specs

    try:
        spec = presets.preset(args.preset)
        if isinstance(spec, specs.SweepFamily):
            raise executors.SweepError(f"preset {args.preset!r} is a family of grids: check one grid (e.g. cpu)")
        store = Store()
        load_precomputed(store)
        bar = tqdm(total=0, file=sys.stderr, unit="run", dynamic_ncols=True)

        def progress(done, total, note):
            bar.total, bar.n = total, done
            bar.set_postfix_str(note, refresh=True)

        rows = convergence.run_check(spec, store, args.multiples, args.seeds, progress)
        bar.close()
    except (executors.SweepError, convergence.CheckError) as err:
        return fail(str(err))
    cells = convergence.by_cell(rows)
    if args.json:
        print(json.dumps({"preset": spec.name, "runs": jsonable(rows.to_dict("records")), "cells": jsonable(cells.to_dict("records"))}))
    elif rows.empty:
        print(f"no stored network runs in the checked cells of {spec.name}: run `sweep --preset {spec.name}` first")
    else:
        print(cells.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0



def add_check_convergence(sub) -> None:
    p = sub.add_parser("check-convergence", help="train stored network runs on to twice their steps: does Figure 2 move?")
    p.add_argument("--preset", required=True, help="the grid whose stored runs are checked (e.g. cpu)")
    p.add_argument("--multiples", type=parse_multiple, nargs="+", default=None,
                   help="cells n = multiple · d^k to check (default: the grid's crossing cells)")
    p.add_argument("--seeds", type=parse_seed, nargs="+", default=None, help="only these seeds (default: all stored)")
    p.add_argument("--json", action="store_true", help="print {runs, cells} as one JSON object on stdout")
    p.set_defaults(func=cmd_check_convergence)
