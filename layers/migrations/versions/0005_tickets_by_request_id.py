"""tickets by request id

A resident's ticket now names its request (``<id>-<secret>``): it is found by primary key and
opened only if the whole ticket's SHA-256 matches. The unique index on ``ticket_hash`` had no
reader left; it was the largest index on requests (122 MB at 1M requests) and, its keys
random, every intake touched a random page of it (and, after each checkpoint, wrote that page
whole to the WAL).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 07:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("uq_requests_ticket_hash"), "requests", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint(op.f("uq_requests_ticket_hash"), "requests", ["ticket_hash"])
