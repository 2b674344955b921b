"""leaner pipeline indexes; no statistics on the event log's data and note

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

The event log's JSONB ``data`` and its ``note`` carry no statistics: no query filters on
them, and they were the costliest part of ANALYZE (170 -> 100 ms of CPU at 200k events), which
autovacuum runs as the log grows. (Analysing the append-only tables less often is NOT an
option: ANALYZE is also what makes PostgreSQL re-plan the foreign-key checks it cached while
a table was small. With analysis deferred to 100k new rows, the outbox's check against a
fresh request_events stayed a sequential scan: 500M rows read in a 45 s intake run.)

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
    op.execute(
        "ALTER TABLE request_events ALTER COLUMN data SET STATISTICS 0,"
        " ALTER COLUMN note SET STATISTICS 0"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE request_events ALTER COLUMN data SET STATISTICS -1,"
        " ALTER COLUMN note SET STATISTICS -1"
    )
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
