"""Engine, sessions and migrations.

Services receive a ``Session`` keyword argument and own its transaction (commit or roll back);
models never commit. ``Database`` bundles an engine with its session factory so the app, the
CLI and the tests (which bind sessions to an outer transaction) build sessions the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import layers.models  # noqa: F401  (every mapper registered before any session flushes)
from layers.errors import ServiceUnavailable
from layers.machines import MACHINES
from layers.pipeline import reference

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass
class Database:
    """An engine (or a test connection) and the session factory bound to it."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, **engine_kw: object) -> Database:
        engine = make_engine(url, **engine_kw)
        return cls(engine=engine, sessions=sessionmaker(bind=engine, expire_on_commit=False))

    @classmethod
    def bound_to(cls, connection: Connection) -> Database:
        """Sessions that join ``connection``'s transaction via savepoints (tests roll back)."""
        return cls(
            engine=connection.engine,
            sessions=sessionmaker(
                bind=connection,
                expire_on_commit=False,
                join_transaction_mode="create_savepoint",
            ),
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        s = self.sessions()
        try:
            yield s
        finally:
            s.close()

    def ping(self) -> None:
        """Raise ServiceUnavailable unless the database answers."""
        try:
            with self.sessions() as s:
                s.execute(text("SELECT 1"))
        except OperationalError as exc:
            logger.warning("database ping failed: %s", exc.orig)
            raise ServiceUnavailable("db_unavailable") from exc


def make_engine(url: str, **kw: object) -> Engine:
    # Optimistic disconnect handling: a ping per checkout would cost every request a round
    # trip; a dropped connection fails one request (503) and the pool is refreshed (tested).
    kw.setdefault("pool_pre_ping", False)
    kw.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kw)  # type: ignore[arg-type]


def check_reachable(url: str) -> None:
    """Raise ServiceUnavailable with the driver's reason if ``url`` cannot be reached."""
    engine = make_engine(url, poolclass=None)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise ServiceUnavailable("db_unavailable", reason=str(exc.orig).strip()) from exc
    finally:
        engine.dispose()


def alembic_config(url: str):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head", *, app_role: str | None = None) -> None:
    """Upgrade the schema at ``url`` to ``revision``, then copy the action tables' allowed
    transitions into ``pipeline_transitions`` (when the schema has it: migration 0007), so
    that a new row in an action table needs no migration. The copy is one statement per
    machine on one short connection, and writes nothing when nothing changed.

    ``url`` is the schema owner's (``MIGRATION_DATABASE_URL``); with ``app_role`` (the role
    of ``DATABASE_URL``) the last step gives that role the grants of ``layers.grants`` on
    every table and sequence, those of the migrations just run included."""
    from alembic import command
    from sqlalchemy.pool import NullPool

    from layers.grants import apply_grants

    command.upgrade(alembic_config(url), revision)
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": reference.TABLE}):
                reference.sync(conn, MACHINES)
            if app_role is not None:
                apply_grants(conn, app_role)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
