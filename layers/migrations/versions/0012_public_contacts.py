"""public contacts: what a grid or building leader publishes for residents, by consent

Issue 16, item 6. Personal names and phones stay masked by role; a grid leader or a building
leader may publish a display name and a work phone that the service card and ``/r`` show
unmasked. ``public_contacts`` holds one row per account that published (with the time of its
consent; withdrawing deletes the row, the audit log keeps both events), and
``buildings.leader_user_id`` links a building leader (楼栋长) to an account, so that they can
publish one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "public_contacts",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("work_phone", sa.String(length=32), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "length(btrim(display_name)) > 0", name=op.f("ck_public_contacts_display_name_given")
        ),
        sa.CheckConstraint(
            "work_phone ~ '^[0-9+() -]{3,32}$'", name=op.f("ck_public_contacts_work_phone_format")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_public_contacts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_public_contacts")),
    )
    op.add_column("buildings", sa.Column("leader_user_id", sa.BigInteger(), nullable=True))
    op.create_index(
        op.f("ix_buildings_leader_user_id"), "buildings", ["leader_user_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_buildings_leader_user_id_users"), "buildings", "users", ["leader_user_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_buildings_leader_user_id_users"), "buildings", type_="foreignkey")
    op.drop_index(op.f("ix_buildings_leader_user_id"), table_name="buildings")
    op.drop_column("buildings", "leader_user_id")
    op.drop_table("public_contacts")
