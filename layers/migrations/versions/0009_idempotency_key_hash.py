"""idempotency keys: the key alone is the scope, only its hash is kept, the replay sealed

DESIGN §3 "Idempotency-Key on submit": the key alone is the scope (a phone retrying from
another network replays instead of making a duplicate); only the key's SHA-256 is stored, and
the first 201 (ticket included) is sealed under a key derived from the Idempotency-Key
(``layers.requests.idempotency``), so a database dump reveals no ticket.

The table is made anew: the rows it held (at most 24 h of keys, with their 201 bodies and
tickets in clear) are exactly what must not survive. A retry of a submission sent before the
upgrade therefore makes a new request. The downgrade makes the old table anew, empty.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _request_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["request_id"], ["requests.id"], name=op.f("fk_idempotency_keys_request_id_requests")
    )


def upgrade() -> None:
    op.drop_table("idempotency_keys")
    op.create_table(
        "idempotency_keys",
        sa.Column("key_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        _created_at(),
        _request_fk(),
        sa.PrimaryKeyConstraint("key_sha256", name=op.f("pk_idempotency_keys")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        _created_at(),
        _request_fk(),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
