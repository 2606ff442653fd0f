"""A Figure 2 grid on a Ray cluster, from Python: each missing run a Ray task, every result in your store, then κ.

    pip install -r requirements-ray.txt            # on this machine and on every node
    ray start --head --num-cpus 2                  # or any cluster you can reach
    python examples/ray_sweep.py --address auto    # a k = 2 grid: d = 8, 12, 16 at n = d² … 16 d², 3 seeds
    python examples/ray_sweep.py --fast            # seconds: two small runs on a new local Ray instance

Runs already in the store are skipped: a second invocation answers at once. The store is hierpoly's default one
(see the README) unless --store names a folder. Needs hierpoly installed (`pip install -e .` in a checkout, or the wheel).
"""
from __future__ import annotations

import argparse
import sys

import hierpoly
from hierpoly.jobs.cluster import RayExecutor

FULL = dict(ds=(8, 12, 16), multiples=(1, 2, 4, 8, 16), seeds=3, k=2, baselines=False)
FAST = dict(ds=(4,), ns=(64, 256), seeds=1, k=2, baselines=False, m2=20, steps=50, n_test=256, n_eval=4096)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=None, help="auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS, "
                                                        "else a new local Ray instance)")
    parser.add_argument("--store", default=None, help="the store's folder (default: hierpoly's default store)")
    parser.add_argument("--fast", action="store_true", help="two small runs instead of the grid (for a quick check)")
    args = parser.parse_args(argv)
    spec = hierpoly.grid(**(FAST if args.fast else FULL))
    rows = hierpoly.sweep(spec, store=args.store, executor=RayExecutor(address=args.address))
    print(rows[["d", "n", "seed", "status", "cached", "feature_corr", "test_loss"]].to_string(index=False))
    print(hierpoly.figure2(spec, store=args.store))  # κ needs two d or more: --fast has one, and says so
    return 0 if (rows["status"] == "done").all() else 1


if __name__ == "__main__":
    sys.exit(main())
