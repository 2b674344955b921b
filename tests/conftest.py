"""Fixtures: a real PostGIS (embedded or DATABASE_URL), template clones, per-test rollback.

- ``test_db_url``: this session's database, cloned from the template.
- ``connection`` / ``session`` / ``db``: one outer transaction per test, rolled back after it;
  services that commit only release savepoints.
- ``app`` / ``client``: the Flask app bound to that same transaction.
- ``committed_db``: a database of its own for tests that need real commits and concurrency,
  dropped afterwards; ``committed_client`` is the app over it, through its real pool.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from layers.config import PROJECT_ROOT, Settings
from layers.db import Database
from layers.embedded import EmbeddedCluster
from tests import db_support

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (the embedded one unless DATABASE_URL)."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    cluster = EmbeddedCluster(PROJECT_ROOT)
    started = cluster.running_pid() is None
    url = cluster.up()
    yield url
    if started and os.environ.get("MINQING_KEEP_DB") != "1":
        cluster.down()


@pytest.fixture(scope="session")
def template_db(server_url: str) -> str:
    return db_support.ensure_template(server_url, fill=_fill_template, tag="demo")


def _fill_template(url: str) -> None:
    """Load the demo district into the template when the builder exists."""
    try:
        from data.demo import load_demo
    except ImportError:
        return
    database = Database.from_url(url)
    try:
        load_demo(database=database)
    finally:
        database.engine.dispose()


@pytest.fixture(scope="session")
def test_db_url(server_url: str, template_db: str) -> Iterator[str]:
    name = f"minqing_test_{os.getpid()}"
    admin = db_support.admin_engine(server_url)
    db_support.clone_database(admin, template_db, name)
    yield db_support.url_for_db(server_url, name).render_as_string(hide_password=False)
    db_support.drop_database(admin, name)
    admin.dispose()


@pytest.fixture(scope="session")
def engine(test_db_url: str):
    eng = create_engine(test_db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine):
    with engine.connect() as conn:
        outer = conn.begin()
        yield conn
        if outer.is_active:
            outer.rollback()


@pytest.fixture
def db(connection) -> Database:
    return Database.bound_to(connection)


@pytest.fixture
def session(db: Database):
    with db.session() as s:
        yield s


@pytest.fixture
def settings(test_db_url: str) -> Settings:
    return Settings(database_url=test_db_url, secret_key="test-secret")


@pytest.fixture
def app(settings: Settings, db: Database):
    from web import create_app

    application = create_app(settings, database=db)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def committed_db(server_url: str, template_db: str) -> Iterator[Database]:
    """A database of its own (cloned from the template) for tests that really commit."""
    name = f"minqing_c_{uuid.uuid4().hex[:10]}"
    admin = db_support.admin_engine(server_url)
    db_support.clone_database(admin, template_db, name)
    url = db_support.url_for_db(server_url, name).render_as_string(hide_password=False)
    database = Database.from_url(url, pool_size=30, max_overflow=10)
    database.url = url  # type: ignore[attr-defined]
    try:
        yield database
    finally:
        database.engine.dispose()
        db_support.drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def committed_client(committed_db: Database):
    """A test client of the app over ``committed_db`` and its real pool: requests commit."""
    from web import create_app

    settings = Settings(database_url=committed_db.url, secret_key="test-secret")
    return create_app(settings, database=committed_db).test_client()
