"""knn indexes for the offer and possible duplicates

Intake's two nearest-first searches become KNN scans of composite GiST indexes (btree_gist)
that stop after a few dozen rows:

1. the offer: ``volunteer_skill_points``, one row per (skill, active volunteer) with the home
   point, kept in step with ``volunteers`` by triggers, indexed on (category, geom). Over the
   volunteers' own GiST index the search filtered ~6,000 homes in a 5 km box per submission
   at 100k volunteers (~10 ms, 3,000 heap pages). Statement-level triggers (transition
   tables) keep bulk loads cheap; a row-level trigger on ``UPDATE OF skills, geom, active``
   keeps load counters (``active_load``) out of it.
2. possible duplicates: a partial index on (category, geom) of open requests. Over the (geom)
   index of open requests a 250 m box held ~700 open requests of every category at 1M
   requests (~2 ms, 700 pages).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:00:00
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = """
CREATE FUNCTION minqing_skill_points_insert() RETURNS trigger AS $$
BEGIN
  INSERT INTO volunteer_skill_points (category, volunteer_id, geom)
  SELECT DISTINCT s, n.id, n.geom FROM new_rows n, unnest(n.skills) AS s WHERE n.active;
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
  IF NEW.active THEN
    INSERT INTO volunteer_skill_points (category, volunteer_id, geom)
    SELECT DISTINCT s, NEW.id, NEW.geom FROM unnest(NEW.skills) AS s;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER volunteers_skill_points_update AFTER UPDATE OF skills, geom, active ON volunteers
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
        "INSERT INTO volunteer_skill_points (category, volunteer_id, geom) "
        "SELECT DISTINCT s, v.id, v.geom FROM volunteers v, unnest(v.skills) AS s WHERE v.active"
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
