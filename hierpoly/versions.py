"""Versions of what computed a result, for its metadata."""
from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "optax", "numpy")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from hierpoly import __version__

    out = {"hierpoly": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit, when running from one (an installed package has none)."""
    from hierpoly import locations

    if locations.checkout() is None:
        return None
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None
