"""hierpoly: three-layer networks learning hierarchical polynomials h = g ∘ p (Wang, Nichani, Lee, ICLR 2024).

Public API. Importing the package does not import JAX; the modules that compute do.
    RunConfig, ConfigError        frozen, validated run configs and their stable keys (config); each field
                                  declared once (fieldspec): the CLI, the URL and the Explore form read it
    transfer_config               a stored run's learned feature reused for a new link (config; trained by engine.transfer)
    targets                       Hermite features, polynomial links, exact normalisation
    model, train, baselines       the network of equation (1), joint / layer-wise training, baselines
    Store, Result                 results on diskcache (results.store); jobs: background workers (jobs.scheduler, jobs.records)
    bundles                       validated export/import of results (results.bundles)
    study: specs, presets, sweep  Figure 2 grids and running what is missing; figure2: the report; cell_stats, kappa_fit, exponents: κ
    plots                         plotly figures (views.plots)
"""
__version__ = "0.1.0"

from hierpoly.config import ConfigError, RunConfig, transfer_config  # noqa: E402
from hierpoly.results.codec import Result  # noqa: E402
from hierpoly.results.store import Store  # noqa: E402

__all__ = ["RunConfig", "ConfigError", "transfer_config", "Store", "Result", "__version__"]
