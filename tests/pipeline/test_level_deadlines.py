"""Level deadlines (issue 14, DESIGN §3): the first deadline never moves, each level a request
reaches gets its own, a hand-off within a level moves nothing, and lateness stays visible
after the deadline job escalates it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from layers.requests.metrics import compute_metrics
from layers.requests.rules import deadline_hours, escalation_deadline_hours
from layers.requests.service import resolve_request, run_escalations
from tests.factories import token
from tests.pipeline.conftest import submit

REASON = {"reason": "需调整"}


def _deadlines(session, rid: int) -> tuple[datetime, datetime, bool]:
    row = session.execute(
        text("SELECT first_deadline_at, deadline_at, was_overdue FROM requests WHERE id = :r"),
        {"r": rid},
    ).one()
    return row[0], row[1], row[2]


def _post(client, rid, action, headers, body):
    r = client.post(f"/api/v1/requests/{rid}/{action}", headers=headers, json=body)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_a_hand_off_within_the_level_moves_no_deadline(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    first, level, late = _deadlines(session, rid)
    assert first == level and late is False
    leader = token(client, world.users["grid_leader"])
    far = world.volunteers["far"].id
    _post(client, rid, "reassign", leader, {"volunteer_id": far, **REASON})
    assert _deadlines(session, rid)[:2] == (first, level)
    # another grid is another level: a deadline of its own, the first one kept
    t0 = datetime.now(UTC)
    staff = token(client, world.users["community_staff"])  # the east grid is in their subtree
    _post(client, rid, "reassign", staff, {"grid_code": world.mini.east.code, **REASON})
    admin = token(client, world.users["admin"])
    out = client.get(f"/api/v1/requests/{rid}", headers=admin).get_json()
    first2, level2, _ = _deadlines(session, rid)
    assert first2 == first and level2 > level
    hours = deadline_hours("elderly_care", "grid")
    assert abs(level2 - t0 - timedelta(hours=hours)) < timedelta(seconds=30)
    assert out["first_deadline"] is not None and out["deadline"] != out["first_deadline"]


def test_escalation_for_lateness_keeps_it_visible(client, session, world) -> None:
    created = submit(client).get_json()
    rid = created["id"]
    on_time = submit(client).get_json()["id"]
    first, _, _ = _deadlines(session, rid)
    later = first + timedelta(hours=1)
    session.execute(
        text("UPDATE requests SET deadline_at = :t WHERE id = :r"),
        {"t": later + timedelta(days=30), "r": on_time},
    )
    assert run_escalations(session=session, now=later)["escalated"] >= 1
    first2, level2, late = _deadlines(session, rid)
    assert first2 == first and late is True
    community_hours = escalation_deadline_hours()["community"]
    assert level2 == later + timedelta(hours=community_hours)
    admin = token(client, world.users["admin"])
    detail = client.get(f"/api/v1/requests/{rid}", headers=admin).get_json()
    # not overdue at the community's new deadline, but it was overdue at the grid
    assert detail["owner_level"] == "community"
    assert detail["overdue"] is False and detail["was_overdue"] is True
    escalation = detail["timeline"][-1]
    assert escalation["action"] == "escalate" and escalation["note"]
    listed = client.get("/api/v1/requests", headers=admin).get_json()["requests"]
    by_id = {r["id"]: r for r in listed}
    assert by_id[rid]["was_overdue"] is True and by_id[on_time]["was_overdue"] is False
    ticket = client.get(f"/api/v1/tickets/{created['ticket']}").get_json()
    assert ticket["overdue"] is False and ticket["was_overdue"] is True
    page = client.get(f"/t/{created['ticket']}").get_data(as_text=True)
    assert "曾超期" in page


def test_resolving_after_the_deadline_is_remembered(client, session, world) -> None:
    late_id = submit(client).get_json()["id"]
    first, _, _ = _deadlines(session, late_id)
    from layers.requests.access import Actor

    admin = Actor.system()
    resolve_request(
        session=session,
        request_id=late_id,
        actor=admin,
        note="终于修好",
        now=first + timedelta(minutes=5),
    )
    assert _deadlines(session, late_id)[2] is True
    early_id = submit(client).get_json()["id"]
    resolve_request(session=session, request_id=early_id, actor=admin, note="已修好")
    assert _deadlines(session, early_id)[2] is False


def test_reopen_after_a_low_rating_starts_a_new_deadline_at_the_same_level(
    client, session, world
) -> None:
    created = submit(client).get_json()
    rid = created["id"]
    leader = token(client, world.users["grid_leader"])
    _post(client, rid, "resolve", leader, {"note": "已处理"})
    first, level, _ = _deadlines(session, rid)
    t0 = datetime.now(UTC)
    r = client.post(f"/api/v1/tickets/{created['ticket']}/rate", json={"rating": 1})
    assert r.status_code == 200, r.get_json()
    first2, level2, _ = _deadlines(session, rid)
    assert first2 == first and level2 > level
    hours = deadline_hours("elderly_care", "grid")
    assert abs(level2 - t0 - timedelta(hours=hours)) < timedelta(seconds=30)
    owner = session.scalar(text("SELECT owner_level FROM requests WHERE id = :r"), {"r": rid})
    assert owner == "grid"


def test_level_on_time_rates(client, session, world) -> None:
    """Grid: one resolved in time at the grid, one escalated for lateness; the community
    resolves the escalated one in time: grid 1/2, community 1/1."""
    t0 = datetime.now(UTC)
    a = submit(client).get_json()["id"]
    b = submit(client).get_json()["id"]
    leader = token(client, world.users["grid_leader"])
    _post(client, a, "resolve", leader, {"note": "已处理"})
    first_b, _, _ = _deadlines(session, b)
    assert run_escalations(session=session, now=first_b + timedelta(minutes=1))["escalated"] >= 1
    from layers.requests.access import Actor

    resolve_request(
        session=session,
        request_id=b,
        actor=Actor.system(),
        note="社区协调解决",
        now=first_b + timedelta(hours=2),
    )
    rows = compute_metrics(
        session=session,
        level="community",
        period_from=t0 - timedelta(minutes=1),
        period_to=t0 + timedelta(minutes=5),
        now=first_b + timedelta(hours=3),
        scope_clause="r.id = ANY(:ids)",
        scope_params={"ids": [a, b]},
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["received"] == 2 and row["was_overdue"] == 1
    assert row["resolved_on_time"] == 1 and row["on_time_rate"] == 0.5
    assert row["grid_on_time_rate"] == 0.5
    assert row["community_on_time_rate"] == 1.0
    assert row["street_on_time_rate"] is None


def test_volunteer_offers_carry_age_and_lateness(client, session, world) -> None:
    from layers.volunteers.dashboard import volunteer_dashboard

    fresh = submit(client).get_json()["id"]
    late = submit(client).get_json()["id"]
    session.execute(
        text("UPDATE requests SET deadline_at = now() - interval '1 hour' WHERE id = :r"),
        {"r": late},
    )
    near = world.volunteers["near"]
    offers = {
        r["id"]: r for r in volunteer_dashboard(session=session, user_id=near.user_id)["offers"]
    }
    assert offers[fresh]["overdue"] is False and offers[fresh]["was_overdue"] is False
    assert offers[late]["overdue"] is True and offers[late]["was_overdue"] is True
    assert offers[fresh]["created_at"] <= datetime.now(UTC)
