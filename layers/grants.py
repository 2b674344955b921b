"""What the app's database role may do (issue 16, least privilege).

The app connects as a role that owns nothing (``DATABASE_URL``); the schema belongs to the
role that runs the migrations (``MIGRATION_DATABASE_URL``). ``apply_grants`` is the last step
of every ``migrate``: it reads the tables and sequences the migrating role owns in the public
schema and gives the app role exactly what this module's policy says — so a table added by a
later migration is covered the moment it exists, with no grant of its own:

- every table: SELECT, INSERT, UPDATE, DELETE (the app writes what it owns in its domain);
- append-only tables (``APPEND_ONLY``): SELECT, INSERT only — the triggers of
  ``request_events`` and ``audit_log`` refuse UPDATE and DELETE too, so their history has two
  walls;
- reference tables the migrations fill (``READ_ONLY``): SELECT;
- ``alembic_version``: nothing;
- sequences: USAGE, SELECT (``nextval``), and UPDATE where the app calls ``setval``.

Nothing else: no TRUNCATE, REFERENCES or TRIGGER on any table, no CREATE on the schema (the
app cannot create, alter or drop anything; it may still make temporary tables, as the
importers do). The step revokes whatever differs from the policy and writes nothing when the
grants are already right.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection

from layers.errors import Misconfigured

logger = logging.getLogger(__name__)

SCHEMA = "public"
WRITE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
#: history: rows are added, never changed (the triggers of migrations 0001 / 0002 agree for
#: the first two; the login audit log of 0011 has the grants as its only wall)
APPEND_ONLY = frozenset({"request_events", "audit_log", "login_events"})
#: filled by the migrations (roles) or by ``migrate`` itself (pipeline_transitions)
READ_ONLY = frozenset({"roles", "pipeline_transitions"})
NO_ACCESS = frozenset({"alembic_version"})
#: sequences the app moves with setval (the walking network's node ids, importers/store.py)
SEQUENCE_SETVAL = frozenset({"network_nodes_id_seq"})


def table_privileges(table: str) -> frozenset[str]:
    """The privileges the app role holds on ``table`` under the policy."""
    if table in NO_ACCESS:
        return frozenset()
    if table in READ_ONLY:
        return frozenset({"SELECT"})
    if table in APPEND_ONLY:
        return frozenset({"SELECT", "INSERT"})
    return WRITE


def sequence_privileges(sequence: str) -> frozenset[str]:
    """The privileges the app role holds on ``sequence`` under the policy."""
    base = frozenset({"USAGE", "SELECT"})
    return base | {"UPDATE"} if sequence in SEQUENCE_SETVAL else base


# Tables, views and sequences of the schema the connected role owns (an extension's, such as
# PostGIS's spatial_ref_sys, are not ours to grant) with what ``:app`` holds on each now.
_OWNED_SQL = text(
    """
    SELECT c.relname, c.relkind = 'S' AS is_sequence,
           coalesce((SELECT array_agg(a.privilege_type::text) FROM aclexplode(c.relacl) a
                     WHERE a.grantee = r.oid), '{}') AS held
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN (SELECT oid FROM pg_roles WHERE rolname = :app) r
    WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY c.relname
    """
)


def apply_grants(connection: Connection, app_role: str) -> list[str]:
    """Give ``app_role`` what the policy says on every table and sequence the connected role
    owns (run by ``layers.db.migrate`` as the owner, in its transaction); returns the names
    of the objects whose grants changed."""
    role = connection.execute(
        text("SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = :r"),
        {"r": app_role},
    ).first()
    if role is None:
        raise Misconfigured("unknown_db_role", role=app_role)
    if role[1]:
        logger.warning(
            "the app connects as the schema's owner %s: no grants apply (least privilege off)",
            app_role,
        )
        return []
    if role[0]:
        logger.warning("the app role %s is a superuser: grants do not limit it", app_role)
    quote = connection.dialect.identifier_preparer.quote
    app = quote(app_role)
    changed = []
    rows = connection.execute(_OWNED_SQL, {"app": app_role, "schema": SCHEMA}).all()
    for name, is_sequence, held in rows:
        want = sequence_privileges(name) if is_sequence else table_privileges(name)
        if set(held) == want:
            continue
        kind = "SEQUENCE" if is_sequence else "TABLE"
        target = f"{quote(SCHEMA)}.{quote(name)}"
        connection.execute(text(f"REVOKE ALL ON {kind} {target} FROM {app}"))
        if want:
            privileges = ", ".join(sorted(want))
            connection.execute(text(f"GRANT {privileges} ON {kind} {target} TO {app}"))
        changed.append(name)
    schema = connection.execute(
        text(
            "SELECT has_schema_privilege(:r, :s, 'USAGE'), EXISTS (SELECT FROM"
            " pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = :s AND a.grantee = 0"
            " AND a.privilege_type = 'CREATE'), pg_has_role(n.nspowner, 'USAGE')"
            " FROM pg_namespace n WHERE n.nspname = :s"
        ),
        {"r": app_role, "s": SCHEMA},
    ).one()
    if not schema[0]:
        connection.execute(text(f"GRANT USAGE ON SCHEMA {quote(SCHEMA)} TO {app}"))
        changed.append(f"schema {SCHEMA}")
    if schema[1] and schema[2]:  # a schema from before PostgreSQL 15: anyone may create in it
        connection.execute(text(f"REVOKE CREATE ON SCHEMA {quote(SCHEMA)} FROM PUBLIC"))
        changed.append(f"schema {SCHEMA} (CREATE from PUBLIC)")
    if changed:
        logger.info("grants for %s set on %s", app_role, ", ".join(changed))
    return changed
