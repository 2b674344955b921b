"""ruff is configured in pyproject.toml and the tree is clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from layers.config import PROJECT_ROOT

RUFF = Path(sys.executable).with_name("ruff")


def test_ruff_check_and_format_are_clean() -> None:
    check = subprocess.run(
        [str(RUFF), "check", "."], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [str(RUFF), "format", "--check", "."],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout
