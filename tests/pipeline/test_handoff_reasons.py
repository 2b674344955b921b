"""Handoffs need a reason (DESIGN §3): reject, mark_duplicate, reassign, escalate and give_back
refuse a missing or whitespace-only reason with 400 and change nothing; the reason given is
the timeline's note."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.factories import token
from tests.pipeline.conftest import request_events, submit


def _bodies(world, other: int) -> dict[str, dict]:
    return {
        "reject": {},
        "mark_duplicate": {"duplicate_of": other},
        "reassign": {"grid_code": world.mini.east.code},
        "escalate": {},
    }


@pytest.mark.parametrize("action", ["reject", "mark_duplicate", "reassign", "escalate"])
def test_a_handoff_without_a_reason_is_refused(client, session, world, action) -> None:
    other = submit(client).get_json()["id"]
    rid = submit(client).get_json()["id"]
    leader = token(client, world.users["community_staff"])  # both grids are in its scope
    body = _bodies(world, other)[action]
    before = request_events(session, rid)
    for reason in (None, "", "   \n\t"):
        sent = body if reason is None else {**body, "reason": reason}
        r = client.post(f"/api/v1/requests/{rid}/{action}", headers=leader, json=sent)
        assert r.status_code == 400, (action, reason, r.get_json())
        error = r.get_json()["error"]
        assert error["code"] == "missing_field" and error["details"]["field"] == "reason"
    assert request_events(session, rid) == before
    r = client.post(
        f"/api/v1/requests/{rid}/{action}", headers=leader, json={**body, "reason": " 理由 "}
    )
    assert r.status_code == 200, r.get_json()
    note = session.scalar(
        text("SELECT note FROM request_events WHERE request_id = :r ORDER BY id DESC LIMIT 1"),
        {"r": rid},
    )
    assert note == "理由"


def test_give_back_needs_a_reason(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    vol = token(client, world.users["volunteer"])
    assert client.post(f"/api/v1/requests/{rid}/claim", headers=vol).status_code == 200
    r = client.post(f"/api/v1/requests/{rid}/give_back", headers=vol, json={"reason": "  "})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "missing_field"
    r = client.post(f"/api/v1/requests/{rid}/give_back", headers=vol, json={"reason": "临时出差"})
    assert r.status_code == 200 and r.get_json()["status"] == "assigned"
