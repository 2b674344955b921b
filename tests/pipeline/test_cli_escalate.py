"""``minqing escalate`` runs the deadline job once against DATABASE_URL."""

from __future__ import annotations

from click.testing import CliRunner

from web.cli import main


def test_escalate_command_runs_idempotently(committed_db) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": committed_db.url}
    first = runner.invoke(main, ["escalate"], env=env)
    assert first.exit_code == 0, first.output
    assert "escalated 0, auto-closed 0" in first.output
    second = runner.invoke(main, ["escalate"], env=env)
    assert second.exit_code == 0 and second.output == first.output
