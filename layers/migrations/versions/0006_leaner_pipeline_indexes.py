"""leaner pipeline indexes and cheaper ANALYZE of the append-only pipeline tables

Every intake writes one request, two events, ~5 offers and ~7 outbox rows; a bulk import
writes a million requests. Index entries that no query reads cost on every one of them:

- ``ix_requests_category`` is dropped: a category is a tenth of all requests, so no plan
  reads it (lists filter by grid or community first; duplicates use the (category, geom)
  index of open requests).
- ``ix_requests_assignee_id`` only indexes requests that have an assignee (a volunteer's
  work is ``assignee_id = :v``); new and historical ones have none.
- The outbox's recipient indexes only index their own kind of recipient: each row names a
  user or a volunteer, so half the entries were NULLs.

The outbox's foreign key to the event log is dropped. PostgreSQL caches the plan of each
foreign-key check per connection and re-plans it only when the referenced table is analysed;
a server started on an empty event log (a new deployment, the intake bench) kept checking
every outbox row with a sequential scan of request_events until autovacuum's next visit
(measured: 500M event rows read in a 45 s run at 300 req/s, PostgreSQL CPU per intake 1.6 ->
4.2 ms). The key protected nothing the writes do not: request_events is append-only (a
trigger refuses UPDATE and DELETE), and every outbox row is written with its event's id from
the same statement or flush.

The event log, the offers and the outbox only grow, so autovacuum analyses them again and
again while they are young; ANALYZE is also what makes PostgreSQL re-plan cached checks as a
table grows, so it must keep running. It is made cheap instead: their columns keep 10
statistics buckets (a 3,000-row sample, not 30,000) and the event log's JSONB ``data`` and
its ``note``, which no query filters on, none. Queries on these tables go by request,
volunteer, recipient or event id through indexes. Measured at 37k events and 92k offers and
outbox rows: ANALYZE 108 + 61 + 46 ms of CPU before, 10 + 7 + 7 ms after; under a 300 req/s
intake those runs had shown as 70-150 ms latency spikes. (Analysing them less often is how
the sequential scan above was found.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: statistics per column of the append-only pipeline tables (None: the server's default)
STATISTICS = {
    "request_events": {
        "id": 10,
        "request_id": 10,
        "at": 10,
        "actor_user_id": 10,
        "actor_kind": 10,
        "action": 10,
        "from_status": 10,
        "to_status": 10,
        "owner_level": 10,
        "note": 0,
        "data": 0,
    },
    "request_offers": {
        c: 10
        for c in (
            "request_id",
            "volunteer_id",
            "rank",
            "distance_m",
            "distance_method",
            "offered_at",
        )
    },
    "notifications": {
        c: 10
        for c in (
            "id",
            "event_id",
            "recipient_user_id",
            "recipient_volunteer_id",
            "kind",
            "created_at",
            "delivered_at",
        )
    },
}


def _set_statistics(default: bool) -> None:
    for table, columns in STATISTICS.items():
        clauses = ", ".join(
            f"ALTER COLUMN {c} SET STATISTICS {-1 if default else n}" for c, n in columns.items()
        )
        op.execute(f"ALTER TABLE {table} {clauses}")


def upgrade() -> None:
    op.drop_constraint(
        "fk_notifications_event_id_request_events", "notifications", type_="foreignkey"
    )
    op.drop_index("ix_requests_category", table_name="requests")
    op.drop_index("ix_requests_assignee_id", table_name="requests")
    op.create_index(
        "ix_requests_assignee_id",
        "requests",
        ["assignee_id"],
        postgresql_where=sa.text("assignee_id IS NOT NULL"),
    )
    for column in ("recipient_user_id", "recipient_volunteer_id"):
        op.drop_index(f"ix_notifications_{column}", table_name="notifications")
        op.create_index(
            f"ix_notifications_{column}",
            "notifications",
            [column],
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
    _set_statistics(default=False)


def downgrade() -> None:
    _set_statistics(default=True)
    for column in ("recipient_user_id", "recipient_volunteer_id"):
        op.drop_index(f"ix_notifications_{column}", table_name="notifications")
        op.create_index(f"ix_notifications_{column}", "notifications", [column])
    op.drop_index("ix_requests_assignee_id", table_name="requests")
    op.create_index("ix_requests_assignee_id", "requests", ["assignee_id"])
    op.create_index("ix_requests_category", "requests", ["category"])
    op.create_foreign_key(
        "fk_notifications_event_id_request_events",
        "notifications",
        "request_events",
        ["event_id"],
        ["id"],
    )
