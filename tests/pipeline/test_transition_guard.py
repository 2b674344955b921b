"""PostgreSQL refuses transitions the action table does not list (migration 0007, issue 13).

``pipeline_transitions`` mirrors ``MACHINE.triples()``; a statement-level trigger checks
every new ``request_events`` row against it and a row-level one every change of
``requests.status`` — also under ``session_replication_role = replica`` (the bulk import's
mode), which skips ordinary triggers.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from layers.machines import MACHINES
from layers.pipeline import reference
from layers.pipeline.machine import START, Action, StateMachine
from layers.requests.schemas import parse_intake
from layers.requests.service import submit_request
from layers.requests.workflow import MACHINE
from tests.factories import X0, Y0, mini_district

CHECK_VIOLATION = "23514"


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


@pytest.fixture
def request_id(session) -> int:
    """A request just submitted inside the west grid: status ``assigned``."""
    return _submitted(session)


def _submitted(session) -> int:
    mini_district(session)
    body = {"lon": X0 + 0.005, "lat": Y0 + 0.005, "category": "elderly_care", "text": "灯坏了"}
    rid = submit_request(session=session, intake=parse_intake(body)).request_id
    assert rid is not None
    assert _status(session, rid) == "assigned"
    return rid


def _status(session, rid: int) -> str:
    return session.scalar(text("SELECT status FROM requests WHERE id = :i"), {"i": rid})


def _events(session, rid: int) -> list[tuple]:
    return [
        tuple(r)
        for r in session.execute(
            text(
                "SELECT action, from_status, to_status FROM request_events"
                " WHERE request_id = :i ORDER BY id"
            ),
            {"i": rid},
        )
    ]


INSERT_EVENT = text(
    "INSERT INTO request_events (request_id, actor_kind, action, from_status, to_status)"
    " VALUES (:r, 'system', :a, :f, :t)"
)


def _refused(session, sql, params, *, replica: bool = False) -> DBAPIError:
    """Run ``sql`` in a savepoint and return the check_violation it must raise."""
    with pytest.raises(DBAPIError) as caught, session.begin_nested():
        if replica:
            session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(sql, params)
    if replica:  # a rolled-back savepoint undoes its SET LOCAL; make sure of it
        session.execute(text("SET LOCAL session_replication_role = origin"))
    assert _sqlstate(caught.value) == CHECK_VIOLATION, caught.value
    return caught.value


# -- the reference table -------------------------------------------------------------------
def test_the_table_in_the_database_is_the_action_tables_triples(session) -> None:
    stored = reference.stored(session.connection(), "requests")
    assert stored == MACHINE.triples(), (
        "pipeline_transitions differs from MACHINE.triples(): is the test template older than"
        " layers/requests/workflow.py? (MINQING_REBUILD_TEMPLATE=1)"
    )
    machines = set(session.scalars(text("SELECT DISTINCT machine FROM pipeline_transitions")))
    assert machines == {m.name for m in MACHINES}
    # what the task names: creation has no from-state, auto_close records auto_closed
    assert ("submit", None, "submitted") in stored
    assert ("auto_closed", "resolved", "closed") in stored
    assert ("rehome", "assigned", "assigned") in stored
    assert not any(a == "auto_close" for a, _, _ in stored)


def test_both_guards_are_enabled_always(session) -> None:
    rows = dict(
        session.execute(
            text(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname IN"
                " ('request_events_transition_guard', 'requests_status_transition_guard')"
            )
        ).all()
    )
    assert rows == {
        "request_events_transition_guard": "A",
        "requests_status_transition_guard": "A",
    }


def test_sync_replaces_one_machines_rows_and_is_idempotent(owner_session) -> None:
    # the reference table is the owner's to write (``migrate`` syncs it); the app only reads
    conn = owner_session.connection()
    assert reference.sync(conn, [MACHINE]) == {"requests": (0, 0)}
    # a stale row and a missing one: both repaired, nothing else touched
    conn.execute(
        text(
            "INSERT INTO pipeline_transitions VALUES ('requests', 'fly', 'assigned', 'closed');"
            " DELETE FROM pipeline_transitions"
            " WHERE machine = 'requests' AND action = 'submit'"
        )
    )
    toy = StateMachine(
        "toy", ("a", "b"), (Action("make", (START,), "a"), Action("go", ("a",), "b"))
    )
    assert reference.sync(conn, [toy]) == {"toy": (0, 2)}
    assert reference.sync(conn, [MACHINE]) == {"requests": (1, 1)}
    assert reference.stored(conn, "requests") == MACHINE.triples()
    assert reference.stored(conn, "toy") == [("go", "a", "b"), ("make", None, "a")]
    assert reference.sync(conn, [MACHINE, toy]) == {"requests": (0, 0), "toy": (0, 0)}


# -- request_events ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "from_status", "to_status"),
    [
        ("claim", "closed", "assigned"),  # a known action, states it does not join
        ("teleport", "assigned", "closed"),  # no such action
        ("claim", None, "claimed"),  # only creation starts from nothing
        ("submit", None, "triage"),  # creation leads to submitted
        ("submit", "", "submitted"),  # only a NULL from-state is the start
        ("auto_close", "resolved", "closed"),  # the row writes the event "auto_closed"
        ("rehome", "closed", "closed"),  # finished requests are not re-homed
    ],
)
def test_an_event_the_table_does_not_list_is_refused(
    session, request_id, action, from_status, to_status
) -> None:
    before = _events(session, request_id)
    params = {"r": request_id, "a": action, "f": from_status, "t": to_status}
    err = _refused(session, INSERT_EVENT, params)
    message = str(err.orig)
    shown = "(start)" if from_status is None else from_status
    assert f"request {request_id} event: {action} from {shown} to {to_status}" in message
    assert _events(session, request_id) == before


@pytest.mark.parametrize(
    ("action", "from_status", "to_status"),
    [
        ("rehome", "assigned", "assigned"),
        ("auto_closed", "resolved", "closed"),
        ("submit", None, "submitted"),
        ("escalate", "in_progress", "assigned"),
    ],
)
def test_an_event_the_table_lists_is_accepted(
    session, request_id, action, from_status, to_status
) -> None:
    session.execute(INSERT_EVENT, {"r": request_id, "a": action, "f": from_status, "t": to_status})
    assert _events(session, request_id)[-1] == (action, from_status, to_status)


def test_one_bad_row_refuses_the_whole_statement(session, request_id) -> None:
    before = _events(session, request_id)
    many = text(
        "INSERT INTO request_events (request_id, actor_kind, action, from_status, to_status)"
        " SELECT :r, 'system', x.a, x.f, x.t FROM (VALUES ('rehome', 'assigned', 'assigned'),"
        " ('claim', 'assigned', 'claimed'), ('claim', 'closed', 'claimed'),"
        " ('start', 'claimed', 'in_progress')) AS x(a, f, t)"
    )
    err = _refused(session, many, {"r": request_id})
    assert "claim from closed to claimed" in str(err.orig)
    assert _events(session, request_id) == before


def test_intake_wrote_its_two_events_through_the_guard(session, request_id) -> None:
    assert _events(session, request_id) == [
        ("submit", None, "submitted"),
        ("assign", "submitted", "assigned"),
    ]


# -- requests.status ---------------------------------------------------------------------
SET_STATUS = text("UPDATE requests SET status = :s WHERE id = :i")


def test_a_status_change_no_action_makes_is_refused(session, request_id) -> None:
    err = _refused(session, SET_STATUS, {"s": "closed", "i": request_id})
    assert f"request {request_id}: no action leads from assigned to closed" in str(err.orig)
    _refused(session, SET_STATUS, {"s": "submitted", "i": request_id})
    assert _status(session, request_id) == "assigned"


def test_a_status_change_some_action_makes_is_accepted(session, request_id) -> None:
    session.execute(SET_STATUS, {"s": "claimed", "i": request_id})  # claim
    session.execute(SET_STATUS, {"s": "resolved", "i": request_id})  # resolve
    session.execute(SET_STATUS, {"s": "assigned", "i": request_id})  # reopen
    assert _status(session, request_id) == "assigned"


def test_updates_that_keep_the_status_are_not_checked(session, request_id) -> None:
    session.execute(
        text("UPDATE requests SET status = 'assigned', owner_level = 'community' WHERE id = :i"),
        {"i": request_id},
    )
    session.execute(text("UPDATE requests SET text = 'x' WHERE id = :i"), {"i": request_id})
    assert _status(session, request_id) == "assigned"


# -- replica mode (the bulk import's) ----------------------------------------------------
def test_the_guards_fire_under_replica_mode(superuser_session) -> None:
    # replica mode is a superuser's (the app's role may not set it): a bulk load by one
    session = superuser_session
    assert session.scalar(text("SELECT current_setting('is_superuser')")) == "on"
    request_id = _submitted(session)
    # replica mode is in effect: the foreign key's (ordinary) triggers are skipped, so an
    # event of a request that does not exist goes in when its transition is legal ...
    with session.begin_nested() as sp:
        session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(
            INSERT_EVENT, {"r": -request_id, "a": "rehome", "f": "assigned", "t": "assigned"}
        )
        sp.rollback()
    # ... while an illegal one is still refused, and so is an illegal status change
    _refused(
        session,
        INSERT_EVENT,
        {"r": request_id, "a": "claim", "f": "closed", "t": "assigned"},
        replica=True,
    )
    _refused(session, SET_STATUS, {"s": "closed", "i": request_id}, replica=True)
    assert session.scalar(text("SELECT current_setting('session_replication_role')")) == "origin"
    assert _status(session, request_id) == "assigned"
