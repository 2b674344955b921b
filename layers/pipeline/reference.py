"""The action tables' allowed transitions, copied into PostgreSQL (DESIGN §3, issue 13).

``pipeline_transitions`` holds one row per (machine, event action name, from, to) that a
machine's table allows (``StateMachine.triples``; a NULL ``from_status`` is the action that
creates the entity). Triggers of migration 0007 refuse any ``request_events`` row and any
change of ``requests.status`` the table does not list, whoever writes it: the code's writers,
a bulk load under ``session_replication_role = replica``, or someone at a psql prompt.

The code is the source of truth: migration 0007 filled the table with the triples of its day
and ``layers.db.migrate`` re-syncs it from ``layers.machines.MACHINES`` after every upgrade,
so adding a row to an action table needs no new migration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from layers.pipeline.machine import StateMachine

logger = logging.getLogger(__name__)

TABLE = "pipeline_transitions"

# One statement per machine: drop the rows the table no longer allows, add the new ones.
# Rows that stay are not touched (a sync without changes writes nothing), and concurrent
# syncs of the same table converge (ON CONFLICT over the unique index of migration 0007).
_SYNC_SQL = text(
    "WITH want AS (SELECT * FROM unnest(CAST(:actions AS text[]), CAST(:froms AS text[]),"
    " CAST(:tos AS text[])) AS w(action, from_status, to_status)),"
    f" gone AS (DELETE FROM {TABLE} p WHERE p.machine = :machine AND NOT EXISTS"
    " (SELECT 1 FROM want w WHERE w.action = p.action"
    " AND w.from_status IS NOT DISTINCT FROM p.from_status AND w.to_status = p.to_status)"
    " RETURNING 1),"
    f" added AS (INSERT INTO {TABLE} (machine, action, from_status, to_status)"
    " SELECT :machine, w.action, w.from_status, w.to_status FROM want w"
    " ON CONFLICT (machine, action, coalesce(from_status, ''), to_status) DO NOTHING"
    " RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone) AS removed, (SELECT count(*) FROM added) AS added"
)


def sync(connection: Connection, machines: Iterable[StateMachine]) -> dict[str, tuple[int, int]]:
    """Make ``pipeline_transitions`` list exactly each machine's allowed triples (other
    machines' rows untouched); returns {machine: (rows removed, rows added)}.

    Runs in the connection's transaction when one is open (a migration's), otherwise in one
    of its own that it commits."""
    own = not connection.in_transaction()
    tx = connection.begin() if own else None
    out: dict[str, tuple[int, int]] = {}
    changed = False
    try:
        for machine in machines:
            triples = machine.triples()
            row = connection.execute(
                _SYNC_SQL,
                {
                    "machine": machine.name,
                    "actions": [t[0] for t in triples],
                    "froms": [t[1] for t in triples],
                    "tos": [t[2] for t in triples],
                },
            ).one()
            out[machine.name] = (int(row.removed), int(row.added))
            if row.removed or row.added:
                changed = True
                logger.info(
                    "%s: %s transitions of %s removed, %s added",
                    TABLE,
                    row.removed,
                    machine.name,
                    row.added,
                )
        if changed:  # the guards' plans estimate from the table's statistics
            connection.execute(text(f"ANALYZE {TABLE}"))
        if tx is not None:
            tx.commit()
    except BaseException:
        if tx is not None:
            tx.rollback()
        raise
    return out


def stored(connection: Connection, machine: str) -> list[tuple[str, str | None, str]]:
    """The (action, from, to) rows the database holds for ``machine``, sorted like
    ``StateMachine.triples``."""
    rows = connection.execute(
        text(f"SELECT action, from_status, to_status FROM {TABLE} WHERE machine = :m"),
        {"m": machine},
    ).all()
    return sorted(((a, f, t) for a, f, t in rows), key=lambda r: (r[0], r[1] or "", r[2]))
