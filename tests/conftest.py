"""Fixtures: a real PostGIS (embedded or DATABASE_URL), template clones, per-test rollback.

Everything connects as the app's role, which owns nothing (issue 16): the tests see the
database as the app does. The template is migrated and filled by the schema's owner.

- ``server_url``: the server's superuser (databases and extensions only); ``db_roles``: the
  owner's and the app's roles on it.
- ``test_db_url``: this session's database, cloned from the template, as the app's role;
  ``owner_db_url`` / ``superuser_db_url``: the same database as the owner / the superuser.
- ``connection`` / ``session`` / ``db``: one outer transaction per test, rolled back after it;
  services that commit only release savepoints.
- ``owner_session`` / ``superuser_session``: a rolled-back transaction of their own, for the
  few tests about what only those roles may do.
- ``app`` / ``client``: the Flask app bound to that same transaction.
- ``committed_db``: a database of its own for tests that need real commits and concurrency,
  dropped afterwards (``.url`` the app's, ``.owner_url`` the owner's); ``committed_client``
  is the app over it, through its real pool.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from layers.config import PROJECT_ROOT, Settings
from layers.db import Database
from layers.embedded import EmbeddedCluster
from tests import db_support

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def _server() -> Iterator[tuple[str, EmbeddedCluster | None]]:
    """The superuser's URL of the PostgreSQL server the tests use, and the embedded cluster
    (None with DATABASE_URL, which then names a user that may create databases and roles)."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"], None
        return
    cluster = EmbeddedCluster(PROJECT_ROOT)
    started = cluster.running_pid() is None
    url = cluster.up()
    yield url, cluster
    if started and os.environ.get("MINQING_KEEP_DB") != "1":
        cluster.down()


@pytest.fixture(scope="session")
def server_url(_server) -> str:
    """URL of the server's superuser (the embedded one unless DATABASE_URL)."""
    return _server[0]


@pytest.fixture(scope="session")
def db_roles(_server) -> db_support.Roles:
    return db_support.server_roles(*_server)


@pytest.fixture(scope="session")
def template_db(server_url: str, db_roles: db_support.Roles) -> str:
    return db_support.ensure_template(server_url, roles=db_roles, fill=_fill_template, tag="demo")


def _fill_template(url: str) -> None:
    """Load the demo district into the template (as the owner) when the builder exists."""
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
def test_db_name(server_url: str, template_db: str) -> Iterator[str]:
    name = f"minqing_test_{os.getpid()}"
    admin = db_support.admin_engine(server_url)
    db_support.clone_database(admin, template_db, name)
    yield name
    db_support.drop_database(admin, name)
    admin.dispose()


@pytest.fixture(scope="session")
def test_db_url(server_url: str, db_roles: db_support.Roles, test_db_name: str) -> str:
    """This session's database as the app's role."""
    return db_roles.url(server_url, db_roles.app, test_db_name)


@pytest.fixture(scope="session")
def owner_db_url(server_url: str, db_roles: db_support.Roles, test_db_name: str) -> str:
    """This session's database as the schema's owner."""
    return db_roles.url(server_url, db_roles.owner, test_db_name)


@pytest.fixture(scope="session")
def superuser_db_url(server_url: str, test_db_name: str) -> str:
    """This session's database as the server's superuser."""
    return db_support.url_for_db(server_url, test_db_name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def engine(test_db_url: str):
    eng = create_engine(test_db_url)
    yield eng
    eng.dispose()


def _rolled_back_session(url: str) -> Iterator[Session]:
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            outer = conn.begin()
            with Database.bound_to(conn).session() as s:
                yield s
            if outer.is_active:
                outer.rollback()
    finally:
        eng.dispose()


@pytest.fixture
def owner_session(owner_db_url: str) -> Iterator[Session]:
    """A session as the schema's owner on this session's database, rolled back after."""
    yield from _rolled_back_session(owner_db_url)


@pytest.fixture
def superuser_session(superuser_db_url: str) -> Iterator[Session]:
    """A session as the server's superuser on this session's database, rolled back after."""
    yield from _rolled_back_session(superuser_db_url)


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
def committed_db(
    server_url: str, db_roles: db_support.Roles, template_db: str
) -> Iterator[Database]:
    """A database of its own (cloned from the template) for tests that really commit, as the
    app's role (``.url``; the owner's: ``.owner_url``)."""
    name = f"minqing_c_{uuid.uuid4().hex[:10]}"
    admin = db_support.admin_engine(server_url)
    db_support.clone_database(admin, template_db, name)
    url = db_roles.url(server_url, db_roles.app, name)
    database = Database.from_url(url, pool_size=30, max_overflow=10)
    database.url = url  # type: ignore[attr-defined]
    database.owner_url = db_roles.url(server_url, db_roles.owner, name)  # type: ignore[attr-defined]
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
