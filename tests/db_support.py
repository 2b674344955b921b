"""Test databases: one migrated template per code version, cloned with CREATE DATABASE … TEMPLATE.

The template holds the schema (and the demo district, once built) and is reused across test
sessions while the files that shape it are unchanged, so quick loops stay quick.

Roles as in production (issue 16): the superuser of the server only creates and drops
databases and extensions; the template is migrated and filled by the schema's owner
(``minqing_owner``), and the tests connect as the app's role (``minqing_app``), which owns
nothing and holds the grants of ``layers.grants``. Test setup that needs more than the app may
do gets the owner's own connection, or — for the one shortcut tests take past the status
guard — ``forge_guard`` below, a function only test templates have.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from layers.config import PROJECT_ROOT
from layers.db import migrate
from layers.embedded import APP_ROLE, EXTENSIONS, OWNER_ROLE, EmbeddedCluster, ensure_roles_sql

logger = logging.getLogger(__name__)

TEMPLATE_INPUTS = (
    "layers/migrations",
    "layers/grants.py",  # the app role's grants are part of the template
    "tests/db_support.py",
    "layers/pipeline",  # the action tables fill pipeline_transitions (migration 0007)
    "layers/requests/workflow.py",
    "layers/requests/states.py",
    "data",
    "layers/importers",
    "geo/partition.py",
    "geo/households.py",
    "geo/codes.py",
)


def template_fingerprint(extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for rel in TEMPLATE_INPUTS:
        p = PROJECT_ROOT / rel
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(PROJECT_ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:10]


@dataclass(frozen=True)
class Roles:
    """The owner's and the app's role names and passwords on the test server."""

    owner: str
    owner_password: str
    app: str
    app_password: str

    def url(self, server_url: str, role: str, database: str) -> str:
        password = self.owner_password if role == self.owner else self.app_password
        return (
            make_url(server_url)
            .set(username=role, password=password, database=database)
            .render_as_string(hide_password=False)
        )


def server_roles(server_url: str, cluster: EmbeddedCluster | None) -> Roles:
    """The roles of the embedded ``cluster`` (made by its ``up()``), or — on a server of
    DATABASE_URL — the same two roles, created by its (super)user if missing, with passwords
    derived from that user's URL so that concurrent test sessions agree on them."""
    if cluster is not None:
        pw = cluster.role_passwords()
        return Roles(OWNER_ROLE, pw[OWNER_ROLE], APP_ROLE, pw[APP_ROLE])
    pw = {
        r: hashlib.sha256(f"{server_url}|{r}".encode()).hexdigest()[:32]
        for r in (OWNER_ROLE, APP_ROLE)
    }
    admin = admin_engine(server_url)
    try:
        with admin.connect() as c:
            c.execute(text("SELECT pg_advisory_lock(hashtext('minqing_test_roles'))"))
            try:
                c.execute(text(ensure_roles_sql(pw)))
            finally:
                c.execute(text("SELECT pg_advisory_unlock(hashtext('minqing_test_roles'))"))
    finally:
        admin.dispose()
    return Roles(OWNER_ROLE, pw[OWNER_ROLE], APP_ROLE, pw[APP_ROLE])


# Test templates only (never a migration): the owner's function that switches the requests'
# status guard off and on again inside the caller's transaction, for test setup that puts a
# request into a state no action leads to (tests/factories.py forge_status). The app role may
# call it here; it cannot ALTER the table itself.
FORGE_GUARD_SQL = """
CREATE FUNCTION minqing_test_status_guard(enabled boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF enabled THEN
    ALTER TABLE requests ENABLE ALWAYS TRIGGER requests_status_transition_guard;
  ELSE
    ALTER TABLE requests DISABLE TRIGGER requests_status_transition_guard;
  END IF;
END $$;
REVOKE ALL ON FUNCTION minqing_test_status_guard(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION minqing_test_status_guard(boolean) TO {app};
"""


def admin_engine(url: str) -> Engine:
    return create_engine(
        make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=None
    )


def scalar_on_own_connection(url: str, sql: str) -> object:
    """The one value ``sql`` returns, run on a fresh connection of no pool (closed after)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            return c.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def url_for_db(url: str, name: str) -> URL:
    return make_url(url).set(database=name)


def database_exists(admin: Engine, name: str) -> bool:
    with admin.connect() as c:
        return bool(c.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}))


def drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def clone_database(admin: Engine, template: str, name: str, *, owner: str = OWNER_ROLE) -> None:
    drop_database(admin, name)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER "{owner}"'))


def create_extensions(url: str) -> None:
    """The extensions the migrations need, created by the superuser of ``url`` (PostGIS is
    not a trusted extension: the owner role cannot create it)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as c:
            available = set(c.scalars(text("SELECT name FROM pg_available_extensions")))
            for ext in EXTENSIONS:
                if ext in available:
                    c.execute(text(f"CREATE EXTENSION IF NOT EXISTS {ext}"))
    finally:
        engine.dispose()


def ensure_template(
    url: str,
    *,
    roles: Roles,
    fill: Callable[[str], None] | None = None,
    tag: str = "schema",
) -> str:
    """Name of an up-to-date template database, built if missing: created by the superuser
    of ``url`` with the extensions, owned, migrated and filled by ``roles.owner``, with the
    grants of ``roles.app``."""
    fingerprint = template_fingerprint(tag)
    name = f"minqing_tpl_{tag}_{fingerprint}"
    admin = admin_engine(url)
    # one builder at a time across concurrent test sessions (developers and helpers share it)
    with admin.connect() as lock_conn:
        lock_conn.execute(text("SELECT pg_advisory_lock(hashtext('minqing_template_build'))"))
        try:
            if database_exists(admin, name) and os.environ.get("MINQING_REBUILD_TEMPLATE") != "1":
                return name
            _drop_stale_templates(admin, tag, keep=name)
            building = name + "_building"
            drop_database(admin, building)
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{building}" OWNER "{roles.owner}"'))
            create_extensions(url_for_db(url, building).render_as_string(hide_password=False))
            build_url = roles.url(url, roles.owner, building)
            migrate(build_url, app_role=roles.app)
            engine = create_engine(build_url, poolclass=NullPool)
            try:
                with engine.begin() as c:
                    c.execute(text(FORGE_GUARD_SQL.format(app=roles.app)))
            finally:
                engine.dispose()
            if fill is not None:
                fill(build_url)
            drop_database(admin, name)
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
            logger.info("built template database %s", name)
            return name
        finally:
            lock_conn.execute(text("SELECT pg_advisory_unlock(hashtext('minqing_template_build'))"))
            admin.dispose()


def _drop_stale_templates(admin: Engine, tag: str, *, keep: str) -> None:
    """Drop templates of other code versions that no session is cloning right now."""
    with admin.connect() as c:
        stale = c.scalars(
            text(
                "SELECT d.datname FROM pg_database d WHERE d.datname LIKE :p AND d.datname <> :k "
                "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
            ),
            {"p": f"minqing_tpl_{tag}_%", "k": keep},
        ).all()
    for old in stale:
        if not old.endswith("_building"):
            drop_database(admin, old)


def project_path(*parts: str) -> Path:
    return PROJECT_ROOT.joinpath(*parts)
