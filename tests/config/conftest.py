"""Shared locations for the config compiler tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_config_dir() -> Path:
    """``$CIRCLET_SHARED_DIR/config`` if set, else ``<repo>/../shared/config``."""
    base = os.environ.get("CIRCLET_SHARED_DIR")
    root = Path(base) if base else REPO.parent / "shared"
    return root / "config"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_config_dir()
    if not path.is_dir():
        pytest.skip(f"shared config material not found at {path} (set CIRCLET_SHARED_DIR)")
    return path
