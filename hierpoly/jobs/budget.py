"""What one job may use: memory and work estimated from its config, checked before launch.

Importing this module does not import JAX.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hierpoly import settings
from hierpoly.config import TRANSFER, RunConfig, first_block_by_pairs, pair_count, poly_space_dim, two_layer_width
from hierpoly.results.store import SPACE_MARGIN

BUDGET_FRACTION = 0.5  # of the machine's available memory one job may plan to use
# A symmetric eigen-solve of an m×m matrix counted as a full eigendecomposition, 9 m³ flops
# (Golub & Van Loan): an upper bound on the eigvalsh that finds layer-wise 1/L, which does not run
# at the matmul rate (m1 = m2 = 6000 took 27 s on a 2-core CPU; counted so, about 130 s).
EIGEN_FLOPS_PER_CUBE = 9.0
SUSTAINED_FLOPS_PER_SECOND = 3e10  # a 2-core CPU's sustained rate: how long a chunk of steps takes, for counting rows
CHUNK_SECONDS, MIN_ROWS = 1.0, 50  # engine/loop.py's (not imported: that imports JAX)


class BudgetError(ValueError):
    """A config refused before launch: too large for this machine."""


@dataclass(frozen=True)
class Estimate:
    """What one job is expected to need."""

    bytes: int  # peak memory, float32 arrays and their gradients
    flops_per_step: float
    flops: float  # whole run


def feature_block_bytes(cfg: RunConfig, n: int) -> int:
    """The first layer's features: (n, m1) float32, but joint training streams 1024-sample blocks."""
    if cfg.arch == "kernel":
        return 8 * n * max(cfg.m1, poly_space_dim(cfg.d, cfg.k))  # float64 random-features design matrix
    if cfg.mode == "joint":
        return 4 * (1024 + cfg.n_test) * cfg.m1  # model.SAMPLE_CHUNK blocks, plus the unchunked evaluation
    return 4 * n * cfg.m1


def pair_bytes(cfg: RunConfig, n: int) -> int:
    """The training set's pair products, n·P float32, held for the whole run where joint training uses them."""
    return 4 * n * pair_count(cfg.d) if first_block_by_pairs(cfg) else 0


def second_block_bytes(cfg: RunConfig, n: int) -> int:
    """The second block: O(n + m2) on the sorted path (joint); the layer-wise ridge needs the (n, m2) matrix."""
    if cfg.arch != "three_layer":
        return 0
    if cfg.mode == "joint":
        return 4 * 8 * (n + cfg.m2)  # piecewise.relu_sum_fast: a few n- and m2-vectors
    return 4 * n * cfg.m2


def memory_bytes(cfg: RunConfig, n: int | None = None) -> int:
    """Peak bytes of a run with n training samples: data, the two blocks, and backprop copies."""
    n = cfg.n if n is None else n
    data = 4 * (n + cfg.n_test) * (cfg.d + 2) + pair_bytes(cfg, n)  # x, y, p; the pair products
    # ×3: forward activations, their gradients and one temporary, under autodiff
    blocks = 3 * (feature_block_bytes(cfg, max(n, cfg.n_test)) + second_block_bytes(cfg, max(n, cfg.n_test)))
    params = 4 * 4 * (cfg.m1 * (cfg.d + 2) + 3 * cfg.m2)  # params, grads, two Adam moments
    loops = TWO_LAYER_LOOPS if cfg.arch == "two_layer" else 1  # one loop's state is saved at a time
    saving = 3 * checkpoint_bytes(cfg) // loops  # the state copied to the host, its npz and the file's bytes
    return int(data + blocks + params + eigen_bytes(cfg) + saving)


HISTORY_ROW_BYTES = 5 * 8 + 256 * 4  # a history row's columns and its feature sample (engine/loop.py pack)
# History rows a checkpoint is counted with: about a row a second of chunks (400 in a 64-minute d = 32 run);
# a longer history only costs a save that finds no room, which is skipped while training goes on.
CHECKPOINT_ROWS = 1_000


TWO_LAYER_LOOPS = 5  # the two-layer baseline's four tuning trials and its final run, a checkpoint each


def checkpoint_bytes(cfg: RunConfig) -> int:
    """The size of a run's checkpoints (results/checkpoints.py): parameters and Adam's two moments in float32, and
    history rows; 0 for runs that keep none (the kernel's closed form, layer-wise stages, transfers)."""
    rows = HISTORY_ROW_BYTES * min(cfg.total_steps + 1, CHECKPOINT_ROWS)
    if cfg.arch == "two_layer":  # a, w, b per unit; every loop's checkpoint stays until the result is stored
        return TWO_LAYER_LOOPS * (3 * 4 * two_layer_width(cfg) * (cfg.d + 2) + rows)
    if cfg.arch != "three_layer" or cfg.mode != "joint":
        return 0
    return 3 * 4 * (cfg.m1 * (cfg.d + 2) + 3 * cfg.m2) + rows


def disk_bytes(cfg: RunConfig) -> int:
    """Room a run needs on the store's disk while it trains: its checkpoint twice (the new one is written beside
    the old, then renamed over it)."""
    return 2 * checkpoint_bytes(cfg)


def eigen_widths(cfg: RunConfig) -> tuple[int, ...]:
    """The sizes of the eigen-solves a run does: layer-wise finds 1/L for each stage's m×m Hessian."""
    return (cfg.m1, cfg.m2) if cfg.arch == "three_layer" and cfg.mode == "layerwise" else ()


def eigen_bytes(cfg: RunConfig) -> int:
    """The larger stage's Hessian, its float32 copy and LAPACK's workspace: about four m×m float32 arrays."""
    return 4 * 4 * max((m * m for m in eigen_widths(cfg)), default=0)


def eigen_flops(cfg: RunConfig, n: int | None = None) -> float:
    """Forming each stage's Hessian φᵀφ over n/2 samples (2 (n/2) m²) and its eigen-solve (9 m³)."""
    n = cfg.n if n is None else n
    return sum(2.0 * (n // 2) * m * m + EIGEN_FLOPS_PER_CUBE * m**3 for m in eigen_widths(cfg))


TWO_LAYER_STEPS = 1.0 + 3 * 0.8 / 4  # the final run, plus three tuning trials on 0.8 n for a quarter of the cap
# drawing one Gaussian coordinate of an evaluation point and its share of the target h(x): JAX's threefry bits
# and normal transform run far below the matmul rate. Measured on the 2-core CPU, side by side with a matmul
# running at 4e10 flop/s: 70-100 ns a coordinate for d = 64 and 1024 (2100-3100 flops at 3e10); it rules
# the scoring of narrow networks (m1 ≤ ~1500 at any d)
DRAW_FLOPS_PER_COORDINATE = 3000.0
CHUNK_RAMP_ROWS = 8  # report rows while the chunk size grows from 1 step (×4 a chunk) to its working size


def point_work(cfg: RunConfig) -> int:
    """The network's work per point, d·m1 + m2 multiply-adds: a forward pass is 2 flops of it, a step about 6."""
    return cfg.d * cfg.m1 + cfg.m2


def report_rows(cfg: RunConfig, train_seconds: float) -> int:
    """Report rows a run writes, each scoring the n_test monitor points (engine/loop.py: a chunk is about
    CHUNK_SECONDS of steps, at least MIN_ROWS chunks, one row a chunk), plus the step-0 row; at most a row a step."""
    rows = CHUNK_RAMP_ROWS + max(MIN_ROWS, train_seconds / CHUNK_SECONDS)
    return int(min(cfg.total_steps, rows)) + 1


def scoring_flops(cfg: RunConfig, rows: int) -> float:
    """The forward passes that score the run: the monitor points at every report row, the n_eval points once."""
    points = cfg.n_eval + rows * cfg.n_test
    return points * 2.0 * point_work(cfg) + cfg.n_eval * cfg.d * DRAW_FLOPS_PER_COORDINATE


def estimate(cfg: RunConfig, source: RunConfig | None = None) -> Estimate:
    """Worst case: every step up to the cap (a run the rules stop early costs less), the scoring of the monitor
    and evaluation points, and `source`'s whole run when a transfer retrains its source first (runner.py)."""
    if cfg.arch == "two_layer":
        per_step = 6.0 * cfg.n * cfg.d * two_layer_width(cfg)
        train = per_step * cfg.total_steps * TWO_LAYER_STEPS
    elif cfg.arch == TRANSFER:  # the frozen g once over the n points, then steps on the second block alone
        per_step = 6.0 * cfg.n * cfg.m2
        train = 2.0 * cfg.n * cfg.d * cfg.m1 + per_step * cfg.total_steps
    else:  # ≈ forward + backward of both blocks; the first block by pair products is two (n × P) by (P × D) matmuls
        first = 4.0 * cfg.n * pair_count(cfg.d) * (cfg.d + 1) if first_block_by_pairs(cfg) else 6.0 * cfg.n * cfg.d * cfg.m1
        per_step = first + 6.0 * cfg.n * cfg.m2
        train = per_step * cfg.total_steps + eigen_flops(cfg)
    rows = report_rows(cfg, train / SUSTAINED_FLOPS_PER_SECOND)
    retrain = estimate(source).flops if source is not None else 0.0
    return Estimate(memory_bytes(cfg), per_step, train + scoring_flops(cfg, rows) + retrain)


def available_bytes() -> int:
    """Memory a job may use: $HIERPOLY_MEMORY_BYTES, else MemAvailable from /proc/meminfo, else sysconf."""
    env = settings.text("HIERPOLY_MEMORY_BYTES")
    if env:
        return int(float(env))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def max_flops() -> float:
    """Work cap per job: $HIERPOLY_MAX_FLOPS, default 1e17 (hours on one GPU)."""
    return float(settings.text("HIERPOLY_MAX_FLOPS"))


def largest_n(cfg: RunConfig, limit: int) -> int:
    """The largest n whose memory estimate fits under limit (memory is affine in n)."""
    lo, hi = 0, 1
    while memory_bytes(cfg, hi) <= limit and hi < 1 << 50:
        hi *= 2
    while hi - lo > 1:  # binary search keeps this right when the estimate changes shape
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if memory_bytes(cfg, mid) <= limit else (lo, mid)
    return lo


def check_disk(config: RunConfig, directory: Path) -> None:
    """Raise BudgetError when the disk holding the store at `directory` cannot hold the run's checkpoints."""
    import shutil

    need = disk_bytes(config)
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # unknown: a save that finds no room is skipped and training goes on (jobs/runner.py)
    if need and free < need + SPACE_MARGIN:
        raise BudgetError(f"this run saves checkpoints of about {_gib(need // 2)} while it trains, but the disk holding "
                          f"the store at {directory} has {_gib(free)} free: free some space or point "
                          "HIERPOLY_CACHE_DIR at another disk")


def check_budget(config: RunConfig, directory: Path | None = None, source: RunConfig | None = None) -> None:
    """Raise BudgetError when the config's memory or work estimate does not fit this machine, or (given the
    store's directory) its checkpoints do not fit the store's disk.

    source: the config a transfer retrains first (``runner.retrained_source``), counted with it.
    """
    if directory is not None:
        check_disk(config, directory)
    est = estimate(config, source)
    limit = int(BUDGET_FRACTION * available_bytes())
    if est.bytes > limit:
        fit = largest_n(config, limit)
        hint = f"the largest n that fits is {fit}" if fit >= 4 else "no n fits: reduce d, m1, m2 or n_test"
        raise BudgetError(
            f"this run needs about {_gib(est.bytes)} of memory but a job may use {_gib(limit)} "
            f"({BUDGET_FRACTION:.0%} of the {_gib(available_bytes())} available): {hint}"
        )
    cap = max_flops()
    if est.flops > cap:
        fixed = est.flops - est.flops_per_step * config.total_steps  # eigen-solves, scoring, a source's retraining
        steps = max(0, int((cap - fixed) / est.flops_per_step))
        which = " (T1 + T2 together)" if config.mode == "layerwise" else ""
        hint = f"at most {steps} steps{which} fit at this n" if steps else "lower n_eval, n_test, d or the widths"
        raise BudgetError(
            f"this run needs about {est.flops:.2g} floating-point operations, above the {cap:.2g} per job "
            f"(HIERPOLY_MAX_FLOPS){' with its source retrained first' if source is not None else ''}: {hint}"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**26 else f"{n / 2**20:.1f} MiB"
