"""Reuse a learned feature for a new link h′ = g′ ∘ p: the transfer beside the network from scratch and the kernel.

    python examples/transfer.py                       # the shipped d = 12 source (n = 4d³), quadratic link, N = 64, 256, 1024
    python examples/transfer.py --link 0,1,1 --n 256  # a link of your own (trains: the source is retrained once, minutes)
    python examples/transfer.py --fast                # about a minute: the shipped d = 6 tour run as source, N = 64

The shipped comparisons answer from the store at once; new ones train in background workers, with a progress bar.
Needs hierpoly installed (`pip install -e .` in a checkout, or the wheel).
"""
from __future__ import annotations

import argparse
import sys

import hierpoly

SHIPPED_SOURCE = "c711be20"  # d = 12, n = 4d³, seed 0, from the shipped cpu grid (retrained once for a new link)
FAST_SOURCE = "e5f07c607038"  # d = 6, n = 864, seed 0: the Learn tour's run, shipped with its first block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", default="quadratic", help="the new link: a preset name or coefficients c0,c1,...")
    parser.add_argument("--n", type=int, nargs="+", default=None, help="fresh samples N (default 64 256 1024; --fast: 64)")
    parser.add_argument("--store", default=None, help="the store's folder (default: hierpoly's default store)")
    parser.add_argument("--fast", action="store_true", help="a small shipped source, one N")
    args = parser.parse_args(argv)
    hierpoly.load_shipped(args.store)  # the sources are shipped runs
    source = FAST_SOURCE if args.fast else SHIPPED_SOURCE
    for n in args.n or ([64] if args.fast else [64, 256, 1024]):
        out = hierpoly.transfer(source, link=args.link, n=n, store=args.store)
        if n == (args.n or [64])[0]:
            print(f"source: {out['transfer'].meta['extra']['source']}")
        for role, result in out.items():
            loss, se = result.metrics["test_loss"], result.metrics["test_loss_se"]
            print(f"N = {n:5d}  {role:9s} test loss {loss:.4f} ± {se:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
