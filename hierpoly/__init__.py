"""hierpoly: three-layer networks learning hierarchical polynomials h = g ∘ p (Wang, Nichani, Lee, ICLR 2024).

Public API (api.py; importing the package does not import JAX, and runs train in background workers):
    run(config or d=…, n=…, …)    train one config, stored and cached by key -> Result (wait=False: a JobHandle)
    stored(**filters)             the store's runs as a DataFrame (not `results`: that name is the results room)
    grid(...), sweep(preset)      a Figure 2 grid of your own; run a grid's missing configs
    figure2(preset), exponents()  Figure 2 (table, κ, .figure()) and the exponent table, from the store
    transfer(source, link, n)     a stored run's learned feature reused for a new link, beside scratch and kernel
    load_shipped(store), demo_store()   the shipped results into a store; a temporary store holding them
    RunConfig, ConfigError        frozen, validated run configs and their stable keys (config)
    Store, Result                 results on disk (results.store) and one finished run (results.codec)
The rooms below: engine (the network, training), results (store, bundles), jobs (workers: jobs.scheduler,
jobs.records; executors), study (grids, presets, figure2; κ: cell_stats, kappa_fit, exponents), views (plots,
the pages' widgets), bench (measurements); the CLI is ``python -m hierpoly`` or ``hierpoly``.
"""
__version__ = "0.1.0"

from hierpoly.api import (  # noqa: E402
    Figure2,
    JobHandle,
    RunError,
    demo_store,
    exponents,
    figure2,
    grid,
    load_shipped,
    run,
    stored,
    sweep,
    transfer,
)
from hierpoly.config import ConfigError, RunConfig, transfer_config  # noqa: E402
from hierpoly.results.codec import Result  # noqa: E402
from hierpoly.results.store import Store  # noqa: E402

__all__ = [
    "run", "stored", "grid", "sweep", "figure2", "exponents", "transfer", "load_shipped", "demo_store",
    "JobHandle", "Figure2", "RunError", "RunConfig", "ConfigError", "transfer_config", "Store", "Result",
    "__version__",
]
