"""`run`, `jobs`, `cancel`: one config trained as a background job, the job table; `target`: its constant C."""
from __future__ import annotations

import json
import math
import sys
import time

from hierpoly.cli.options import (
    add_config_args,
    config_from_args,
    fail,
    load_precomputed,
    parse_seed,
)
from hierpoly.config import RunConfig


def add_run(sub, config=RunConfig) -> None:
    p = sub.add_parser("run", help="train one config and print its metrics")
    add_config_args(p, config)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    p.set_defaults(func=cmd_run)


def add_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="list background jobs")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=cmd_jobs)


def add_cancel(sub) -> None:
    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_cancel)


def add_target(sub) -> None:
    p = sub.add_parser("target", help="the exact normalisation constant C of a target")
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--link", default="cubic")
    p.add_argument("--seed", type=parse_seed, default=0, help="draws λ (matters only for even k)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_target)


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
    from hierpoly.jobs import records, scheduler
    from hierpoly.results.store import DISK_FULL_HINT, Store, disk_is_full

    t0 = time.perf_counter()
    cfg = config_from_args(args)
    for warning in cfg.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    store = Store()
    cached = store.has(cfg.key())
    if not cached and disk_is_full(store.directory):  # a run needs room for its job and its result
        return fail(f"the disk holding the store at {store.directory} is full: {DISK_FULL_HINT}; nothing was changed", 1)
    load_precomputed(store)
    job_id = scheduler.submit(cfg, store)
    job = records.get(job_id, store)
    if not job.finished:
        bar, update = _progress_printer(job.total_steps)
        try:
            job = scheduler.wait(job_id, poll=0.5, on_update=update, store=store)
        except KeyboardInterrupt:
            bar.close()
            return fail(f"interrupted; job {job_id} goes on in the background (python -m hierpoly cancel {job_id})", 130)
        bar.close()
    result = store.get(cfg.key()) if job.status == "done" else None
    if job.status == "done" and result is None:
        return fail(f"job {job_id} finished but its result is not in the store at {store.directory}", 1)
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


def cmd_jobs(args) -> int:
    from hierpoly.jobs import doctor_queries, records
    listed = records.list_jobs()
    for job_id, reason in doctor_queries.damaged().items():
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
    from hierpoly.jobs import records, scheduler
    job = records.get(args.job_id)
    if job is None:
        return fail(f"no job {args.job_id!r} (see python -m hierpoly jobs)")
    if not scheduler.cancel(args.job_id):
        return fail(f"job {args.job_id} already ended: {job.status}", 1)
    print(f"cancel requested for job {args.job_id}")
    return 0

