"""The schema comes only from migrations, and they round-trip."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from layers.db import alembic_config, downgrade, migrate
from layers.models import Base
from tests import db_support


@pytest.fixture
def empty_db(server_url: str, db_roles: db_support.Roles):
    """An empty database owned by the owner role (extensions made by the superuser): the
    URL the migrations run with, the owner's."""
    name = f"minqing_mig_{uuid.uuid4().hex[:8]}"
    admin = db_support.admin_engine(server_url)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" OWNER "{db_roles.owner}"'))
    db_support.create_extensions(
        db_support.url_for_db(server_url, name).render_as_string(hide_password=False)
    )
    yield db_roles.url(server_url, db_roles.owner, name)
    db_support.drop_database(admin, name)
    admin.dispose()


def _tables(url: str) -> set[str]:
    eng = create_engine(url)
    try:
        return set(inspect(eng).get_table_names())
    finally:
        eng.dispose()


def test_upgrade_from_empty_check_and_downgrade_to_base(empty_db: str) -> None:
    migrate(empty_db)
    assert set(Base.metadata.tables) <= _tables(empty_db)
    # alembic check raises if autogenerate sees any difference between models and migrations
    command.check(alembic_config(empty_db))
    downgrade(empty_db, "base")
    assert _tables(empty_db) - {"alembic_version"} == {"spatial_ref_sys"}
    migrate(empty_db)  # and up again
    assert set(Base.metadata.tables) <= _tables(empty_db)


def test_every_geometry_is_srid_4326_with_a_gist_index(session) -> None:
    rows = session.execute(
        text("SELECT f_table_name, f_geometry_column, srid FROM geometry_columns")
    ).all()
    assert rows, "no geometry columns registered"
    assert {r.srid for r in rows} == {4326}
    gist = {  # (table, column) of every GiST index column, composite ones included
        (r.tablename, column.strip())
        for r in session.execute(
            text("SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE '%USING gist%'")
        )
        for column in r.indexdef.split("USING gist (", 1)[1].split(")", 1)[0].split(",")
    }
    for table, column, _ in rows:
        assert (table, column) in gist, f"{table}.{column} has no GiST index"


def test_invalid_geometry_is_refused_by_the_database(session) -> None:
    bowtie = "SRID=4326;MULTIPOLYGON(((0 0, 1 1, 1 0, 0 1, 0 0)))"
    with pytest.raises(IntegrityError, match="geom_valid"):
        session.execute(
            text(
                "INSERT INTO areas (code, name, level, geom) "
                "VALUES ('990001', 'bad', 'district', ST_GeomFromEWKT(:g))"
            ),
            {"g": bowtie},
        )
        session.flush()


def test_building_code_is_immutable_and_events_append_only(session) -> None:
    session.execute(
        text(
            "INSERT INTO buildings (code, geom, rep_point) VALUES ('T-IMMUTABLE', "
            "ST_GeomFromText('POLYGON((0 0,0 1,1 1,1 0,0 0))', 4326), "
            "ST_SetSRID(ST_MakePoint(0.5, 0.5), 4326))"
        )
    )
    with pytest.raises(IntegrityError, match="immutable"):
        session.execute(text("UPDATE buildings SET code = 'T-OTHER' WHERE code = 'T-IMMUTABLE'"))
    session.rollback()
    session.execute(
        text(
            "INSERT INTO requests (number, ticket_hash, category, text, status, owner_level, geom)"
            " VALUES ('T1', repeat('a', 64), 'x', 't', 'triage', 'community',"
            " ST_SetSRID(ST_MakePoint(0, 0), 4326))"
        )
    )
    session.execute(
        text(
            "INSERT INTO request_events (request_id, actor_kind, action, to_status)"
            " SELECT id, 'system', 'submit', 'submitted' FROM requests WHERE number = 'T1'"
        )
    )
    # two walls: the app's role holds no UPDATE on it (issue 16) ...
    with pytest.raises(DBAPIError, match="permission denied"), session.begin_nested():
        session.execute(text("UPDATE request_events SET note = 'rewritten'"))


def test_request_events_refuse_even_their_owner(owner_session) -> None:
    # ... and its trigger refuses UPDATE and DELETE to anyone, the schema's owner included
    assert owner_session.scalar(text("SELECT count(*) FROM request_events")) > 0
    for sql in ("UPDATE request_events SET note = 'rewritten'", "DELETE FROM request_events"):
        with pytest.raises(DBAPIError, match="append-only"), owner_session.begin_nested():
            owner_session.execute(text(sql))


def test_roles_are_seeded(session) -> None:
    codes = set(session.scalars(text("SELECT code FROM roles")))
    assert {"admin", "planner", "grid_leader", "community_staff", "volunteer"} <= codes
