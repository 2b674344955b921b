"""the database refuses transitions the action table does not list

The pipeline's states and transitions live in one action table
(``layers.requests.workflow.MACHINE``), and one module writes every event and status
(``layers.requests.events``). The database now guards the same rule, so that neither a new
code path, a bulk load nor a hand-written statement can record a transition the table does
not allow (issue 13):

- ``pipeline_transitions`` lists each machine's allowed (event action, from, to); a NULL
  ``from_status`` is the action that creates the entity (``submit``). It is filled here with
  the triples of the day (frozen below) and re-synced from the code after every ``migrate``
  (``layers.pipeline.reference.sync``), so a new row in an action table needs no migration.
- ``request_events_transition_guard``: an AFTER INSERT trigger FOR EACH STATEMENT over the
  statement's new rows (a transition table) refuses the whole statement when one row's
  (action, from_status, to_status) is not listed (a NULL from_status matches only a NULL).
  Per statement, not per row: intake writes its two events in one statement and the bulk
  import millions in one, and each pays one scan of its new rows probing a hash of a few
  dozen allowed triples instead of a trigger call per row. Measured on 1M new rows: the
  check ~0.3 s; a NOT EXISTS anti-join that PL/pgSQL's plan cache had planned as index
  probes for a small first statement, 1.5-1.7 s. The transition table itself is a copy of
  the new rows (spilled to a temporary file beyond work_mem).
- ``requests_status_transition_guard``: a BEFORE UPDATE OF status trigger FOR EACH ROW, only
  when the status changes, refuses a change that no action of the table makes. Status
  changes come one request at a time (the runner), so a row trigger costs little; inserts of
  requests (intake, bulk import) are not checked here: their first events are.

Both are ENABLE ALWAYS: the bulk import sets ``session_replication_role = replica`` to skip
the foreign-key triggers, which silently skips every ordinary trigger too; the append-only
guards of the event log and the audit log become ENABLE ALWAYS for the same reason. Both raise
``check_violation`` naming the offending action, states and request.

Rows already in ``request_events`` are not checked; the guard applies to what is written
from now on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "pipeline_transitions"
EVENTS_GUARD = "request_events_transition_guard"
STATUS_GUARD = "requests_status_transition_guard"

TRIGGERS = f"""
CREATE FUNCTION minqing_request_events_transition_guard() RETURNS trigger AS $$
DECLARE
  bad record;
BEGIN
  -- NOT IN over the small reference table: a hashed subplan probed once per new row,
  -- whatever the plan cache decided when the first statement of the session was planned
  -- (a NOT EXISTS anti-join planned for intake's two rows, a nested loop of index probes,
  -- would cost 1.5 s per million rows of a bulk import; this costs ~0.3 s)
  SELECT n.request_id, n.action, n.from_status, n.to_status INTO bad
  FROM new_rows n
  WHERE CASE WHEN n.from_status IS NULL
    THEN (n.action, n.to_status) NOT IN (
      SELECT t.action, t.to_status FROM {TABLE} t
      WHERE t.machine = 'requests' AND t.from_status IS NULL)
    ELSE (n.action, n.from_status, n.to_status) NOT IN (
      SELECT t.action, t.from_status, t.to_status FROM {TABLE} t
      WHERE t.machine = 'requests' AND t.from_status IS NOT NULL)
  END;
  IF FOUND THEN
    RAISE EXCEPTION 'request % event: % from % to % is not a transition of the action table',
      bad.request_id, bad.action, coalesce(bad.from_status, '(start)'), bad.to_status
      USING ERRCODE = 'check_violation',
            HINT = 'allowed transitions: {TABLE} WHERE machine = ''requests''';
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER {EVENTS_GUARD} AFTER INSERT ON request_events
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION minqing_request_events_transition_guard();
ALTER TABLE request_events ENABLE ALWAYS TRIGGER {EVENTS_GUARD};

CREATE FUNCTION minqing_requests_status_transition_guard() RETURNS trigger AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM {TABLE} t
    WHERE t.machine = 'requests' AND t.from_status = OLD.status AND t.to_status = NEW.status)
  THEN
    RAISE EXCEPTION 'request %: no action leads from % to %', OLD.id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation',
            HINT = 'allowed transitions: {TABLE} WHERE machine = ''requests''';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER {STATUS_GUARD} BEFORE UPDATE OF status ON requests
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION minqing_requests_status_transition_guard();
ALTER TABLE requests ENABLE ALWAYS TRIGGER {STATUS_GUARD};
"""


# The requests' allowed (event action, from, to) as the action table had them when this
# migration was written: frozen here so the migration always does the same thing; later
# changes of the table reach the database through layers.db.migrate's re-sync.
REQUESTS_TRIPLES = (
    ("assign", "submitted", "assigned"),
    ("assign", "triage", "assigned"),
    ("auto_closed", "resolved", "closed"),
    ("claim", "assigned", "claimed"),
    ("close", "rated", "closed"),
    ("escalate", "assigned", "assigned"),
    ("escalate", "claimed", "assigned"),
    ("escalate", "in_progress", "assigned"),
    ("escalate", "triage", "assigned"),
    ("mark_duplicate", "assigned", "duplicate"),
    ("mark_duplicate", "submitted", "duplicate"),
    ("mark_duplicate", "triage", "duplicate"),
    ("rate", "resolved", "rated"),
    ("reassign", "assigned", "assigned"),
    ("reassign", "claimed", "assigned"),
    ("reassign", "in_progress", "assigned"),
    ("rehome", "assigned", "assigned"),
    ("rehome", "claimed", "claimed"),
    ("rehome", "in_progress", "in_progress"),
    ("rehome", "rated", "rated"),
    ("rehome", "resolved", "resolved"),
    ("rehome", "submitted", "submitted"),
    ("rehome", "triage", "triage"),
    ("reject", "assigned", "rejected"),
    ("reject", "submitted", "rejected"),
    ("reject", "triage", "rejected"),
    ("reopen", "rated", "assigned"),
    ("reopen", "resolved", "assigned"),
    ("resolve", "claimed", "resolved"),
    ("resolve", "in_progress", "resolved"),
    ("start", "claimed", "in_progress"),
    ("submit", None, "submitted"),
    ("triage", "submitted", "triage"),
    ("withdraw", "assigned", "withdrawn"),
    ("withdraw", "claimed", "withdrawn"),
    ("withdraw", "in_progress", "withdrawn"),
    ("withdraw", "submitted", "withdrawn"),
    ("withdraw", "triage", "withdrawn"),
)

# The append-only guards of 0001 / 0002 fire under session_replication_role = replica too.
APPEND_ONLY = (
    ("request_events", "request_events_append_only"),
    ("audit_log", "audit_log_append_only"),
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("machine", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
    )
    op.create_index(
        "ux_pipeline_transitions",
        TABLE,
        ["machine", "action", sa.text("coalesce(from_status, '')"), "to_status"],
        unique=True,
    )
    op.bulk_insert(
        sa.table(
            TABLE,
            sa.column("machine", sa.Text()),
            sa.column("action", sa.Text()),
            sa.column("from_status", sa.Text()),
            sa.column("to_status", sa.Text()),
        ),
        [
            {"machine": "requests", "action": a, "from_status": f, "to_status": t}
            for a, f, t in REQUESTS_TRIPLES
        ],
    )
    op.execute(TRIGGERS)
    for table, trigger in APPEND_ONLY:
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")


def downgrade() -> None:
    for table, trigger in APPEND_ONLY:
        op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
    for table, name, fn in (
        ("requests", STATUS_GUARD, "minqing_requests_status_transition_guard"),
        ("request_events", EVENTS_GUARD, "minqing_request_events_transition_guard"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    op.drop_index("ux_pipeline_transitions", table_name=TABLE)
    op.drop_table(TABLE)
