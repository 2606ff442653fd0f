"""Shared fixtures: every test gets its own empty store directory."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # plain `pytest` from a checkout, without an install
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """HIERPOLY_CACHE_DIR set to a fresh folder, so no test touches cache/store."""
    path = tmp_path / "store"
    monkeypatch.setenv("HIERPOLY_CACHE_DIR", str(path))
    monkeypatch.setenv("HIERPOLY_LOAD_PRECOMPUTED", "0")  # the shipped bundles have their own test
    return path
