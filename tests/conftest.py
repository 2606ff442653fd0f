"""Shared fixtures: every test gets its own empty store directory."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Stores made by tests start empty, module-scoped fixtures included; the shipped
# bundles have their own test (test_precomputed.py).
os.environ["HIERPOLY_LOAD_PRECOMPUTED"] = "0"
# No test's app starts a warm worker (jobs/warmup.py) unless the test asks for one.
os.environ["HIERPOLY_WARM"] = "0"
# Compiled programs are shared by every test's processes (speed only); a test of the cache itself unsets it.
os.environ.setdefault("HIERPOLY_XLA_CACHE_DIR", str(REPO / "cache" / "store" / "xla"))
if str(REPO) not in sys.path:  # plain `pytest` from a checkout, without an install
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """HIERPOLY_CACHE_DIR set to a fresh folder, so no test touches cache/store."""
    path = tmp_path / "store"
    monkeypatch.setenv("HIERPOLY_CACHE_DIR", str(path))
    return path
