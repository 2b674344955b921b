"""Test databases: one migrated template per code version, cloned with CREATE DATABASE … TEMPLATE.

The template holds the schema (and the demo district, once built) and is reused across test
sessions while the files that shape it are unchanged, so quick loops stay quick.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from layers.config import PROJECT_ROOT
from layers.db import migrate

logger = logging.getLogger(__name__)

TEMPLATE_INPUTS = (
    "layers/migrations",
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


def clone_database(admin: Engine, template: str, name: str) -> None:
    drop_database(admin, name)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))


def ensure_template(
    url: str, *, fill: Callable[[str], None] | None = None, tag: str = "schema"
) -> str:
    """Name of an up-to-date template database, built (migrated, then filled) if missing."""
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
                c.execute(text(f'CREATE DATABASE "{building}"'))
            build_url = url_for_db(url, building).render_as_string(hide_password=False)
            migrate(build_url)
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
