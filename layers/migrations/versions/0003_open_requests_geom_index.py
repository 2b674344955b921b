"""open requests geom index

A partial GiST index on the points of open requests (submitted … in_progress): the intake's
possible-duplicates query looks only at open requests near a point, and with a million
historical requests a plain GiST + category + status bitmap AND costs ~50 ms a submission.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATUSES_SQL = "status IN ('assigned', 'claimed', 'in_progress', 'submitted', 'triage')"


def upgrade() -> None:
    op.create_index(
        "ix_requests_open_geom_gist",
        "requests",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text(OPEN_STATUSES_SQL),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_requests_open_geom_gist",
        table_name="requests",
        postgresql_using="gist",
        postgresql_where=sa.text(OPEN_STATUSES_SQL),
    )
