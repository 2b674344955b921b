"""leaner pipeline indexes and append-only table maintenance

Every intake writes one request, two events, ~5 offers and ~7 outbox rows; a bulk import
writes a million requests. Index entries that no query reads cost on every one of them:

- ``ix_requests_category`` is dropped: a category is a tenth of all requests, so no plan
  reads it (lists filter by grid or community first; duplicates use the (category, geom)
  index of open requests).
- ``ix_requests_assignee_id`` only indexes requests that have an assignee (a volunteer's
  work is ``assignee_id = :v``); new and historical ones have none.
- The outbox's recipient indexes only index their own kind of recipient: each row names a
  user or a volunteer, so half the entries were NULLs.

The event log, the offers and the outbox only grow. Autovacuum analysed them every 10 % of
growth; ANALYZE of request_events took ~170 ms of CPU at 200k rows (its JSONB ``data`` is
the costliest column, and no query filters on it or on ``note``). Under a 300 req/s intake
those runs showed as 70–150 ms latency spikes. They are analysed after 100k new rows (plus
the usual 10 %) and vacuumed for visibility after 100k inserts (plus 20 %); ``data`` and
``note`` carry no statistics.

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

APPEND_ONLY = ("request_events", "request_offers", "notifications")
MAINTENANCE = "autovacuum_analyze_threshold = 100000, autovacuum_vacuum_insert_threshold = 100000"


def upgrade() -> None:
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
    for table in APPEND_ONLY:
        op.execute(f"ALTER TABLE {table} SET ({MAINTENANCE})")
    op.execute(
        "ALTER TABLE request_events ALTER COLUMN data SET STATISTICS 0,"
        " ALTER COLUMN note SET STATISTICS 0"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE request_events ALTER COLUMN data SET STATISTICS -1,"
        " ALTER COLUMN note SET STATISTICS -1"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"ALTER TABLE {table} RESET (autovacuum_analyze_threshold,"
            " autovacuum_vacuum_insert_threshold)"
        )
    for column in ("recipient_user_id", "recipient_volunteer_id"):
        op.drop_index(f"ix_notifications_{column}", table_name="notifications")
        op.create_index(f"ix_notifications_{column}", "notifications", [column])
    op.drop_index("ix_requests_assignee_id", table_name="requests")
    op.create_index("ix_requests_assignee_id", "requests", ["assignee_id"])
    op.create_index("ix_requests_category", "requests", ["category"])
