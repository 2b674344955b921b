"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 02:56:15.756105
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ROLES = [
    ("admin", "系统管理员", "Administrator", "global"),
    ("planner", "网格规划员", "Planner", "global"),
    ("street_staff", "街道工作人员", "Street staff", "area"),
    ("community_staff", "社区工作人员", "Community staff", "area"),
    ("grid_leader", "网格长", "Grid leader", "grid"),
    ("grid_member", "网格员", "Grid member", "grid"),
    ("volunteer", "志愿者", "Volunteer", "area"),
]

TRIGGERS = """
CREATE FUNCTION minqing_building_code_immutable() RETURNS trigger AS $$
BEGIN
  IF NEW.code IS DISTINCT FROM OLD.code THEN
    RAISE EXCEPTION 'building code % is immutable', OLD.code USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER buildings_code_immutable BEFORE UPDATE OF code ON buildings
  FOR EACH ROW EXECUTE FUNCTION minqing_building_code_immutable();

CREATE FUNCTION minqing_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER request_events_append_only BEFORE UPDATE OR DELETE ON request_events
  FOR EACH ROW EXECUTE FUNCTION minqing_append_only();
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "areas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
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
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(level = 'district' AND code ~ '^[0-9]{6}$' AND parent_id IS NULL) OR (level = 'street' AND code ~ '^[0-9]{9}$' AND parent_id IS NOT NULL) OR (level = 'community' AND code ~ '^[0-9]{12}$' AND parent_id IS NOT NULL)",
            name=op.f("ck_areas_code_matches_level"),
        ),
        sa.CheckConstraint(
            "level IN ('district', 'street', 'community')", name=op.f("ck_areas_level")
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_areas_geom_valid")),
        sa.ForeignKeyConstraint(["parent_id"], ["areas.id"], name=op.f("fk_areas_parent_id_areas")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_areas")),
        sa.UniqueConstraint("code", name=op.f("uq_areas_code")),
    )
    op.create_index("ix_areas_geom_gist", "areas", ["geom"], unique=False, postgresql_using="gist")
    op.create_index(op.f("ix_areas_parent_id"), "areas", ["parent_id"], unique=False)
    op.create_table(
        "buildings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("osm_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("building_type", sa.String(length=64), nullable=True),
        sa.Column("levels", sa.Integer(), nullable=True),
        sa.Column("residential", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column("households_estimated", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("leader_name", sa.String(length=100), nullable=True),
        sa.Column("leader_phone", sa.String(length=32), nullable=True),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "rep_point",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_buildings_geom_valid")),
        sa.CheckConstraint("households >= 0", name=op.f("ck_buildings_households")),
        sa.CheckConstraint("levels IS NULL OR levels > 0", name=op.f("ck_buildings_levels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buildings")),
        sa.UniqueConstraint("code", name=op.f("uq_buildings_code")),
        sa.UniqueConstraint("osm_id", name=op.f("uq_buildings_osm_id")),
    )
    op.create_index(
        "ix_buildings_geom_gist", "buildings", ["geom"], unique=False, postgresql_using="gist"
    )
    op.create_index(
        "ix_buildings_rep_point_gist",
        "buildings",
        ["rep_point"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_table(
        "network_nodes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("osm_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_nodes")),
        sa.UniqueConstraint("osm_id", name=op.f("uq_network_nodes_osm_id")),
    )
    op.create_index(
        "ix_network_nodes_geom_gist",
        "network_nodes",
        ["geom"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_table(
        "network_versions",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column(
            "summary",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_versions")),
    )
    op.create_table(
        "roles",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name_zh", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "scope_kind IN ('global', 'area', 'grid')", name=op.f("ck_roles_scope_kind")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_roles")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("token_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "venues",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("osm_id", sa.String(length=32), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("opening_hours", sa.String(length=200), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("shared", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("capacity IS NULL OR capacity >= 0", name=op.f("ck_venues_capacity")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_venues")),
        sa.UniqueConstraint("osm_id", name=op.f("uq_venues_osm_id")),
    )
    op.create_index(op.f("ix_venues_category"), "venues", ["category"], unique=False)
    op.create_index(
        "ix_venues_geom_gist", "venues", ["geom"], unique=False, postgresql_using="gist"
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "published_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_by", sa.BigInteger(), nullable=True),
        sa.Column("draft_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "summary",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["published_by"], ["users.id"], name=op.f("fk_generations_published_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
    )
    op.create_table(
        "network_edges",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("length_m", sa.Float(), nullable=False),
        sa.Column("osm_way_id", sa.BigInteger(), nullable=True),
        sa.Column("highway", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="LINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_network_edges_geom_valid")),
        sa.CheckConstraint("length_m >= 0", name=op.f("ck_network_edges_length")),
        sa.ForeignKeyConstraint(
            ["source"], ["network_nodes.id"], name=op.f("fk_network_edges_source_network_nodes")
        ),
        sa.ForeignKeyConstraint(
            ["target"], ["network_nodes.id"], name=op.f("fk_network_edges_target_network_nodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_edges")),
    )
    op.create_index(
        "ix_network_edges_geom_gist",
        "network_edges",
        ["geom"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_index(op.f("ix_network_edges_source"), "network_edges", ["source"], unique=False)
    op.create_index(op.f("ix_network_edges_target"), "network_edges", ["target"], unique=False)
    op.create_table(
        "role_bindings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("role_code", sa.String(length=32), nullable=False),
        sa.Column("area_id", sa.BigInteger(), nullable=True),
        sa.Column("grid_code", sa.String(length=15), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "area_id IS NULL OR grid_code IS NULL", name=op.f("ck_role_bindings_one_scope")
        ),
        sa.ForeignKeyConstraint(
            ["area_id"], ["areas.id"], name=op.f("fk_role_bindings_area_id_areas")
        ),
        sa.ForeignKeyConstraint(
            ["role_code"], ["roles.code"], name=op.f("fk_role_bindings_role_code_roles")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_role_bindings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_bindings")),
        sa.UniqueConstraint(
            "user_id",
            "role_code",
            "area_id",
            "grid_code",
            name=op.f("uq_role_bindings_user_id_role_code_area_id_grid_code"),
        ),
    )
    op.create_index(op.f("ix_role_bindings_user_id"), "role_bindings", ["user_id"], unique=False)
    op.create_table(
        "service_circles",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("venue_id", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("budget_m", sa.Float(), nullable=False),
        sa.Column("budget_unit", sa.String(length=4), nullable=False),
        sa.Column("buffer_m", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("network_version", sa.Integer(), nullable=True),
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
        sa.Column(
            "built_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "budget_unit IN ('m', 'min')", name=op.f("ck_service_circles_budget_unit")
        ),
        sa.CheckConstraint(
            "method IN ('network', 'buffer')", name=op.f("ck_service_circles_method")
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_service_circles_geom_valid")),
        sa.CheckConstraint("budget_m > 0", name=op.f("ck_service_circles_budget")),
        sa.ForeignKeyConstraint(
            ["venue_id"],
            ["venues.id"],
            name=op.f("fk_service_circles_venue_id_venues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_circles")),
    )
    op.create_index(
        op.f("ix_service_circles_category"), "service_circles", ["category"], unique=False
    )
    op.create_index(
        "ix_service_circles_geom_gist",
        "service_circles",
        ["geom"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_index(
        op.f("ix_service_circles_venue_id"), "service_circles", ["venue_id"], unique=False
    )
    op.create_table(
        "volunteers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("community_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "skills",
            postgresql.ARRAY(sa.String(length=32)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "availability",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("load_limit", sa.Integer(), server_default="3", nullable=False),
        sa.Column("active_load", sa.Integer(), server_default="0", nullable=False),
        sa.Column("points", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("load_limit >= 0 AND active_load >= 0", name=op.f("ck_volunteers_load")),
        sa.ForeignKeyConstraint(
            ["community_id"], ["areas.id"], name=op.f("fk_volunteers_community_id_areas")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_volunteers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteers")),
        sa.UniqueConstraint("user_id", name=op.f("uq_volunteers_user_id")),
    )
    op.create_index(
        op.f("ix_volunteers_community_id"), "volunteers", ["community_id"], unique=False
    )
    op.create_index(
        "ix_volunteers_geom_gist", "volunteers", ["geom"], unique=False, postgresql_using="gist"
    )
    op.create_table(
        "grids",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=15), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("leader_user_id", sa.BigInteger(), nullable=True),
        sa.Column("households", sa.Integer(), server_default="0", nullable=False),
        sa.Column("population", sa.Integer(), server_default="0", nullable=False),
        sa.Column("generation_low", sa.Integer(), nullable=False),
        sa.Column("generation_high", sa.Integer(), nullable=True),
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
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[0-9]{15}$'", name=op.f("ck_grids_code_format")),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_grids_geom_valid")),
        sa.CheckConstraint(
            "generation_high IS NULL OR generation_high > generation_low",
            name=op.f("ck_grids_generations"),
        ),
        sa.CheckConstraint("households >= 0 AND population >= 0", name=op.f("ck_grids_counts")),
        sa.ForeignKeyConstraint(
            ["community_id"], ["areas.id"], name=op.f("fk_grids_community_id_areas")
        ),
        sa.ForeignKeyConstraint(
            ["generation_high"],
            ["generations.id"],
            name=op.f("fk_grids_generation_high_generations"),
        ),
        sa.ForeignKeyConstraint(
            ["generation_low"], ["generations.id"], name=op.f("fk_grids_generation_low_generations")
        ),
        sa.ForeignKeyConstraint(
            ["leader_user_id"], ["users.id"], name=op.f("fk_grids_leader_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grids")),
        sa.UniqueConstraint("code", "generation_low", name=op.f("uq_grids_code_generation_low")),
    )
    op.create_index(op.f("ix_grids_code"), "grids", ["code"], unique=False)
    op.create_index(op.f("ix_grids_community_id"), "grids", ["community_id"], unique=False)
    op.create_index("ix_grids_geom_gist", "grids", ["geom"], unique=False, postgresql_using="gist")
    op.create_index(
        "ix_grids_live_geom_gist",
        "grids",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text("generation_high IS NULL"),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("contact_name", sa.String(length=100), nullable=True),
        sa.Column("contact_phone", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_level", sa.String(length=16), nullable=False),
        sa.Column("grid_id", sa.BigInteger(), nullable=True),
        sa.Column("community_id", sa.BigInteger(), nullable=True),
        sa.Column("assignee_id", sa.BigInteger(), nullable=True),
        sa.Column("duplicate_of", sa.BigInteger(), nullable=True),
        sa.Column("building_code", sa.String(length=24), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("original_deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("source", sa.String(length=16), server_default="api", nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
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
        sa.CheckConstraint(
            "owner_level IN ('grid', 'community', 'street', 'district')",
            name=op.f("ck_requests_owner_level"),
        ),
        sa.CheckConstraint(
            "status IN ('submitted', 'triage', 'assigned', 'claimed', 'in_progress', 'resolved', 'rated', 'closed', 'rejected', 'duplicate', 'withdrawn')",
            name=op.f("ck_requests_status"),
        ),
        sa.CheckConstraint("char_length(text) <= 2000", name=op.f("ck_requests_text_length")),
        sa.CheckConstraint(
            "rating IS NULL OR rating BETWEEN 1 AND 5", name=op.f("ck_requests_rating")
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["volunteers.id"], name=op.f("fk_requests_assignee_id_volunteers")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"], ["areas.id"], name=op.f("fk_requests_community_id_areas")
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], ["requests.id"], name=op.f("fk_requests_duplicate_of_requests")
        ),
        sa.ForeignKeyConstraint(["grid_id"], ["grids.id"], name=op.f("fk_requests_grid_id_grids")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
        sa.UniqueConstraint("number", name=op.f("uq_requests_number")),
        sa.UniqueConstraint("ticket_hash", name=op.f("uq_requests_ticket_hash")),
    )
    op.create_index(op.f("ix_requests_assignee_id"), "requests", ["assignee_id"], unique=False)
    op.create_index(op.f("ix_requests_category"), "requests", ["category"], unique=False)
    op.create_index(op.f("ix_requests_community_id"), "requests", ["community_id"], unique=False)
    op.create_index(
        "ix_requests_geom_gist", "requests", ["geom"], unique=False, postgresql_using="gist"
    )
    op.create_index(op.f("ix_requests_grid_id"), "requests", ["grid_id"], unique=False)
    op.create_index(
        "ix_requests_status_deadline", "requests", ["status", "deadline_at"], unique=False
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_idempotency_keys_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "request_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor_user_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("owner_level", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_request_events_actor_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_request_events_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_events")),
    )
    op.create_index(
        op.f("ix_request_events_request_id"), "request_events", ["request_id"], unique=False
    )
    op.create_table(
        "request_offers",
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("volunteer_id", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("distance_method", sa.String(length=16), nullable=False),
        sa.Column(
            "offered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_request_offers_request_id_requests")
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["volunteers.id"],
            name=op.f("fk_request_offers_volunteer_id_volunteers"),
        ),
        sa.PrimaryKeyConstraint("request_id", "volunteer_id", name=op.f("pk_request_offers")),
    )
    op.create_index(
        op.f("ix_request_offers_volunteer_id"), "request_offers", ["volunteer_id"], unique=False
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_user_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient_volunteer_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["request_events.id"],
            name=op.f("fk_notifications_event_id_request_events"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_user_id"],
            ["users.id"],
            name=op.f("fk_notifications_recipient_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_volunteer_id"],
            ["volunteers.id"],
            name=op.f("fk_notifications_recipient_volunteer_id_volunteers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(op.f("ix_notifications_event_id"), "notifications", ["event_id"], unique=False)
    op.create_index(
        op.f("ix_notifications_recipient_user_id"),
        "notifications",
        ["recipient_user_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notifications_recipient_volunteer_id"),
        "notifications",
        ["recipient_volunteer_id"],
        unique=False,
    )
    op.execute(TRIGGERS)
    roles = sa.table(
        "roles",
        sa.column("code", sa.String),
        sa.column("name_zh", sa.String),
        sa.column("name_en", sa.String),
        sa.column("scope_kind", sa.String),
    )
    op.bulk_insert(
        roles,
        [dict(zip(("code", "name_zh", "name_en", "scope_kind"), r, strict=True)) for r in ROLES],
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS request_events_append_only ON request_events")
    op.execute("DROP TRIGGER IF EXISTS buildings_code_immutable ON buildings")
    op.execute("DROP FUNCTION IF EXISTS minqing_append_only()")
    op.execute("DROP FUNCTION IF EXISTS minqing_building_code_immutable()")
    op.drop_index(op.f("ix_notifications_recipient_volunteer_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_recipient_user_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_event_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index(op.f("ix_request_offers_volunteer_id"), table_name="request_offers")
    op.drop_table("request_offers")
    op.drop_index(op.f("ix_request_events_request_id"), table_name="request_events")
    op.drop_table("request_events")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_requests_status_deadline", table_name="requests")
    op.drop_index(op.f("ix_requests_grid_id"), table_name="requests")
    op.drop_index("ix_requests_geom_gist", table_name="requests", postgresql_using="gist")
    op.drop_index(op.f("ix_requests_community_id"), table_name="requests")
    op.drop_index(op.f("ix_requests_category"), table_name="requests")
    op.drop_index(op.f("ix_requests_assignee_id"), table_name="requests")
    op.drop_table("requests")
    op.drop_index(
        "ix_grids_live_geom_gist",
        table_name="grids",
        postgresql_using="gist",
        postgresql_where=sa.text("generation_high IS NULL"),
    )
    op.drop_index("ix_grids_geom_gist", table_name="grids", postgresql_using="gist")
    op.drop_index(op.f("ix_grids_community_id"), table_name="grids")
    op.drop_index(op.f("ix_grids_code"), table_name="grids")
    op.drop_table("grids")
    op.drop_index("ix_volunteers_geom_gist", table_name="volunteers", postgresql_using="gist")
    op.drop_index(op.f("ix_volunteers_community_id"), table_name="volunteers")
    op.drop_table("volunteers")
    op.drop_index(op.f("ix_service_circles_venue_id"), table_name="service_circles")
    op.drop_index(
        "ix_service_circles_geom_gist", table_name="service_circles", postgresql_using="gist"
    )
    op.drop_index(op.f("ix_service_circles_category"), table_name="service_circles")
    op.drop_table("service_circles")
    op.drop_index(op.f("ix_role_bindings_user_id"), table_name="role_bindings")
    op.drop_table("role_bindings")
    op.drop_index(op.f("ix_network_edges_target"), table_name="network_edges")
    op.drop_index(op.f("ix_network_edges_source"), table_name="network_edges")
    op.drop_index("ix_network_edges_geom_gist", table_name="network_edges", postgresql_using="gist")
    op.drop_table("network_edges")
    op.drop_table("generations")
    op.drop_index("ix_venues_geom_gist", table_name="venues", postgresql_using="gist")
    op.drop_index(op.f("ix_venues_category"), table_name="venues")
    op.drop_table("venues")
    op.drop_table("users")
    op.drop_table("roles")
    op.drop_table("network_versions")
    op.drop_index("ix_network_nodes_geom_gist", table_name="network_nodes", postgresql_using="gist")
    op.drop_table("network_nodes")
    op.drop_index("ix_buildings_rep_point_gist", table_name="buildings", postgresql_using="gist")
    op.drop_index("ix_buildings_geom_gist", table_name="buildings", postgresql_using="gist")
    op.drop_table("buildings")
    op.drop_index(op.f("ix_areas_parent_id"), table_name="areas")
    op.drop_index("ix_areas_geom_gist", table_name="areas", postgresql_using="gist")
    op.drop_table("areas")
