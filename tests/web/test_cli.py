"""The minqing command: bad input gets a clear message and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from layers.embedded import free_port
from web.cli import main

MINQING = Path(sys.executable).with_name("minqing")


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(MINQING), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def test_unknown_command_and_option_exit_2_with_usage() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.output
    result = CliRunner().invoke(main, ["serve", "--prot", "5000"])
    assert result.exit_code == 2 and "No such option '--prot'" in result.output


def test_database_url_pointing_nowhere_is_a_clear_error() -> None:
    port = free_port()
    nowhere = f"postgresql+psycopg://x:y@127.0.0.1:{port}/z"
    for variable, command in (("MIGRATION_DATABASE_URL", "migrate"), ("DATABASE_URL", "escalate")):
        result = run(command, env={"DATABASE_URL": nowhere, variable: nowhere})
        assert result.returncode == 1
        assert f"cannot reach {variable}" in result.stderr
        assert "y@" not in result.stderr  # the password is not echoed
        assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(test_db_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = run("serve", "--port", str(port), env={"DATABASE_URL": test_db_url})
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "already in use" in result.stderr


@pytest.mark.slow
def test_second_serve_on_the_same_port_refuses_and_the_first_keeps_serving(
    test_db_url: str,
) -> None:
    import requests

    port = free_port()
    env = {**os.environ, "DATABASE_URL": test_db_url}
    first = subprocess.Popen(
        [str(MINQING), "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail("first server did not come up")
        second = run("serve", "--port", str(port), env={"DATABASE_URL": test_db_url})
        assert second.returncode == 1 and "already in use" in second.stderr
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        first.terminate()
        first.wait(timeout=30)


def test_users_lifecycle_through_the_cli(committed_db) -> None:
    env = {"DATABASE_URL": committed_db.url}
    created = run(
        "users", "create", "wang", "--password", "secret-pass-1", "--name", "王网格", env=env
    )
    assert created.returncode == 0, created.stderr
    dup = run("users", "create", "wang", "--password", "secret-pass-1", env=env)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad_role = run("users", "bind", "wang", "emperor", env=env)
    assert bad_role.returncode == 1 and "Unknown role 'emperor'" in bad_role.stderr
    no_scope = run("users", "bind", "wang", "grid_leader", env=env)
    assert no_scope.returncode == 1 and "must be bound to a grid" in no_scope.stderr
    unknown_grid = run("users", "bind", "wang", "grid_leader", "--grid", "990000999999999", env=env)
    assert unknown_grid.returncode == 1 and "Unknown grid code" in unknown_grid.stderr
    ok = run("users", "bind", "wang", "community_staff", "--area", "990000001001", env=env)
    assert ok.returncode == 0, ok.stderr
    listed = run("users", "list", env=env)
    assert "wang" in listed.stdout and "community_staff" in listed.stdout
    assert run("users", "reset-password", "wang", "--password", "short", env=env).returncode == 1
    assert run("users", "deactivate", "wang", env=env).returncode == 0
    assert "(inactive)" in run("users", "list", env=env).stdout
