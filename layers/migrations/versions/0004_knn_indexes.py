"""knn indexes for the offer and possible duplicates

Intake's two nearest-first searches become KNN scans of composite GiST indexes (btree_gist)
that stop after a few dozen rows:

1. the offer: ``volunteer_skill_points``, one row per skill of each volunteer who can take
   work now (active, below the load limit) with the home point and what the offer shows and
   ranks by, kept in step with ``volunteers`` by triggers, indexed on (category, geom). Over the
   volunteers' own GiST index the search filtered ~6,000 homes in a 5 km box per submission
   at 100k volunteers (~10 ms, 3,000 heap pages). Statement-level triggers (transition
   tables) keep bulk loads cheap; a row-level trigger follows updates of the columns it
   copies (points and the like do not fire it).
2. possible duplicates: a partial index on (category, geom) of open requests. It replaces
   0003's (geom) index of open requests, whose only reader this was: a 250 m box held ~700
   open requests of every category at 1M requests (~2 ms, 700 pages).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_COLUMNS = "category, volunteer_id, geom, name, availability, active_load"


def offerable(v: str) -> str:
    """Volunteer row ``v`` can take work now: active and below its load limit."""
    return f"{v}.active AND {v}.active_load < {v}.load_limit"


TRIGGERS = f"""
CREATE FUNCTION minqing_skill_points_insert() RETURNS trigger AS $$
BEGIN
  INSERT INTO volunteer_skill_points ({ROW_COLUMNS})
  SELECT DISTINCT ON (s, n.id) s, n.id, n.geom, n.name, n.availability, n.active_load
  FROM new_rows n, unnest(n.skills) AS s WHERE {offerable("n")};
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER volunteers_skill_points_insert AFTER INSERT ON volunteers
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION minqing_skill_points_insert();

CREATE FUNCTION minqing_skill_points_delete() RETURNS trigger AS $$
BEGIN
  DELETE FROM volunteer_skill_points p USING old_rows o WHERE p.volunteer_id = o.id;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER volunteers_skill_points_delete AFTER DELETE ON volunteers
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION minqing_skill_points_delete();

CREATE FUNCTION minqing_skill_points_update() RETURNS trigger AS $$
BEGIN
  DELETE FROM volunteer_skill_points WHERE volunteer_id = OLD.id;
  IF {offerable("NEW")} THEN
    INSERT INTO volunteer_skill_points ({ROW_COLUMNS})
    SELECT DISTINCT ON (s) s, NEW.id, NEW.geom, NEW.name, NEW.availability, NEW.active_load
    FROM unnest(NEW.skills) AS s;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER volunteers_skill_points_update AFTER UPDATE OF
  skills, geom, active, name, availability, active_load, load_limit ON volunteers
  FOR EACH ROW EXECUTE FUNCTION minqing_skill_points_update();
"""

OPEN_STATUSES_SQL = "status IN ('assigned', 'claimed', 'in_progress', 'submitted', 'triage')"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_index(
        "ix_requests_open_category_geom_gist",
        "requests",
        ["category", "geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text(OPEN_STATUSES_SQL),
    )
    op.drop_index(
        "ix_requests_open_geom_gist",
        table_name="requests",
        postgresql_using="gist",
        postgresql_where=sa.text(OPEN_STATUSES_SQL),
    )
    op.create_table(
        "volunteer_skill_points",
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("volunteer_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "geom",
            geoalchemy2.types.Geometry(
                geometry_type="POINT", srid=4326, spatial_index=False, from_text="ST_GeomFromEWKT"
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("availability", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("active_load", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("category", "volunteer_id", name=op.f("pk_volunteer_skill_points")),
    )
    op.create_index(
        "ix_volunteer_skill_points_category_geom",
        "volunteer_skill_points",
        ["category", "geom"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_index(
        op.f("ix_volunteer_skill_points_volunteer_id"),
        "volunteer_skill_points",
        ["volunteer_id"],
        unique=False,
    )
    op.execute(
        f"INSERT INTO volunteer_skill_points ({ROW_COLUMNS}) SELECT DISTINCT ON (s, v.id) s, v.id,"
        " v.geom, v.name, v.availability, v.active_load FROM volunteers v, unnest(v.skills) AS s"
        f" WHERE {offerable('v')}"
    )
    op.execute(TRIGGERS)


def downgrade() -> None:
    for name, fn in (
        ("volunteers_skill_points_update", "minqing_skill_points_update"),
        ("volunteers_skill_points_delete", "minqing_skill_points_delete"),
        ("volunteers_skill_points_insert", "minqing_skill_points_insert"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON volunteers")
        op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    op.drop_index(
        op.f("ix_volunteer_skill_points_volunteer_id"), table_name="volunteer_skill_points"
    )
    op.drop_index(
        "ix_volunteer_skill_points_category_geom",
        table_name="volunteer_skill_points",
        postgresql_using="gist",
    )
    op.drop_table("volunteer_skill_points")
    op.drop_index(
        "ix_requests_open_category_geom_gist",
        table_name="requests",
        postgresql_using="gist",
        postgresql_where=sa.text(OPEN_STATUSES_SQL),
    )
    op.create_index(
        "ix_requests_open_geom_gist",
        "requests",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text(OPEN_STATUSES_SQL),
    )
