"""`transfer`: a stored run's learned feature reused for a new link, beside scratch and the kernel."""
from __future__ import annotations

import json
import sys

from hierpoly.cli.options import (
    fail,
    load_precomputed,
    parse_count,
    parse_seed,
)
from hierpoly.cli.study import run_with_bar
from hierpoly.config import ConfigError
from hierpoly.jsonvalue import jsonable


def add_transfer(sub) -> None:
    p = sub.add_parser("transfer", help="reuse a stored run's learned feature for a new link, beside scratch and kernel")
    p.add_argument("--from", dest="source", default=None, help="the source run's key (full hex or a unique prefix)")
    p.add_argument("--link", default=None, help="the new link g' (any link `run --link` accepts)")
    p.add_argument("--n", type=int, default=None, help="fresh samples N of h' = g' ∘ p")
    p.add_argument("--seed", type=parse_seed, default=0, help="draws the N samples, the second block's init, the test points")
    p.add_argument("--mode", default=None,
                   help="joint (default): Adam on a, b, c under the joint rules; layerwise: Algorithm 1's stage 2 (ridge GD in c)")
    p.add_argument("--preset", default=None, help="a transfer grid (transfer): its table from the store")
    p.add_argument("--run", action="store_true", help="with --preset: run the grid's missing runs first")
    p.add_argument("--executor", default="local", help="with --run: where runs execute (local, inline, ...)")
    p.add_argument("--d", type=int, nargs="+", default=None, help="with --preset: only these d")
    p.add_argument("--links", nargs="+", default=None, help="with --preset: these links instead of the preset's")
    p.add_argument("--max-n", type=int, default=None, help="with --preset: only N up to this")
    p.add_argument("--seeds", type=parse_count, default=None, help="with --preset: seeds per cell (default: the preset's)")
    p.add_argument("--out", default=None, help="with --preset: write the figure (test loss against N per link) as .html")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_transfer)


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
    from hierpoly.jobs import scheduler
    ids = {role: scheduler.submit(cfg, store) for role, cfg in cfgs.items()}
    out = {}
    for role, job_id in ids.items():
        print(f"{role}: waiting for job {job_id}", file=sys.stderr)
        try:
            job = scheduler.wait(job_id, poll=0.5, store=store)
        except KeyboardInterrupt:
            raise SystemExit(fail(f"interrupted; jobs {', '.join(ids.values())} go on in the background", 130)) from None
        out[role] = (job, store.get(cfgs[role].key()) if job.status == "done" else None)
    return out


def cmd_transfer(args) -> int:
    from hierpoly.results.store import Store

    if args.preset is not None:
        return _transfer_preset(args)
    if args.source is None or args.link is None or args.n is None:
        return fail("transfer needs --from KEY, --link LINK and --n N (or --preset NAME)")
    from hierpoly.study.transfer import transfer_runs

    store = Store()
    load_precomputed(store)
    source = store.get(_resolve_key(store, args.source))
    if source is None:
        return fail(f"the stored run {args.source} cannot be read", 1)
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
        return fail(f"unknown transfer preset {args.preset!r}; choose one of {', '.join(presets.TRANSFER_PRESETS)}")
    try:
        spec = presets.TRANSFER_PRESETS[args.preset]()
        changes = {"ds": tuple(args.d) if args.d else None, "links": tuple(args.links) if args.links else None,
                   "ns": tuple(n for n in spec.ns if n <= args.max_n) if args.max_n is not None else None,
                   "seeds": args.seeds, "mode": args.mode}
        spec = spec.with_options(**{k: v for k, v in changes.items() if v is not None})
    except executors.SweepError as err:
        return fail(str(err))
    store = Store()
    load_precomputed(store)
    if args.run:
        if args.executor not in executors.EXECUTORS:
            return fail(f"unknown executor {args.executor!r}; available: {', '.join(executors.EXECUTORS)}")
        rows = run_with_bar(spec, args.executor, store)
        for r in rows:
            if r["status"] != "done":
                print(f"warning: d={r['d']} n={r['n']} seed {r['seed']} {r['arch']}: {r['status']}: {r['message']}",
                      file=sys.stderr)
    rep = transfer_study.report(spec, store)
    if args.out is not None:
        if not args.out.endswith(".html"):
            return fail(f"--out must name an .html file, got {args.out!r}")
        _write_transfer_figure(rep, args.out)
    if args.json:
        print(json.dumps(jsonable(rep)))
        return 0
    frame = transfer_study.table(rep)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if rep["missing"]:
        print(f"{len(rep['missing'])} runs missing (not an error): run with --run to fill them")
    return 0

