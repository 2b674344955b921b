"""DESIGN §4's dependency rule, enforced by import-linter contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from layers.config import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_project(dest: Path) -> None:
    for pkg in ("geo", "layers", "web", "data"):
        shutil.copytree(
            PROJECT_ROOT / pkg,
            dest / pkg,
            ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "migrations"),
        )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", dest / "pyproject.toml")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_contracts_hold(tmp_path: Path) -> None:
    _copy_project(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


def test_a_planted_violation_breaks_the_check(tmp_path: Path) -> None:
    _copy_project(tmp_path)
    (tmp_path / "geo" / "planted.py").write_text("import layers.db\n")
    (tmp_path / "layers" / "planted.py").write_text("from web import create_app\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "geo.planted" in result.stdout and "layers.planted" in result.stdout


def test_planted_cycles_break_the_check(tmp_path: Path) -> None:
    _copy_project(tmp_path)
    (tmp_path / "layers" / "planted_data.py").write_text("import data.demo\n")
    (tmp_path / "layers" / "circles" / "planted.py").write_text("import layers.coverage.service\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "layers.planted_data -> data.demo" in result.stdout
    assert "layers.circles.planted -> layers.coverage.service" in result.stdout
