"""level deadlines: first_deadline_at and was_overdue

DESIGN §3: ``first_deadline_at`` is set at intake and never changes (按期结案率 is measured
against it); ``deadline_at`` is the current level's deadline, started again only when the
request reaches another level (escalation, reassignment to another grid, assignment out of
triage) or is reopened. ``was_overdue`` records that some level's deadline passed before it
was met, so an escalation for lateness no longer hides the lateness.

Backfill: a request was overdue if the deadline job ever escalated it for lateness, or if it
was resolved after its current deadline.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("requests", "original_deadline_at", new_column_name="first_deadline_at")
    op.add_column(
        "requests",
        sa.Column("was_overdue", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE requests r SET was_overdue = true"
        " WHERE r.resolved_at > r.deadline_at OR EXISTS (SELECT 1 FROM request_events e"
        " WHERE e.request_id = r.id AND e.action = 'escalate'"
        " AND e.data->>'reason' = 'overdue')"
    )


def downgrade() -> None:
    op.drop_column("requests", "was_overdue")
    op.alter_column("requests", "first_deadline_at", new_column_name="original_deadline_at")
