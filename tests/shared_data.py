"""Where the shared real-data folder is, for tests that read it (see shared/data/README.md)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)


def shared_data_dir() -> Path:
    """``<repo root>/../shared/data``; skips the test when absent, unless
    ``MINQING_REQUIRE_SHARED_DATA=1``, in which case the test fails."""
    path = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        if os.environ.get("MINQING_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"shared data folder {path} is required but missing")
        pytest.skip(f"shared data folder {path} is absent")
    return path
