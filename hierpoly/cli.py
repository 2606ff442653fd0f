"""`python -m hierpoly ...`: the headless face of the project."""
from __future__ import annotations

import argparse
import json
import sys
import time

from hierpoly.config import MODES, SIGMA1, ConfigError, RunConfig
from hierpoly.targets import LINK_PRESETS, SUPPORTED_K, TargetError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line, exit status 2, no usage dump."""

    def error(self, message):
        raise SystemExit(_fail(f"{self.prog}: {message}", 2))


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--d", type=int, required=True, help="input dimension")
    p.add_argument("--n", type=int, required=True, help="training samples")
    p.add_argument("--k", type=int, default=3, help=f"feature degree, one of {SUPPORTED_K}")
    p.add_argument("--link", default="cubic", help=f"preset ({', '.join(LINK_PRESETS)}) or coefficients 'c0,c1,...'")
    p.add_argument("--sigma1", default="cube", help=f"first activation: {', '.join(SIGMA1)}")
    p.add_argument("--m1", type=int, default=None, help="first width (default d^2 joint, C(d+k,k) layer-wise)")
    p.add_argument("--m2", type=int, default=1000, help="second width")
    p.add_argument("--mode", default="joint", help=f"{' | '.join(MODES)}")
    p.add_argument("--steps", type=int, default=None, help="joint: step cap; layer-wise: T1 = T2")
    p.add_argument("--lr", type=float, default=None, help="joint: Adam base rate; layer-wise: GD rate (default 1/L)")
    p.add_argument("--weight-decay", type=float, default=None, help="layer-wise ξ1 = ξ2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-test", type=int, default=None, help="test points (default 8192)")


def config_from_args(args) -> RunConfig:
    fields = dict(
        d=args.d, n=args.n, k=args.k, link=args.link, sigma1=args.sigma1, m1=args.m1, m2=args.m2,
        mode=args.mode, steps=args.steps, lr=args.lr, seed=args.seed,
    )
    if args.weight_decay is not None:
        fields["weight_decay"] = args.weight_decay
    if args.n_test is not None:
        fields["n_test"] = args.n_test
    return RunConfig(**fields)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hierpoly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="train one config and print its metrics")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    p = sub.add_parser("target", help="the exact normalisation constant C of a target")
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--link", default="cubic")
    p.add_argument("--seed", type=int, default=0, help="draws λ (matters only for even k)")
    p.add_argument("--json", action="store_true")
    return parser


def cmd_target(args) -> int:
    import numpy as np

    from hierpoly import targets, train

    coefs = targets.parse_link(args.link)
    n_minus = 0
    if args.k % 2 == 0:
        n_minus = int(np.sum(np.asarray(targets.lambdas(train.keys(args.seed)["lam"], args.d)) < 0))
    norm = targets.normalisation(args.d, args.k, coefs, n_minus)
    out = {
        "d": args.d, "k": args.k, "link": targets.canonical_link(args.link), "coefficients": list(coefs),
        "C": norm.C, "moments": {f"E[p^{m}]": v for m, v in enumerate(norm.moments)},
        "normalised_moments": {f"E[(p/sqrt(d))^{m}]": v / args.d ** (m / 2) for m, v in enumerate(norm.moments)},
        "n_minus": n_minus,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"C = {norm.C:.6e}  for g(z) = C·({targets.canonical_link(args.link)}) on p = Σ λ_i h_{args.k}(x_i), d = {args.d}")
        for m, v in enumerate(norm.moments):
            print(f"  E[p^{m}] = {v:.6g}")
    return 0


def _progress_printer(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update(row):
        bar.update(row.step - bar.n)
        bar.set_postfix(test_loss=f"{row.test_loss:.4f}", corr=f"{row.feature_corr:.3f}")

    return bar, update


def cmd_run(args) -> int:
    from hierpoly import train
    from hierpoly.versions import versions

    cfg = config_from_args(args)
    for warning in cfg.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    total = cfg.steps * (2 if cfg.mode == "layerwise" else 1)
    bar, update = _progress_printer(total)
    t0 = time.perf_counter()
    result = train.run(cfg, on_progress=update)
    bar.close()
    out = {
        "key": cfg.key(), "config": cfg.to_dict(), "status": result.status, "message": result.message,
        "test_loss": result.metrics.get("test_loss"), "feature_corr": result.metrics.get("feature_corr"),
        "train_loss": result.metrics.get("train_loss"), "steps": result.steps,
        "seconds": round(time.perf_counter() - t0, 3), "device": train.device_info(), "versions": versions(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{result.status}: {result.message}")
        for name in ("test_loss", "feature_corr", "train_loss"):
            if out[name] is not None:
                print(f"  {name:13s} {out[name]:.4f}")
        print(f"  steps         {result.steps}\n  seconds       {out['seconds']}\n  key           {out['key'][:16]}")
    return 0 if result.status == "done" else 1


COMMANDS = {"run": cmd_run, "target": cmd_target}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, TargetError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
