"""`python -m hierpoly ...`: the headless face of the project."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time

from hierpoly import launch
from hierpoly.config import ConfigError, RunConfig
from hierpoly.failure import first_line
from hierpoly.fieldspec import REQUIRED, Choice, FieldSpec, PresetOrText, field_spec, field_specs, number_text
from hierpoly.jobs.budget import BudgetError
from hierpoly.jsonvalue import jsonable
from hierpoly.results.bundles import BundleError  # bundles, config, jobs, store: no JAX at import
from hierpoly.results.codec import StoreError
from hierpoly.targets import TargetError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line, exit status 2, no usage dump."""

    def error(self, message):
        raise SystemExit(_fail(f"{self.prog}: {message}", 2))


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


MAX_SEED = field_spec(RunConfig, "seed").at_most  # JAX keys take 32 bits
MAX_MULTIPLE = 1e6  # n = multiple · d^k: larger multiples are no grid anyone runs, and overflow at 1e308


def _whole(low: int, high: int | None = None, what: str = "", bounds: str | None = None):
    """An argparse type: a whole number in [low, high] (no upper bound: None), refused in one line otherwise;
    ``bounds`` says the range in words where the bare numbers would not."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            told = bounds or (f"at least {low}" if high is None else f"from {low} to {high}")
            raise argparse.ArgumentTypeError(f"{what}must be {told}, got {text[:24]}")
        return value

    return parse


_seed = _whole(0, MAX_SEED, "seed ", f"from 0 to 2^31 - 1 = {MAX_SEED} (JAX keys take 32 bits)")
_count = _whole(1, 1000)  # seeds per cell
_sample_rows = _whole(1)  # scatter points kept per run in a bundle


def _multiple(text: str) -> float:
    """A multiple of d^k: a finite number in (0, MAX_MULTIPLE]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a multiple of d^k must be a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_MULTIPLE):
        raise argparse.ArgumentTypeError(f"a multiple of d^k must be a finite number in (0, {MAX_MULTIPLE:g}], "
                                         f"got {text[:24]}")
    return value


def _option_help(spec: FieldSpec) -> str:
    """A config option's help: the field's own, its choices, its default (argparse %-formats it)."""
    text = spec.help
    if isinstance(spec.edit, Choice):
        text += f"; one of {', '.join(map(str, spec.edit.options))}"
    if isinstance(spec.edit, PresetOrText):
        text += f"; presets: {', '.join(spec.edit.presets)}"
    if spec.default is not None and spec.default is not REQUIRED:
        text += f" (default {number_text(spec.default)})"
    return text.replace("%", "%%")


_OPTION_TYPE = {"seed": _seed}  # run's --seed refused in the words of every other command's


def _add_config_args(p: argparse.ArgumentParser, config=RunConfig) -> None:
    """One option per field of `config` set by hand: --name-with-dashes, its type, its help and default."""
    for spec in field_specs(config):
        if spec.edit is not None:  # None: set by its own command (transfer's --from)
            p.add_argument(spec.flag, type=_OPTION_TYPE.get(spec.name, spec.type), required=spec.default is REQUIRED,
                           default=None, help=_option_help(spec))


def config_from_args(args, config=RunConfig) -> RunConfig:
    """The config of the options given (an unset option takes the config's default)."""
    given = {spec.name: getattr(args, spec.name) for spec in field_specs(config) if spec.edit is not None}
    return config(**{name: value for name, value in given.items() if value is not None})


def build_parser(config=RunConfig) -> argparse.ArgumentParser:
    """The command line; `run` takes one option per field of `config`."""
    parser = _Parser(prog="python -m hierpoly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="train one config and print its metrics")
    _add_config_args(p, config)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    _add_store_commands(sub)
    _add_sweep_commands(sub)
    _add_transfer_command(sub)
    p = sub.add_parser("bench", help="ms per training step: production path vs the plain formulation")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress goes to stderr)")
    p.add_argument("--quick", action="store_true", help="a seconds-long variant with small sizes (for tests)")
    p = sub.add_parser("check-convergence", help="train stored network runs on to twice their steps: does Figure 2 move?")
    p.add_argument("--preset", required=True, help="the grid whose stored runs are checked (e.g. cpu)")
    p.add_argument("--multiples", type=_multiple, nargs="+", default=None,
                   help="cells n = multiple · d^k to check (default: the grid's crossing cells)")
    p.add_argument("--seeds", type=_seed, nargs="+", default=None, help="only these seeds (default: all stored)")
    p.add_argument("--json", action="store_true", help="print {runs, cells} as one JSON object on stdout")
    p = sub.add_parser("target", help="the exact normalisation constant C of a target")
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--link", default="cubic")
    p.add_argument("--seed", type=_seed, default=0, help="draws λ (matters only for even k)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("app", help="start the web explorer (streamlit run app.py), from a checkout or the installed package")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="passed on to streamlit run, e.g. --server.port 8502")
    return parser


def cmd_target(args) -> int:
    import numpy as np

    from hierpoly import targets
    from hierpoly.engine import train

    link = targets.raw_link(args.link, args.d)  # a std: link: its coefficients on the raw p
    coefs = targets.parse_link(link)
    n_minus = 0
    if args.k % 2 == 0:
        n_minus = int(np.sum(np.asarray(targets.lambdas(train.keys(args.seed)["lam"], args.d)) < 0))
    norm = targets.normalisation(args.d, args.k, coefs, n_minus)
    out = {
        "d": args.d, "k": args.k, "link": link, "coefficients": list(coefs),
        "C": norm.C, "moments": {f"E[p^{m}]": v for m, v in enumerate(norm.moments)},
        "normalised_moments": {f"E[(p/sqrt(d))^{m}]": v / args.d ** (m / 2) for m, v in enumerate(norm.moments)},
        "n_minus": n_minus,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"C = {norm.C:.6e}  for g(z) = C·({link}) on p = Σ λ_i h_{args.k}(x_i), d = {args.d}")
        for m, v in enumerate(norm.moments):
            print(f"  E[p^{m}] = {v:.6g}")
    return 0


def _progress_printer(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update(job):
        row = job.last
        if row is not None:
            bar.update(row.step - bar.n)
            if math.isfinite(row.test_loss) and math.isfinite(row.feature_corr):
                bar.set_postfix(test_loss=f"{row.test_loss:.4f}", corr=f"{row.feature_corr:.3f}")
            if not row.is_history:
                bar.set_description(row.phase)
        else:
            bar.set_description(job.status if job.status != "queued" else f"queued ({job.message})")

    return bar, update


def _run_output(cfg, job, result, cached: bool, t0: float) -> dict:
    """`run`'s JSON: the stored result's numbers, or the job's status when it did not finish."""
    meta = result.meta if result is not None else {}
    metrics = result.metrics if result is not None else {}
    if result is None:
        from hierpoly.versions import versions

        meta = {"versions": versions(), "device": None}
    return {
        "key": cfg.key(), "config": cfg.to_dict(), "status": result.status if result else job.status,
        "message": result.message if result else job.message, "test_loss": metrics.get("test_loss"),
        "feature_corr": metrics.get("feature_corr"), "train_loss": metrics.get("train_loss"),
        "steps": meta.get("steps", job.step),
        "seconds": round(meta.get("seconds", time.perf_counter() - t0), 3), "elapsed": round(time.perf_counter() - t0, 3),
        "device": meta.get("device"), "versions": meta.get("versions"), "cached": cached, "job_id": job.job_id,
    }


def cmd_run(args) -> int:
    from hierpoly.jobs import table as jobs
    from hierpoly.results.store import DISK_FULL_HINT, Store, disk_is_full

    t0 = time.perf_counter()
    cfg = config_from_args(args)
    for warning in cfg.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    store = Store()
    cached = store.has(cfg.key())
    if not cached and disk_is_full(store.directory):  # a run needs room for its job and its result
        return _fail(f"the disk holding the store at {store.directory} is full: {DISK_FULL_HINT}; nothing was changed", 1)
    _load_precomputed(store)
    job_id = jobs.submit(cfg, store)
    job = jobs.get(job_id, store)
    if not job.finished:
        bar, update = _progress_printer(job.total_steps)
        try:
            job = jobs.wait(job_id, poll=0.5, on_update=update, store=store)
        except KeyboardInterrupt:
            bar.close()
            return _fail(f"interrupted; job {job_id} goes on in the background (python -m hierpoly cancel {job_id})", 130)
        bar.close()
    result = store.get(cfg.key()) if job.status == "done" else None
    if job.status == "done" and result is None:
        return _fail(f"job {job_id} finished but its result is not in the store at {store.directory}", 1)
    out = _run_output(cfg, job, result, cached, t0)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['status']}: {out['message']}" + ("  (from the store)" if cached else ""))
        for name in ("test_loss", "feature_corr", "train_loss"):
            if out[name] is not None:
                print(f"  {name:13s} {out[name]:.4f}")
        print(f"  steps         {out['steps']}\n  seconds       {out['seconds']}\n  key           {out['key'][:16]}")
        print(f"  job           {job_id}")
    return 0 if out["status"] == "done" else 1


def _load_precomputed(store) -> None:
    """Import shipped bundles on first start; a bad one is a warning, not a failure."""
    from hierpoly.results import bundles

    try:
        bundles.load_precomputed(store)
    except (bundles.BundleError, StoreError) as err:  # a full disk too: what is stored still serves
        print(f"warning: precomputed results not loaded: {err}", file=sys.stderr)


def _add_store_commands(sub) -> None:
    """Subcommands over the store and the job table."""
    p = sub.add_parser("jobs", help="list background jobs")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job_id")
    p = sub.add_parser("export", help="write stored results to a bundle (zip)")
    p.add_argument("--out", required=True, help="bundle file to write")
    for name in ("d", "n", "k"):
        p.add_argument(f"--{name}", type=int, nargs="+", default=None, help=f"only these {name}")
    p.add_argument("--seed", type=_seed, nargs="+", default=None, help="only these seeds")
    for name in ("mode", "arch", "link"):
        p.add_argument(f"--{name}", nargs="+", default=None, help=f"only these {name}")
    p.add_argument("--keys", nargs="+", default=None, help="only these keys (full hex or a unique prefix)")
    p.add_argument("--preset", default=None, help="only the stored runs of this sweep or transfer preset (see `sweep --preset`, `transfer --preset`)")
    p.add_argument("--no-snapshots", action="store_true",
                   help="leave out the learned-g snapshots (the replay slider), about half of a bundle's size")
    p.add_argument("--sample-rows", type=_sample_rows, default=None,
                   help="keep only the first N points of each run's scatter samples (metrics are unchanged)")
    p.add_argument("--first-blocks", choices=("all", "per-source"), default="all",
                   help="per-source: a first block only on one transfer per source run (the block a store reuses)")
    p = sub.add_parser("import", help="add the results of a bundle to the store")
    p.add_argument("file")
    p.add_argument("--overwrite", action="store_true", help="replace results already stored")
    p = sub.add_parser("doctor", help="check the store and the job table; --repair removes what cannot be read")
    p.add_argument("--repair", action="store_true", help="say what will be removed, then remove it")


def cmd_jobs(args) -> int:
    from hierpoly.jobs import table as jobs

    listed = jobs.list_jobs()
    for job_id, reason in jobs.damaged().items():
        print(f"warning: job record {job_id} cannot be read ({reason}): run `python -m hierpoly doctor --repair`",
              file=sys.stderr)
    if args.json:
        print(json.dumps([j.to_dict() for j in listed]))
        return 0
    for j in listed:
        done = f"{j.step}/{j.total_steps}"
        print(f"{j.job_id}  {j.status:9s}  {done:>13s}  pid {j.pid or '-':>7}  {j.key[:12]}  {j.message}")
    return 0


def cmd_cancel(args) -> int:
    from hierpoly.jobs import table as jobs

    job = jobs.get(args.job_id)
    if job is None:
        return _fail(f"no job {args.job_id!r} (see python -m hierpoly jobs)")
    if not jobs.cancel(args.job_id):
        return _fail(f"job {args.job_id} already ended: {job.status}", 1)
    print(f"cancel requested for job {args.job_id}")
    return 0


def _print_notes(store) -> None:
    """What a listing of the store skipped, one line each, on stderr."""
    for note in store.notes():
        print(f"note: {note}", file=sys.stderr)


def cmd_export(args) -> int:
    from hierpoly.results import bundles
    from hierpoly.results.store import Store

    store = Store()
    table = store.summaries()
    _print_notes(store)
    if args.preset is not None:
        from hierpoly.jobs import executors
        from hierpoly.study import presets, specs

        try:
            if args.preset in presets.TRANSFER_PRESETS:  # a transfer grid: its runs of every seed it names
                wanted = {cfg.key() for cfg in presets.TRANSFER_PRESETS[args.preset]().configs()}
                table = table[table["key"].isin(wanted)]
            else:
                table = specs.stored_runs(presets.preset(args.preset), store, table)
        except executors.SweepError as err:
            return _fail(str(err))
    for name in ("d", "n", "k", "seed", "mode", "arch", "link"):
        wanted = getattr(args, name)
        if wanted is not None:
            table = table[table[name].isin(wanted)]
    keys = list(table["key"])
    if args.keys is not None:
        chosen = []
        for prefix in args.keys:
            hits = [k for k in keys if k.startswith(prefix.lower())]
            if len(hits) != 1:
                return _fail(f"key {prefix!r} matches {len(hits)} stored results (after filters), need exactly one")
            chosen.append(hits[0])
        keys = chosen
    if not keys:
        return _fail("no stored results match these filters")
    try:
        bundles.write_bundle(store, keys, args.out, snapshots=not args.no_snapshots, sample_rows=args.sample_rows,
                             first_blocks=args.first_blocks.replace("-", "_"))
    except OSError as err:
        return _fail(f"cannot write {args.out}: {err.strerror or err}")
    print(json.dumps({"out": str(args.out), "results": len(keys), "keys": keys}))
    return 0


def cmd_doctor(args) -> int:
    from hierpoly.jobs import doctor
    from hierpoly.results.store import default_dir

    directory = default_dir()
    findings = doctor.check(directory)
    note = doctor.disk_note(directory)
    if note is not None:  # not damage: said once, and --repair waits for room
        print(f"note: {note}")
    if not findings:
        print(f"ok: the store and the job table at {directory} are readable")
        return 0
    if not args.repair:
        for finding in findings:
            print(finding.line())
        print(f"{len(findings)} problem(s): run `python -m hierpoly doctor --repair` to fix them as listed")
        return 1
    doctor.repair(directory, findings)
    left = doctor.check(directory)
    for finding in left:
        print(f"still wrong: {finding.line()}")
    print(f"repaired the store at {directory}" if not left else f"{len(left)} problem(s) remain")
    return 0 if not left else 1


def cmd_import(args) -> int:
    from hierpoly.results import bundles
    from hierpoly.results.store import Store

    try:
        with open(args.file, "rb") as fh:
            data = fh.read(bundles.MAX_BUNDLE_BYTES + 1)
    except OSError as err:
        return _fail(f"cannot read {args.file}: {err.strerror or err}")
    store = Store()
    added = bundles.import_bundle(store, data, overwrite=args.overwrite)
    print(json.dumps({"added": len(added), "keys": added}))
    return 0


# ------------------------------------------------------------ sweeps, Figure 2
def _add_sweep_commands(sub) -> None:
    """`sweep` fills a grid through the job system; `figure2` reads the store only."""
    from hierpoly.study.presets import PRESETS

    for name, text in (("sweep", "run the grid's configs not yet stored"), ("figure2", "Figure 2's table and κ from the store")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--preset", choices=tuple(PRESETS), default=None, help="a named grid (see hierpoly/study/presets.py)")
        p.add_argument("--d", type=int, nargs="+", default=None, help="custom grid: input dimensions")
        p.add_argument("--n", type=int, nargs="+", default=None, help="custom grid: n values (the same for every d)")
        p.add_argument("--multiples", type=_multiple, nargs="+", default=None, help="custom grid: n = multiple · d^k")
        p.add_argument("--seeds", type=_count, default=None, help="seeds per cell (preset default: its own)")
        p.add_argument("--mode", default=None, help="custom grid: joint | layerwise (default joint)")
        p.add_argument("--steps", type=int, default=None, help="custom grid: step cap")
        _add_target_args(p)
        p.add_argument("--no-baselines", action="store_true", help="only the three-layer network")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
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
        p.add_argument(spec.flag, type=spec.type, default=None, help=f"custom grid: {_option_help(spec)}")


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


def _run_with_bar(spec, executor, store) -> list[dict]:
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
        return _fail(str(err))
    if args.fetch is not None:
        return _fetch_sweep(args, spec)
    if args.print_bundle and args.json:
        return _fail("--print-bundle writes the bundle on stdout: leave out --json")
    if args.executor not in executors.EXECUTORS:
        return _fail(f"unknown executor {args.executor!r}; available: {', '.join(executors.EXECUTORS)}")
    executor = args.executor
    if args.address is not None:
        if args.executor != "ray":
            return _fail("--address is for --executor ray")
        from hierpoly.jobs.cluster import RayExecutor

        try:
            executor = RayExecutor(address=args.address)
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON's (see below)
                executor.connect()  # a dead address or a refused token: one line, in seconds, before any progress bar
        except executors.SweepError as err:
            return _fail(str(err))
    store = Store()
    _load_precomputed(store)
    try:
        rows = _run_with_bar(spec, executor, store)
    except executors.SweepError as err:
        return _fail(str(err))
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
        return _fail("--fetch needs --address http://HEAD:8265 (the Ray Jobs API)")
    try:
        status, data = fetch_job_bundle(args.address, args.fetch)
        store = Store()
        added = bundles.import_bundle(store, data)
    except (executors.SweepError, bundles.BundleError) as err:
        return _fail(str(err))
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


def _pm(cell: dict, name: str) -> str:
    mean, std = cell.get(f"{name}_mean"), cell.get(f"{name}_std")
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def _num(cell: dict, name: str) -> str:
    return "-" if cell.get(name) is None else f"{cell[name]:.4f}"


def _spread(cell: dict, name: str) -> str:
    median, low, high = (cell.get(f"{name}_{s}") for s in ("median", "min", "max"))
    return "-" if median is None else f"{median:.3f} [{low:.3f}, {high:.3f}]"


def _print_grid(report: dict, threshold: float) -> None:
    """One grid's Figure 2 table and κ, as text."""
    print(f"Figure 2, {report['name']} grid (k = {report['k']}, link {report['link']}): "
          f"median [min, max] over seeds, the mean ± std beside it, and the share of seeds past {threshold}")
    print(f"{'d':>3} {'n':>7} {'n/d^k':>7} {'seeds':>5} {'corr(g, p) median':>24} {'corr mean':>17} {'past':>5} "
          f"{'test loss median':>24} {'kernel loss':>11} {'2-layer loss':>12}")
    for c in report["cells"]:
        past = "-" if c.get("success_fraction") is None else f"{c['success_fraction']:.0%}"
        print(f"{c['d']:>3} {c['n']:>7} {c['n_over_dk']:>7.3g} {c['seeds']:>5} {_spread(c, 'corr'):>24} "
              f"{_pm(c, 'feature_corr'):>17} {past:>5} {_spread(c, 'test_loss'):>24} "
              f"{_num(c, 'kernel_test_loss_mean'):>11} {_num(c, 'two_layer_test_loss_mean'):>12}")
    kappa = report["kappa"]
    what = "corr" if kappa["criterion"] == "feature_corr" else "1 − test loss"
    if kappa["estimate"] is None:
        print(f"κ: not estimated: {kappa['reason']}")
    else:
        print(f"κ = {_kappa_text(kappa)} (n* where the seed {kappa['statistic']} {what} crosses {threshold}; "
              f"theory: κ ≈ {report['k']})")
        print("   " + "; ".join(f"at {b['threshold']}: {_kappa_text(b)}" for b in kappa["by_threshold"])
              + f"; collapse fit: {_kappa_text(kappa['collapse'])}  (95% intervals: seed bootstrap, seed noise only)")
        if kappa["local_slopes"]:
            print("   local slope between successive d: " + "; ".join(
                f"{s['d_low']}→{s['d_high']}: {_kappa_text({'estimate': s['slope'], **s})}" for s in kappa["local_slopes"]))
            from hierpoly.study import analysis

            trend = analysis.slope_trend(kappa["local_slopes"], report["k"])
            if trend:
                print("   " + trend)
        other = kappa["sensitivity"]
        print(f"   with the seed {other['statistic']} instead: " + "; ".join(
            f"at {b['threshold']}: {_kappa_text(b)}" for b in other["by_threshold"]))
    if report["missing"]:
        print(f"{len(report['missing'])} (cell, arch) pairs have fewer seeds than {report['seeds_wanted']}: "
              "run python -m hierpoly sweep with the same grid")


def _kappa_text(kappa: dict) -> str:
    if kappa["estimate"] is None:
        return "-"
    split = kappa.get("split")
    if split:  # two scenarios, not one interval
        return (f"{kappa['estimate']:.2f} (bootstrap split by seed {split['seed']}: "
                f"{split['without']['low']:.2f}–{split['without']['high']:.2f} without it, "
                f"{split['with']['low']:.2f}–{split['with']['high']:.2f} with it)")
    return f"{kappa['estimate']:.2f}" + (f" [{kappa['low']:.2f}, {kappa['high']:.2f}]" if kappa["low"] is not None else "")


def _print_exponents(report: dict) -> None:
    """The exponent table, as text: κ per (k, q) beside the network's k and the kernel's kq."""
    print(f"Exponent table ({report['preset']}): n*(d) ∝ d^κ, 95% seed-bootstrap intervals (seed noise only)")
    print(f"{'k':>2} {'q':>2} {'link':>10} {'d':>14} {'criterion':>12} {'κ @ 0.8':>18} {'κ @ 0.9':>18} {'κ @ 0.95':>18} "
          f"{'collapse':>18} {'kq':>3}  E[g'(z)] ≠ 0")
    for e in report["exponents"]:
        at = {b["threshold"]: _kappa_text(b) for b in e["by_threshold"]}
        print(f"{e['k']:>2} {e['q']:>2} {e['link']:>10} {','.join(map(str, e['ds'])):>14} {e['criterion']:>12} "
              f"{at.get(0.8, '-'):>18} {at.get(0.9, '-'):>18} {at.get(0.95, '-'):>18} {_kappa_text(e['collapse']):>18} "
              f"{e['kernel_kq']:>3}  {'yes' if e['first_stage_signal'] else 'no: even link, outside the theory'}")
    missing = sum(len(g["missing"]) for g in report["grids"])
    if missing:
        print(f"{missing} (cell, arch) pairs have fewer seeds than wanted: run python -m hierpoly sweep --preset {report['preset']}")


def _write_exponents(report: dict, out: str) -> list[str]:
    """The κ-vs-k figure as HTML (PNG/SVG too when asked and kaleido is installed)."""
    from pathlib import Path

    from hierpoly.study import analysis
    from hierpoly.views import plots

    path = Path(out)
    fig = plots.exponent_figure(analysis.exponent_frame(report["exponents"]))
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
        return _fail(str(err))
    if not 0 < args.threshold < 1:
        return _fail(f"--threshold must be in (0, 1), got {args.threshold}")
    store = Store()
    _load_precomputed(store)
    report, reports = figure2.figure2_json(spec, store, args.threshold, args.statistic)
    _print_notes(store)
    family = isinstance(spec, specs.SweepFamily)
    if args.out:
        try:
            notes = _write_exponents(report, args.out) if family else _write_figure2(reports[0], args.statistic, args.out)
        except OSError as err:
            return _fail(f"cannot write {args.out}: {err.strerror or err}")
        for note in notes:
            print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    elif family:
        _print_exponents(report)
    else:
        _print_grid({**report, "name": spec.name, "seeds_wanted": spec.seeds}, args.threshold)
    return 0


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


def _cmd_bench(args) -> int:
    from hierpoly.engine import bench
    from hierpoly.jobs import latency
    from hierpoly.study import presets

    paper = presets.paper()
    paper_cells = [(paper.config(d, n), paper.seeds_for(d, n)) for d, n in paper.cells()]
    out = bench.run_bench(quick=args.quick, shipped_runs=None if args.quick else _shipped_runs(), paper_cells=paper_cells)
    out["demo_run"] = latency.measure_demo(args.quick, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(out) if args.json else bench.format_report(out))
    return 0


COMMANDS = {"run": cmd_run, "target": cmd_target}
COMMANDS.update({"jobs": cmd_jobs, "cancel": cmd_cancel, "export": cmd_export, "import": cmd_import})
COMMANDS["doctor"] = cmd_doctor
COMMANDS.update({"sweep": cmd_sweep, "figure2": cmd_figure2})
COMMANDS["bench"] = _cmd_bench


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
        _load_precomputed(store)
        bar = tqdm(total=0, file=sys.stderr, unit="run", dynamic_ncols=True)

        def progress(done, total, note):
            bar.total, bar.n = total, done
            bar.set_postfix_str(note, refresh=True)

        rows = convergence.run_check(spec, store, args.multiples, args.seeds, progress)
        bar.close()
    except (executors.SweepError, convergence.CheckError) as err:
        return _fail(str(err))
    cells = convergence.by_cell(rows)
    if args.json:
        print(json.dumps({"preset": spec.name, "runs": jsonable(rows.to_dict("records")), "cells": jsonable(cells.to_dict("records"))}))
    elif rows.empty:
        print(f"no stored network runs in the checked cells of {spec.name}: run `sweep --preset {spec.name}` first")
    else:
        print(cells.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


COMMANDS["check-convergence"] = cmd_check_convergence


# ------------------------------------------------------------------ transfer
def _add_transfer_command(sub) -> None:
    p = sub.add_parser("transfer", help="reuse a stored run's learned feature for a new link, beside scratch and kernel")
    p.add_argument("--from", dest="source", default=None, help="the source run's key (full hex or a unique prefix)")
    p.add_argument("--link", default=None, help="the new link g' (any link `run --link` accepts)")
    p.add_argument("--n", type=int, default=None, help="fresh samples N of h' = g' ∘ p")
    p.add_argument("--seed", type=_seed, default=0, help="draws the N samples, the second block's init, the test points")
    p.add_argument("--mode", default=None,
                   help="joint (default): Adam on a, b, c under the joint rules; layerwise: Algorithm 1's stage 2 (ridge GD in c)")
    p.add_argument("--preset", default=None, help="a transfer grid (transfer): its table from the store")
    p.add_argument("--run", action="store_true", help="with --preset: run the grid's missing runs first")
    p.add_argument("--executor", default="local", help="with --run: where runs execute (local, inline, ...)")
    p.add_argument("--d", type=int, nargs="+", default=None, help="with --preset: only these d")
    p.add_argument("--links", nargs="+", default=None, help="with --preset: these links instead of the preset's")
    p.add_argument("--max-n", type=int, default=None, help="with --preset: only N up to this")
    p.add_argument("--seeds", type=_count, default=None, help="with --preset: seeds per cell (default: the preset's)")
    p.add_argument("--out", default=None, help="with --preset: write the figure (test loss against N per link) as .html")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _write_transfer_figure(rep: dict, out: str) -> None:
    """One HTML page: per link, test loss against N for every d, transfer beside scratch and kernel."""
    from pathlib import Path

    import pandas as pd

    from hierpoly.views.plots import transfer_figure

    cells = pd.DataFrame(rep["cells"])
    parts = [transfer_figure(cells, link).to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False)
             for i, link in enumerate(dict.fromkeys(cells["link"]))]
    Path(out).write_text("<html><body>" + "".join(parts) + "</body></html>")


def _resolve_key(store, prefix: str) -> str:
    """A stored key from its full hex or a unique prefix; ConfigError (one line) otherwise."""
    prefix = prefix.strip().lower()
    if len(prefix) < 4 or any(ch not in "0123456789abcdef" for ch in prefix):
        raise ConfigError(f"--from must be a stored run's key or a prefix of at least 4 hex digits, got {prefix!r}")
    found = [key for key in store.keys() if key.startswith(prefix)]
    if not found:
        raise ConfigError(f"no stored run with key {prefix}")
    if len(found) > 1:
        raise ConfigError(f"key prefix {prefix} is ambiguous: {len(found)} stored runs start with it")
    return found[0]


def _wait_all(cfgs: dict, store) -> dict:
    """Submit each config as a background job (stored results answer at once) and wait; role -> (job, result)."""
    from hierpoly.jobs import table as jobs

    ids = {role: jobs.submit(cfg, store) for role, cfg in cfgs.items()}
    out = {}
    for role, job_id in ids.items():
        print(f"{role}: waiting for job {job_id}", file=sys.stderr)
        try:
            job = jobs.wait(job_id, poll=0.5, store=store)
        except KeyboardInterrupt:
            raise SystemExit(_fail(f"interrupted; jobs {', '.join(ids.values())} go on in the background", 130)) from None
        out[role] = (job, store.get(cfgs[role].key()) if job.status == "done" else None)
    return out


def cmd_transfer(args) -> int:
    from hierpoly.results.store import Store

    if args.preset is not None:
        return _transfer_preset(args)
    if args.source is None or args.link is None or args.n is None:
        return _fail("transfer needs --from KEY, --link LINK and --n N (or --preset NAME)")
    from hierpoly.study.transfer import transfer_runs

    store = Store()
    _load_precomputed(store)
    source = store.get(_resolve_key(store, args.source))
    if source is None:
        return _fail(f"the stored run {args.source} cannot be read", 1)
    cfgs = transfer_runs(source.config, args.link, args.n, args.seed, mode=args.mode or "joint")
    cfg = cfgs["transfer"]
    done = _wait_all(cfgs, store)
    out = {"source": source.key, "link": args.link, "n": args.n, "seed": args.seed, "mode": cfg.mode}
    for role, (job, result) in done.items():
        metrics = result.metrics if result is not None else {}
        out[role] = {"key": cfgs[role].key(), "status": job.status, "message": job.message,
                     "test_loss": metrics.get("test_loss"), "test_loss_se": metrics.get("test_loss_se"),
                     "feature_corr": metrics.get("feature_corr")}
    if done["transfer"][1] is not None:
        out["transfer"]["source_first_block"] = done["transfer"][1].meta.get("extra", {}).get("source")
    if args.json:
        print(json.dumps(jsonable(out)))
    else:
        print(f"d = {cfg.d}, link {args.link}, N = {args.n}, seed {args.seed} (source {source.key[:16]})")
        for role in ("transfer", "scratch", "kernel"):
            r = out[role]
            value = f"{r['test_loss']:.4f} ± {r['test_loss_se']:.4f}" if r["test_loss"] is not None else r["status"]
            print(f"  {role:9s} test loss {value}   ({r['message']})")
    return 0 if all(job.status == "done" for job, _ in done.values()) else 1


def _transfer_preset(args) -> int:
    from hierpoly.jobs import executors
    from hierpoly.results.store import Store
    from hierpoly.study import presets
    from hierpoly.study import transfer as transfer_study

    if args.preset not in presets.TRANSFER_PRESETS:
        return _fail(f"unknown transfer preset {args.preset!r}; choose one of {', '.join(presets.TRANSFER_PRESETS)}")
    try:
        spec = presets.TRANSFER_PRESETS[args.preset]()
        changes = {"ds": tuple(args.d) if args.d else None, "links": tuple(args.links) if args.links else None,
                   "ns": tuple(n for n in spec.ns if n <= args.max_n) if args.max_n is not None else None,
                   "seeds": args.seeds, "mode": args.mode}
        spec = spec.with_options(**{k: v for k, v in changes.items() if v is not None})
    except executors.SweepError as err:
        return _fail(str(err))
    store = Store()
    _load_precomputed(store)
    if args.run:
        if args.executor not in executors.EXECUTORS:
            return _fail(f"unknown executor {args.executor!r}; available: {', '.join(executors.EXECUTORS)}")
        rows = _run_with_bar(spec, args.executor, store)
        for r in rows:
            if r["status"] != "done":
                print(f"warning: d={r['d']} n={r['n']} seed {r['seed']} {r['arch']}: {r['status']}: {r['message']}",
                      file=sys.stderr)
    rep = transfer_study.report(spec, store)
    if args.out is not None:
        if not args.out.endswith(".html"):
            return _fail(f"--out must name an .html file, got {args.out!r}")
        _write_transfer_figure(rep, args.out)
    if args.json:
        print(json.dumps(jsonable(rep)))
        return 0
    frame = transfer_study.table(rep)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if rep["missing"]:
        print(f"{len(rep['missing'])} runs missing (not an error): run with --run to fill them")
    return 0


COMMANDS["transfer"] = cmd_transfer


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:  # all that follows is streamlit's: argparse would refuse its --server.* options
        return launch.run_app(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, TargetError) as err:
        return _fail(str(err))
    except (BudgetError, BundleError, StoreError) as err:
        return _fail(str(err), 1)
    except OverflowError as err:  # a number too large for what it feeds, should one slip past the checks above
        return _fail(f"a number is too large: {err}")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
