"""`hierpoly app`: the web explorer started from wherever this package is, checkout or installed.

It runs ``streamlit run app.py`` in the app's folder (``locations.app_dir``), so Streamlit reads that folder's
.streamlit/config.toml: the same server, on the same settings, as ``streamlit run app.py`` in a checkout.
"""
from __future__ import annotations

import os
import subprocess
import sys

from hierpoly import locations


def streamlit_command(streamlit_args: list[str]) -> list[str]:
    """``python -m streamlit run <app folder>/app.py ARGS`` with this interpreter."""
    return [sys.executable, "-m", "streamlit", "run", str(locations.app_dir() / locations.APP), *streamlit_args]


def run_app(streamlit_args: list[str]) -> int:
    """Serve the explorer until Streamlit exits (Ctrl-C stops it); Streamlit's exit status, or 1 with one line on
    stderr when this installation lacks the app (installed without its package data)."""
    folder = locations.app_dir()
    if not (folder / locations.APP).is_file():
        print(f"error: no {locations.APP} in {folder}: reinstall hierpoly-explorer with its package data", file=sys.stderr)
        return 1
    env = dict(os.environ, PYTHONPATH=locations.child_pythonpath(os.environ.get("PYTHONPATH")))
    return subprocess.call(streamlit_command(streamlit_args), cwd=folder, env=env)
