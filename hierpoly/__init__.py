"""hierpoly: three-layer networks learning hierarchical polynomials h = g ∘ p (Wang, Nichani, Lee, ICLR 2024).

Public API (importing it does not import JAX; `train` and `model` do):
    RunConfig, ConfigError      frozen, validated run configs and their keys
    targets                     Hermite features, links, exact normalisation
"""
__version__ = "0.1.0"

from hierpoly.config import ConfigError, RunConfig  # noqa: E402

__all__ = ["RunConfig", "ConfigError", "__version__"]
