"""Every workflow action × role: who may, and 401/403 with zero rows changed for the rest."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from layers.requests.schemas import parse_intake
from layers.requests.service import ACTIONS, submit_request
from tests.factories import X0, Y0, forge_status, token
from tests.pipeline.conftest import CENTRE

ROLES = (
    "anonymous",
    "plain",
    "planner",
    "volunteer",
    "volunteer2",
    "grid_member",
    "grid_leader",
    "other_leader",
    "community_staff",
    "street_staff",
    "admin",
)
STAFF_ALL = {"grid_member", "grid_leader", "community_staff", "street_staff", "admin"}
LEADERS_UP = {"grid_leader", "community_staff", "street_staff", "admin"}
# Hand-written expectations for a request in the west grid (the gap community for assign).
ALLOWED: dict[str, set[str]] = {
    "claim": {"volunteer", "volunteer2"},  # both are offered
    "start": STAFF_ALL | {"volunteer"},  # volunteer = the assignee
    "resolve": STAFF_ALL | {"volunteer"},
    "reopen": LEADERS_UP,
    "reject": LEADERS_UP,
    "mark_duplicate": STAFF_ALL,
    "reassign": LEADERS_UP,
    "escalate": STAFF_ALL,
    "assign": {"street_staff", "admin"},  # community_staff is bound to the other community
    "reply": STAFF_ALL,
    "decline_offer": {"volunteer", "volunteer2"},
    "give_back": {"volunteer"},  # the assignee only
}
STATE = {"start": "claimed", "resolve": "claimed", "reopen": "resolved", "give_back": "claimed"}

TABLES = ("requests", "request_events", "request_offers", "notifications", "volunteers")


def _snapshot(session) -> tuple[str, ...]:
    return tuple(
        session.scalar(
            text(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {t} t")
        )
        for t in TABLES
    )


def test_every_action_has_an_expectation() -> None:
    assert set(ALLOWED) == set(ACTIONS)


@pytest.fixture
def headers(client, world) -> dict[str, dict[str, str]]:
    out = {"anonymous": {}}
    for role in ROLES[1:]:
        out[role] = token(client, world.users[role])
    return out


def _fresh(session, world, action: str) -> int:
    lon, lat = (X0 + 0.025, Y0 + 0.005) if action == "assign" else CENTRE
    body = {"lon": lon, "lat": lat, "category": "elderly_care", "text": f"{action} test"}
    rid = submit_request(session=session, intake=parse_intake(body)).request_id
    if action in STATE:
        forge_status(
            session,
            "UPDATE requests SET status = :s, assignee_id = :v WHERE id = :i",
            {"s": STATE[action], "v": world.volunteers["near"].id, "i": rid},
        )
    return rid


@pytest.mark.parametrize("action", sorted(ALLOWED))
def test_action_by_every_role(client, session, world, headers, action) -> None:
    other = _fresh(session, world, "other")
    bodies = {
        "resolve": {"note": "done"},
        "reply": {"note": "已联系物业"},
        "give_back": {"reason": "今天走不开"},
        "reject": {"reason": "not ours"},
        "escalate": {"reason": "需上级协调"},
        "mark_duplicate": {"duplicate_of": other, "reason": "同一处问题"},
        # a volunteer of the grid's community: in every allowed role's scope (a grid leader
        # hands work to no other grid)
        "reassign": {"volunteer_id": world.volunteers["far"].id, "reason": "他熟悉情况"},
        "assign": {"grid_code": world.mini.west.code},
    }
    for role in ROLES:
        rid = _fresh(session, world, action)
        before = _snapshot(session)
        resp = client.post(
            f"/api/v1/requests/{rid}/{action}", headers=headers[role], json=bodies.get(action, {})
        )
        if role in ALLOWED[action]:
            assert resp.status_code == 200, (action, role, resp.get_json())
            assert _snapshot(session) != before
        else:
            expected = 401 if role == "anonymous" else 403
            assert resp.status_code == expected, (action, role, resp.get_json())
            assert resp.get_json()["error"]["code"] in ("unauthorized", "forbidden", "not_offered")
            assert _snapshot(session) == before, (action, role)


def test_reading_and_metrics_by_role(client, session, world, headers) -> None:
    rid = _fresh(session, world, "read")
    readers = STAFF_ALL | {"planner", "volunteer", "volunteer2"}
    for role in ROLES:
        resp = client.get(f"/api/v1/requests/{rid}", headers=headers[role])
        expected = 200 if role in readers else 401 if role == "anonymous" else 403
        assert resp.status_code == expected, (role, resp.get_json())
        m = client.get("/api/v1/metrics?level=grid", headers=headers[role])
        expected = (
            200
            if role in STAFF_ALL | {"planner", "other_leader"}
            else 401
            if role == "anonymous"
            else 403
        )
        assert m.status_code == expected, role
    # a grid's leader sees metrics of their own grid only
    rows = client.get("/api/v1/metrics?level=grid", headers=headers["other_leader"]).get_json()
    assert {r["code"] for r in rows["rows"]} <= {world.mini.east.code}


def test_ticket_actions_need_only_the_ticket(client, session, world) -> None:
    before = _snapshot(session)
    for path in ("rate", "withdraw"):
        resp = client.post(f"/api/v1/tickets/{'f' * 32}/{path}", json={"rating": 5})
        assert resp.status_code == 404
    assert _snapshot(session) == before
