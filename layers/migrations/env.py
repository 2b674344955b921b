"""Alembic environment: models' metadata, PostGIS-aware comparison, online migrations only."""

from __future__ import annotations

import logging

from alembic import context
from sqlalchemy import engine_from_config, pool

from layers.models import Base

logger = logging.getLogger(__name__)
config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):
    """Ignore what PostGIS / pgRouting own (spatial_ref_sys, topology...)."""
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
