"""grid drafts and audit log

Planner drafts of one community's grids (grid_drafts, draft_grids) and the append-only
audit_log of publishes and restores (same trigger as request_events).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:14:50.450406
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grid_drafts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("base_generation", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column(
            "rules",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("published_generation", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'published', 'discarded')", name=op.f("ck_grid_drafts_status")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"], ["areas.id"], name=op.f("fk_grid_drafts_community_id_areas")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_grid_drafts_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["published_generation"],
            ["generations.id"],
            name=op.f("fk_grid_drafts_published_generation_generations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_drafts")),
    )
    op.create_index(
        op.f("ix_grid_drafts_community_id"), "grid_drafts", ["community_id"], unique=False
    )
    op.create_index(op.f("ix_grid_drafts_created_by"), "grid_drafts", ["created_by"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("draft_id", sa.BigInteger(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column(
            "summary",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["draft_id"], ["grid_drafts.id"], name=op.f("fk_audit_log_draft_id_grid_drafts")
        ),
        sa.ForeignKeyConstraint(
            ["generation"], ["generations.id"], name=op.f("fk_audit_log_generation_generations")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_audit_log_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_draft_id"), "audit_log", ["draft_id"], unique=False)
    op.create_index(op.f("ix_audit_log_user_id"), "audit_log", ["user_id"], unique=False)
    op.create_table(
        "draft_grids",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("draft_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("leader_user_id", sa.BigInteger(), nullable=True),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column("population", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["draft_id"],
            ["grid_drafts.id"],
            name=op.f("fk_draft_grids_draft_id_grid_drafts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["leader_user_id"], ["users.id"], name=op.f("fk_draft_grids_leader_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draft_grids")),
    )
    op.create_index(op.f("ix_draft_grids_draft_id"), "draft_grids", ["draft_id"], unique=False)
    op.create_index(
        "ix_draft_grids_geom_gist", "draft_grids", ["geom"], unique=False, postgresql_using="gist"
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION minqing_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.drop_index("ix_draft_grids_geom_gist", table_name="draft_grids", postgresql_using="gist")
    op.drop_index(op.f("ix_draft_grids_draft_id"), table_name="draft_grids")
    op.drop_table("draft_grids")
    op.drop_index(op.f("ix_audit_log_user_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_draft_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_grid_drafts_created_by"), table_name="grid_drafts")
    op.drop_index(op.f("ix_grid_drafts_community_id"), table_name="grid_drafts")
    op.drop_table("grid_drafts")
