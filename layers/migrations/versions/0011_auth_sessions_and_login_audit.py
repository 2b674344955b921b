"""server-side sessions, the failed-login throttle and the login audit log (issue 16, item 3)

- ``auth_sessions``: a signed-in browser session, so that logout ends it; the cookie holds a
  random id, the table its SHA-256 only.
- ``login_throttle``: failed logins per account name (keyed hash) and per client address.
- ``login_events``: who logged in or out, when, from where, with what, and how it ended.

Sessions held in cookies before the upgrade are not in the table: everyone logs in again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        _ts("created_at", now=True),
        _ts("last_seen_at"),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_auth_sessions_token_sha256")),
    )
    op.create_index(op.f("ix_auth_sessions_user_id"), "auth_sessions", ["user_id"])
    op.create_index(op.f("ix_auth_sessions_expires_at"), "auth_sessions", ["expires_at"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        _ts("window_start"),
        _ts("next_allowed_at", nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_index(op.f("ix_login_throttle_updated_at"), "login_throttle", ["updated_at"])
    op.create_table(
        "login_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        _ts("at", now=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(length=80), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "channel IN ('form', 'token', 'account')", name=op.f("ck_login_events_channel")
        ),
        sa.CheckConstraint(
            "outcome IN ('success', 'failure', 'throttled', 'logout', 'signed_out_everywhere',"
            " 'password_changed', 'password_change_failed')",
            name=op.f("ck_login_events_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_login_events_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_events")),
    )
    op.create_index(op.f("ix_login_events_user_id"), "login_events", ["user_id"])


def downgrade() -> None:
    op.drop_table("login_events")
    op.drop_table("login_throttle")
    op.drop_table("auth_sessions")
