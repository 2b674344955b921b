"""Any code that opens a session sees every mapper (a CLI job imports only what it needs)."""

from __future__ import annotations

import subprocess
import sys

from layers.config import PROJECT_ROOT


def test_importing_layers_db_registers_every_table() -> None:
    code = (
        "import layers.db\n"
        "from layers.requests.models import Request\n"
        "from sqlalchemy.orm import configure_mappers\n"
        "configure_mappers()\n"
        "t = Request.__table__\n"
        "print(sorted(fk.column.table.name for fk in t.foreign_keys))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "areas" in out.stdout and "grids" in out.stdout
