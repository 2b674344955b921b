"""Which answer comes first when several are due: the order the runner keeps for every action
(body 400 → scope 403 → the action's lookups 422 / 409 → legality 409), as before the table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from layers.errors import Forbidden
from layers.pipeline.runner import run
from layers.requests.access import Actor
from layers.requests.entity import REQUESTS, load_request
from tests.factories import token
from tests.pipeline.conftest import submit

UP = {"reason": "需上级协调"}


def _code(resp) -> str:
    return resp.get_json()["error"]["code"]


def test_a_malformed_body_is_400_even_for_an_unknown_request(client, world) -> None:
    admin = token(client, world.users["admin"])
    r = client.post("/api/v1/requests/987654321/reassign", headers=admin, json={})
    assert r.status_code == 400 and _code(r) == "missing_field"


def test_an_unknown_grid_is_named_before_the_transition_is_tried(client, world) -> None:
    admin = token(client, world.users["admin"])
    rid = submit(client).get_json()["id"]  # assigned: assign is not legal from here
    r = client.post(f"/api/v1/requests/{rid}/assign", headers=admin, json={"grid_code": "0" * 15})
    assert r.status_code == 422 and _code(r) == "unknown_grid"
    r = client.post(f"/api/v1/requests/{rid}/assign", headers=admin, json={})
    assert r.status_code == 400 and _code(r) == "missing_field"


def test_reassigning_to_the_assignee_or_a_full_volunteer_is_refused(client, session, world) -> None:
    near, mid = world.volunteers["near"], world.volunteers["mid"]
    rid = submit(client).get_json()["id"]
    r = client.post(
        f"/api/v1/requests/{rid}/claim", headers=token(client, world.users["volunteer"])
    )
    assert r.status_code == 200, r.get_json()
    session.execute(
        text("UPDATE volunteers SET load_limit = active_load WHERE id IN (:a, :b)"),
        {"a": near.id, "b": mid.id},
    )
    leader = token(client, world.users["grid_leader"])
    r = client.post(
        f"/api/v1/requests/{rid}/reassign",
        headers=leader,
        json={"volunteer_id": near.id, "reason": "熟悉情况"},
    )
    assert r.status_code == 409 and _code(r) == "same_target"  # the work is already theirs
    r = client.post(
        f"/api/v1/requests/{rid}/reassign",
        headers=leader,
        json={"volunteer_id": mid.id, "reason": "熟悉情况"},
    )
    assert r.status_code == 409 and _code(r) == "volunteer_at_load_limit"
    detail = client.get(f"/api/v1/requests/{rid}", headers=leader).get_json()
    assert detail["status"] == "claimed" and detail["assignee"]["volunteer_id"] == near.id


def test_escalating_past_the_district_says_so_even_when_closed(client, world) -> None:
    admin = token(client, world.users["admin"])
    rid = submit(client).get_json()["id"]
    for _ in range(3):
        r = client.post(f"/api/v1/requests/{rid}/escalate", headers=admin, json=UP)
        assert r.status_code == 200
    r = client.post(f"/api/v1/requests/{rid}/reject", headers=admin, json={"reason": "重复"})
    assert r.get_json()["owner_level"] == "district"
    r = client.post(f"/api/v1/requests/{rid}/escalate", headers=admin, json=UP)
    assert r.status_code == 409 and _code(r) == "cannot_escalate"


def test_a_ticket_reaches_its_own_request_only(client, session, world) -> None:
    first = submit(client).get_json()
    second = submit(client).get_json()
    other = load_request(session, second["id"])
    with pytest.raises(Forbidden):
        run(
            REQUESTS,
            session,
            other,
            "withdraw",
            actor=Actor.resident(first["id"]),
            now=datetime.now(UTC),
        )
    r = client.post(f"/api/v1/tickets/{first['ticket']}/withdraw")
    assert r.status_code == 200 and r.get_json()["status"] == "withdrawn"
