"""Who owns a transaction: each service call (DESIGN §4: services own transactions).

Kept apart from ``layers.db`` (engine, migrations, the mapper registry) so that the runner and
the services can use it without importing every model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)


@contextmanager
def unit_of_work(session: Session) -> Iterator[None]:
    """Each service call owns its transaction: commit on success, roll back on any error."""
    try:
        yield
        session.commit()
    except Exception:
        session.rollback()
        raise


@contextmanager
def single_statement_writes(session: Session) -> Iterator[None]:
    """For work whose writes are ONE statement: run without BEGIN / COMMIT round trips (the
    statement is its own transaction, atomic as any), when the session has not started a
    transaction on an engine of its own; otherwise (tests binding a session to an outer
    transaction, a caller mid-transaction) as a unit of work. Closes the session after an
    autocommit run (giving the connection back with its isolation level reset)."""
    if session.in_transaction() or not isinstance(session.get_bind(), Engine):
        with unit_of_work(session):
            yield
        return
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield
    finally:
        session.close()
