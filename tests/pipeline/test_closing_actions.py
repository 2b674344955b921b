"""Actions that close the loop (issue 14, slice 2): resolve by the owning level from
``assigned``, reply, decline_offer and give_back — each one row of the action table."""

from __future__ import annotations

from sqlalchemy import text

from tests.factories import token
from tests.pipeline.conftest import request_events, stored_offers, submit


def _post(client, rid, action, headers, body=None):
    return client.post(f"/api/v1/requests/{rid}/{action}", headers=headers, json=body or {})


def test_the_grid_leader_resolves_an_assigned_request_without_a_volunteer(
    client, session, world
) -> None:
    rid = submit(client).get_json()["id"]
    leader = token(client, world.users["grid_leader"])
    r = _post(client, rid, "resolve", leader, {"note": "网格员已上门处理"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "resolved" and r.get_json()["assignee"] is None
    assert request_events(session, rid)[-1][:3] == ("resolve", "assigned", "resolved")
    # a volunteer who was only offered cannot close it
    rid2 = submit(client).get_json()["id"]
    vol = token(client, world.users["volunteer"])
    assert _post(client, rid2, "resolve", vol, {"note": "x"}).status_code == 403


def test_a_reply_keeps_the_state_and_reaches_the_ticket(client, session, world) -> None:
    created = submit(client).get_json()
    member = token(client, world.users["grid_member"])
    r = _post(client, created["id"], "reply", member, {"note": "已联系物业，明天上午维修"})
    assert r.status_code == 200 and r.get_json()["status"] == "assigned"
    assert _post(client, created["id"], "reply", member, {"note": "   "}).status_code == 400
    ticket = client.get(f"/api/v1/tickets/{created['ticket']}").get_json()
    assert ticket["timeline"][-1]["action"] == "reply"
    assert ticket["timeline"][-1]["note"] == "已联系物业，明天上午维修"


def test_a_declined_offer_is_withdrawn_and_cannot_be_claimed(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    near = world.volunteers["near"].id
    assert near in [o.volunteer_id for o in stored_offers(session, rid)]
    points = session.scalar(text("SELECT points FROM volunteers WHERE id = :v"), {"v": near})
    vol = token(client, world.users["volunteer"])
    r = _post(client, rid, "decline_offer", vol, {"note": "这周出差"})
    assert r.status_code == 200, r.get_json()
    assert near not in [o.volunteer_id for o in stored_offers(session, rid)]
    assert session.scalar(text("SELECT points FROM volunteers WHERE id = :v"), {"v": near}) == (
        points
    )
    again = _post(client, rid, "claim", vol)
    assert again.status_code == 403 and again.get_json()["error"]["code"] == "not_offered"
    other = token(client, world.users["volunteer2"])
    assert _post(client, rid, "claim", other).status_code == 200


def test_give_back_returns_the_work_and_the_load_with_a_reason(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    near = world.volunteers["near"].id
    vol = token(client, world.users["volunteer"])
    assert _post(client, rid, "claim", vol).status_code == 200
    load = session.scalar(text("SELECT active_load FROM volunteers WHERE id = :v"), {"v": near})
    assert _post(client, rid, "give_back", vol).status_code == 400  # a reason is required
    r = _post(client, rid, "give_back", vol, {"reason": "家里有急事"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "assigned" and r.get_json()["assignee"] is None
    after = session.scalar(text("SELECT active_load FROM volunteers WHERE id = :v"), {"v": near})
    assert after == load - 1
    kinds = (
        session.execute(
            text(
                "SELECT n.kind FROM notifications n JOIN request_events e ON e.id = n.event_id"
                " WHERE e.request_id = :r AND e.action = 'give_back'"
            ),
            {"r": rid},
        )
        .scalars()
        .all()
    )
    assert kinds and set(kinds) == {"given_back"}
    # after resolving, it can no longer be given back
    assert _post(client, rid, "claim", vol).status_code == 200
    assert _post(client, rid, "resolve", vol, {"note": "好了"}).status_code == 200
    late = _post(client, rid, "give_back", vol, {"reason": "x"})
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "illegal_transition"
