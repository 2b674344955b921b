"""Run a benchmark in quick mode as a subprocess against the test server; read its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from layers.config import PROJECT_ROOT

QuickBench = Callable[..., tuple[dict[str, Any], Path, str]]


@pytest.fixture
def run_quick_bench(server_url: str, tmp_path: Path) -> QuickBench:
    """``run_quick_bench("circles_bench", *args, timeout=…)`` → (final JSON line, RESULTS.md,
    stdout).

    Results go to a temporary RESULTS.md so tests never touch bench/RESULTS.md.
    """

    def run(module: str, *args: str, timeout: float = 300) -> tuple[dict[str, Any], Path, str]:
        results = tmp_path / "RESULTS.md"
        env = {**os.environ, "DATABASE_URL": server_url, "MINQING_BENCH_RESULTS": str(results)}
        proc = subprocess.run(
            [sys.executable, "-m", f"bench.{module}", "--quick", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1]), results, proc.stdout

    return run
