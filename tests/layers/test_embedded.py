"""The embedded cluster: placement under /var/lib/minqing, idempotence, stale pid, health."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from layers.config import Settings
from layers.db import Database
from layers.embedded import SHARED_ROOT, EmbeddedCluster, checkout_hash, cluster_root_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="placement as postgres needs root")


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A cluster for a checkout the postgres user cannot reach (mode 700, like mktemp -d)."""
    checkout = tmp_path_factory.mktemp("private-checkout")
    os.chmod(checkout, 0o700)
    cluster = EmbeddedCluster(checkout)
    yield cluster
    cluster.down()
    shutil.rmtree(cluster.root, ignore_errors=True)


def test_unreachable_checkout_puts_the_cluster_under_var_lib(private_cluster) -> None:
    expected = SHARED_ROOT / checkout_hash(private_cluster.checkout)
    assert private_cluster.root == expected
    assert len(expected.name) == 12
    url = private_cluster.up()
    # server runs as postgres with its socket inside the cluster directory
    assert any(p.name.startswith(".s.PGSQL.") for p in expected.iterdir())
    assert expected.stat().st_uid != 0
    eng = create_engine(url)
    with eng.connect() as c:
        assert c.scalar(text("SELECT current_setting('data_directory')")).startswith(str(expected))
        assert c.scalar(text("SELECT extname FROM pg_extension WHERE extname = 'postgis'"))
    eng.dispose()


def test_reachable_checkout_keeps_the_cluster_in_var(tmp_path: Path) -> None:
    checkout = Path("/tmp") / f"minqing-open-{os.getpid()}"
    checkout.mkdir(mode=0o755, exist_ok=True)
    try:
        os.chmod(checkout, 0o755)
        assert cluster_root_for(checkout, "postgres") == checkout.resolve() / "var" / "pg"
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


def test_up_is_idempotent_and_recovers_a_stale_pid_file(private_cluster) -> None:
    url = private_cluster.up()
    assert private_cluster.up() == url  # second call: same server, nothing new
    pid = private_cluster.running_pid()
    assert pid is not None
    private_cluster.down()
    assert private_cluster.running_pid() is None
    # a crash leaves postmaster.pid behind, naming a PID that is now something else
    pidfile = private_cluster.data_dir / "postmaster.pid"
    pidfile.write_text(f"{os.getpid()}\n{private_cluster.data_dir}\n")
    shutil.chown(pidfile, "postgres", "postgres")
    url2 = private_cluster.up()
    eng = create_engine(url2)
    with eng.connect() as c:
        assert c.scalar(text("SELECT 1")) == 1
    eng.dispose()


def test_health_answers_503_when_the_database_stops(private_cluster) -> None:
    from web import create_app

    url = private_cluster.up()
    from layers.db import migrate

    migrate(url)
    app = create_app(Settings(database_url=url, secret_key="x"), database=Database.from_url(url))
    client = app.test_client()
    ok = client.get("/health")
    assert ok.status_code == 200 and ok.get_json()["database"] == "ok"
    private_cluster.down()
    down = client.get("/health", headers={"Accept-Language": "en"})
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "5"
    body = down.get_json()
    assert body["error"]["code"] == "db_unavailable"
    assert "unavailable" in body["error"]["message"]
    private_cluster.up()
    assert client.get("/health").status_code == 200
