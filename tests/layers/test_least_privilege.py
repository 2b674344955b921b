"""Least privilege (issue 16): the app connects as a role that owns nothing and holds only
the grants of ``layers.grants``; the migrations run as the schema's owner; no secret key
falls back to a known one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from layers import grants
from layers.config import Settings, settings_from_env
from layers.errors import Misconfigured

INSUFFICIENT_PRIVILEGE = "42501"


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _denied(session, sql: str) -> None:
    """``sql`` fails with insufficient_privilege (in a savepoint: the test goes on)."""
    with pytest.raises(DBAPIError) as caught, session.begin_nested():
        session.execute(text(sql))
    assert _sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE, caught.value


# -- the app's role -------------------------------------------------------------------------
def test_the_tests_connect_as_the_app_role_which_owns_nothing(session, db_roles) -> None:
    assert session.scalar(text("SELECT current_user")) == db_roles.app
    role = session.execute(
        text(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
    ).one()
    assert not any(role)
    owned = session.scalar(
        text(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            " AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'"
        )
    )
    assert owned == 0
    assert (
        session.scalar(
            text(
                "SELECT count(*) FROM pg_proc"
                " WHERE proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            )
        )
        == 0
    )


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE intruder (id int)",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE requests ADD COLUMN intruder int",
        "ALTER TABLE requests DISABLE TRIGGER requests_status_transition_guard",
        "ALTER TABLE request_events DISABLE TRIGGER request_events_append_only",
        "DROP TABLE audit_log",
        "DROP INDEX ix_requests_status_deadline",
        "TRUNCATE request_events",
        "TRUNCATE requests CASCADE",
        "UPDATE request_events SET note = 'rewritten'",
        "DELETE FROM request_events",
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "SELECT * FROM alembic_version",
        "UPDATE alembic_version SET version_num = '0001'",
        "INSERT INTO pipeline_transitions VALUES ('requests', 'fly', 'assigned', 'closed')",
        "DELETE FROM pipeline_transitions",
        "INSERT INTO roles VALUES ('emperor', '皇帝', 'emperor', 'global')",
        "SET session_replication_role = replica",
        "CREATE ROLE intruder",
    ],
)
def test_the_app_role_cannot(session, sql: str) -> None:
    _denied(session, sql)


def test_every_grant_the_app_role_holds_is_the_policys(session, db_roles) -> None:
    rows = session.execute(
        text(
            "SELECT c.relname, c.relkind = 'S',"
            " ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE',"
            "   'TRUNCATE', 'REFERENCES', 'TRIGGER']) p"
            "   WHERE c.relkind <> 'S' AND has_table_privilege(current_user, c.oid, p)),"
            " ARRAY(SELECT p FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p"
            "   WHERE c.relkind = 'S' AND has_sequence_privilege(current_user, c.oid, p))"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
            " AND pg_get_userbyid(c.relowner) = :owner"
        ),
        {"owner": db_roles.owner},
    ).all()
    assert len(rows) > 20
    for name, is_sequence, table_privs, sequence_privs in rows:
        held = set(sequence_privs if is_sequence else table_privs)
        want = grants.sequence_privileges(name) if is_sequence else grants.table_privileges(name)
        assert held == want, name
    held = {r[0]: set(r[2]) for r in rows if not r[1]}
    assert held["request_events"] == held["audit_log"] == {"SELECT", "INSERT"}
    assert held["alembic_version"] == set()
    assert held["requests"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}


def test_the_app_role_still_does_its_work(session) -> None:
    # temporary tables (the importers stage rows in them) and sequences (new rows)
    session.execute(text("CREATE TEMP TABLE stage (x int) ON COMMIT DROP"))
    session.execute(text("INSERT INTO stage VALUES (1)"))
    assert session.scalar(text("SELECT nextval(pg_get_serial_sequence('requests', 'id'))")) > 0
    assert session.scalar(text("SELECT count(*) FROM pipeline_transitions")) > 0


# -- the owner and the grant step -------------------------------------------------------------
def test_the_schema_is_the_owners(owner_session, db_roles) -> None:
    assert owner_session.scalar(text("SELECT current_user")) == db_roles.owner
    assert not owner_session.scalar(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    )
    owners = dict(
        owner_session.execute(
            text(
                "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')"
                " AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid"
                "   AND d.classid = 'pg_class'::regclass AND d.deptype = 'e')"
            )
        ).all()
    )
    assert owners["alembic_version"] == owners["requests"] == db_roles.owner
    assert set(owners.values()) == {db_roles.owner}


def test_a_table_from_a_later_migration_is_granted_by_the_step(
    owner_session, db_roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = owner_session.connection()
    assert grants.apply_grants(conn, db_roles.app) == []  # already right: writes nothing
    conn.execute(text("CREATE TABLE later_table (id bigint GENERATED BY DEFAULT AS IDENTITY)"))
    conn.execute(text("CREATE TABLE later_history (id int)"))
    conn.execute(text("GRANT TRUNCATE ON requests TO " + db_roles.app))  # drift, repaired
    monkeypatch.setattr(grants, "APPEND_ONLY", grants.APPEND_ONLY | {"later_history"})
    changed = grants.apply_grants(conn, db_roles.app)
    assert sorted(changed) == ["later_history", "later_table", "later_table_id_seq", "requests"]

    def held(table: str) -> set[str]:
        return {
            p
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
            if conn.scalar(
                text("SELECT has_table_privilege(:r, :t, :p)"),
                {"r": db_roles.app, "t": table, "p": p},
            )
        }

    assert held("later_table") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert held("later_history") == {"SELECT", "INSERT"}
    assert held("requests") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert conn.scalar(
        text("SELECT has_sequence_privilege(:r, 'later_table_id_seq', 'USAGE')"),
        {"r": db_roles.app},
    )


def test_migrate_runs_as_the_owner_and_grants_the_app(committed_db) -> None:
    """``minqing migrate`` with the owner's URL repairs the app's grants; with the app's URL
    alone it refuses to run."""
    import subprocess

    minqing = Path(sys.executable).with_name("minqing")
    owner = create_engine(committed_db.owner_url, poolclass=NullPool)
    try:
        with owner.begin() as c:
            app = str(committed_db.engine.url.username)
            c.execute(text(f"REVOKE INSERT ON requests FROM {app}"))
        env = {
            **os.environ,
            "DATABASE_URL": committed_db.url,
            "MIGRATION_DATABASE_URL": committed_db.owner_url,
        }
        ran = subprocess.run(
            [str(minqing), "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        with committed_db.engine.connect() as c:
            assert c.scalar(text("SELECT has_table_privilege('requests', 'INSERT')"))
        env.pop("MIGRATION_DATABASE_URL")
        refused = subprocess.run(
            [str(minqing), "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert refused.returncode == 1 and "MIGRATION_DATABASE_URL" in refused.stderr
    finally:
        owner.dispose()


# -- no secret fallback -------------------------------------------------------------------------
def test_create_app_without_a_key_refuses_to_start(db) -> None:
    from web import create_app

    assert settings_from_env({}).secret_key is None
    for key in (None, ""):
        with pytest.raises(Misconfigured) as caught:
            create_app(Settings(database_url="postgresql://unused", secret_key=key), database=db)
        assert caught.value.code == "secret_key_missing"
    with pytest.raises(Misconfigured):
        create_app(settings_from_env({"DATABASE_URL": "postgresql://unused"}), database=db)
    assert not any("dev-only" in str(v) for v in vars(Settings()).values())
