"""Where hierpoly's files are: the shipped bundles, the app, the default store, the code itself.

The package runs two ways. From a checkout (``streamlit run app.py``, ``python -m hierpoly``, or
``pip install -e .``) the app and the bundles sit at the top of the checkout: app.py, pages/,
cache/precomputed/. Installed from a wheel, they travel inside the package: pyproject.toml maps them to
hierpoly/_app/ and hierpoly/_precomputed/, so they are found wherever the package is installed.
"""
from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path

from hierpoly import settings

PACKAGE = Path(__file__).resolve().parent
APP = "app.py"


def checkout() -> Path | None:
    """The checkout this package runs from (its folder holds app.py and cache/precomputed/), else None."""
    root = PACKAGE.parent
    return root if (root / APP).is_file() and (root / "cache" / "precomputed").is_dir() else None


def precomputed_dir() -> Path:
    """The folder of shipped bundles: cache/precomputed/ in a checkout, else the installed package's copy."""
    root = checkout()
    return root / "cache" / "precomputed" if root else PACKAGE / "_precomputed"


def app_dir() -> Path:
    """The folder holding app.py, pages/ and .streamlit/: the checkout, else the installed package's copy."""
    root = checkout()
    return root if root else PACKAGE / "_app"


def user_cache_dir() -> Path:
    """This user's cache folder for hierpoly: $XDG_CACHE_HOME/hierpoly (default ~/.cache/hierpoly) on Linux,
    ~/Library/Caches/hierpoly on macOS, %LOCALAPPDATA%/hierpoly on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hierpoly"


def default_store_dir() -> Path:
    """$HIERPOLY_CACHE_DIR, else cache/store/ in a checkout, else ``user_cache_dir() / "store"`` (installed)."""
    env = settings.text("HIERPOLY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    root = checkout()
    return root / "cache" / "store" if root else user_cache_dir() / "store"


def code_root() -> Path:
    """The folder that holds this hierpoly package (the checkout, or site-packages)."""
    return PACKAGE.parent


def child_pythonpath(inherited: str | None = None) -> str:
    """PYTHONPATH for a child Python that must import this same hierpoly.

    The code root goes first unless it is a site-packages folder (an installed package): the child finds
    that anyway, and site-packages ahead of the standard library could shadow it.
    """
    paths = sysconfig.get_paths()
    site_dirs = {*site.getsitepackages(), site.getusersitepackages(), paths["purelib"], paths["platlib"]}
    installed = str(code_root()) in {str(Path(p).resolve()) for p in site_dirs if p}
    parts = ([] if installed else [str(code_root())]) + ([inherited] if inherited else [])
    return os.pathsep.join(parts)
