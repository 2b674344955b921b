"""Access ends with its reason (issue 14, item 3; DESIGN §3): an offer lapses when someone
claims, when the request leaves its level and when it closes; the assignee's unmasked view
ends some days after closure; an offered volunteer sees no one else; handoff targets lie in
the actor's scope (and fit the work, or the leader overrides); masking is decided per role
binding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from layers.auth.permissions import Binding, Principal, grant_for
from layers.auth.service import bind_role
from layers.requests.access import Access, pii_for
from layers.volunteers.dashboard import volunteer_dashboard
from tests.factories import X0, Y0, token, user
from tests.pipeline.conftest import stored_offers, submit

FULL, MASKED = "13812345678", "138****5678"
CONTACT = {"name": "王小明", "phone": FULL}
EAST = (X0 + 0.015, Y0 + 0.005)


def _post(client, rid, action, headers, body=None):
    return client.post(f"/api/v1/requests/{rid}/{action}", headers=headers, json=body or {})


def _code(resp) -> str:
    return resp.get_json()["error"]["code"]


def _listed(client, headers) -> set[int]:
    return {r["id"] for r in client.get("/api/v1/requests", headers=headers).get_json()["requests"]}


def _dashboard_offers(session, vol) -> set[int]:
    return {r["id"] for r in volunteer_dashboard(session=session, user_id=vol.user_id)["offers"]}


# -- 1. an offer lapses with its reason -----------------------------------------------------------
def test_an_offer_lapses_when_someone_claims(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    near, mid = world.volunteers["near"], world.volunteers["mid"]
    other = token(client, world.users["volunteer2"])  # mid: offered too
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 200
    assert rid in _listed(client, other) and rid in _dashboard_offers(session, mid)
    assert _post(client, rid, "claim", token(client, world.users["volunteer"])).status_code == 200
    # mid's offer row is kept (history) but gives nothing now
    assert mid.id in [o.volunteer_id for o in stored_offers(session, rid)]
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 403
    late = _post(client, rid, "claim", other)
    assert late.status_code == 409 and _code(late) == "already_claimed"
    declined = _post(client, rid, "decline_offer", other)
    assert declined.status_code == 403 and _code(declined) == "offer_lapsed"
    assert rid not in _listed(client, other) and rid not in _dashboard_offers(session, mid)
    # given back, the request waits at the grid again: the same offers stand again
    mine = token(client, world.users["volunteer"])
    assert _post(client, rid, "give_back", mine, {"reason": "临时出差"}).status_code == 200
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 200
    assert rid in _dashboard_offers(session, mid) and rid in _dashboard_offers(session, near)


def test_an_offer_lapses_when_the_request_leaves_the_grid_level(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    mid = world.volunteers["mid"]
    offered = sorted(o.volunteer_id for o in stored_offers(session, rid))
    assert mid.id in offered
    leader = token(client, world.users["grid_leader"])
    assert _post(client, rid, "escalate", leader, {"reason": "需社区协调"}).status_code == 200
    other = token(client, world.users["volunteer2"])
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 403
    claim = _post(client, rid, "claim", other)
    assert claim.status_code == 403 and _code(claim) == "not_offered"
    assert rid not in _listed(client, other) and rid not in _dashboard_offers(session, mid)
    # the escalation's event keeps who had been offered
    data = session.scalar(
        text(
            "SELECT data FROM request_events WHERE request_id = :r AND action = 'escalate'"
            " ORDER BY id DESC LIMIT 1"
        ),
        {"r": rid},
    )
    assert data["offers_lapsed"] == offered
    # a volunteer the community itself picks is offered at the community's level
    staff = token(client, world.users["community_staff"])
    body = {"volunteer_id": mid.id, "reason": "社区指派"}
    assert _post(client, rid, "reassign", staff, body).status_code == 200
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 200
    assert _post(client, rid, "claim", other).status_code == 200


def _close_by(client, world, how: str, created: dict) -> None:
    leader = token(client, world.users["grid_leader"])
    rid = created["id"]
    if how == "resolve":
        r = _post(client, rid, "resolve", leader, {"note": "网格员已处理"})
    elif how == "reject":
        r = _post(client, rid, "reject", leader, {"reason": "不属实"})
    elif how == "mark_duplicate":
        original = submit(client).get_json()["id"]
        r = _post(client, rid, "mark_duplicate", leader, {"duplicate_of": original, "reason": "同"})
    else:
        r = client.post(f"/api/v1/tickets/{created['ticket']}/withdraw", json={})
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("how", ["resolve", "reject", "mark_duplicate", "withdraw"])
def test_an_offer_lapses_when_the_request_closes(client, session, world, how) -> None:
    created = submit(client).get_json()
    rid = created["id"]
    _close_by(client, world, how, created)
    other = token(client, world.users["volunteer2"])
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 403
    claim = _post(client, rid, "claim", other)
    assert claim.status_code == 403 and _code(claim) == "offer_lapsed"
    assert claim.get_json()["error"]["details"]["reason"] == "closed"
    assert rid not in _listed(client, other)
    assert rid not in _dashboard_offers(session, world.volunteers["mid"])


# -- 2. the assignee's unmasked view ends after closure ---------------------------------------------
def _closed_by_near(client, world) -> int:
    created = submit(client, contact=CONTACT).get_json()
    rid = created["id"]
    vol = token(client, world.users["volunteer"])
    assert _post(client, rid, "claim", vol).status_code == 200
    assert _post(client, rid, "resolve", vol, {"note": "换了灯泡"}).status_code == 200
    r = client.post(f"/api/v1/tickets/{created['ticket']}/rate", json={"rating": 5})
    assert r.get_json()["status"] == "closed"
    return rid


def _phones(client, headers, rid) -> tuple[str, str]:
    detail = client.get(f"/api/v1/requests/{rid}", headers=headers)
    assert detail.status_code == 200, detail.get_json()
    rows = client.get("/api/v1/requests", headers=headers).get_json()["requests"]
    (row,) = [r for r in rows if r["id"] == rid]
    return detail.get_json()["contact"]["phone"], row["contact"]["phone"]


def test_the_assignee_sees_the_contact_until_seven_days_after_closure(
    app, client, session, world
) -> None:
    rid = _closed_by_near(client, world)
    vol = token(client, world.users["volunteer"])
    assert _phones(client, vol, rid) == (FULL, FULL)
    session.execute(
        text("UPDATE requests SET closed_at = :t WHERE id = :r"),
        {"t": datetime.now(UTC) - timedelta(days=6, hours=23), "r": rid},
    )
    assert _phones(client, vol, rid) == (FULL, FULL)
    session.execute(
        text("UPDATE requests SET closed_at = :t WHERE id = :r"),
        {"t": datetime.now(UTC) - timedelta(days=7, minutes=1), "r": rid},
    )
    # still their own work history, masked
    assert _phones(client, vol, rid) == (MASKED, MASKED)
    detail = client.get(f"/api/v1/requests/{rid}", headers=vol).get_json()
    assert detail["assignee"]["volunteer_id"] == world.volunteers["near"].id
    # staff whose role sees names are not bound by it
    leader = token(client, world.users["grid_leader"])
    assert client.get(f"/api/v1/requests/{rid}", headers=leader).get_json()["contact"] == CONTACT
    # configurable: the app's setting decides
    app.config["MINQING"] = app.config["MINQING"].with_(assignee_pii_days=30.0)
    assert _phones(client, vol, rid) == (FULL, FULL)


def test_pii_for_reads_the_closure_and_the_window() -> None:
    now = datetime(2025, 5, 1, tzinfo=UTC)
    me = Access(staff=False, volunteer_id=7, offered=False, assignee=True)
    assert pii_for(me, closed_at=None, now=now)
    assert pii_for(me, closed_at=now - timedelta(days=6), now=now)
    assert not pii_for(me, closed_at=now - timedelta(days=7), now=now)
    assert pii_for(me, closed_at=now - timedelta(days=7), now=now, assignee_pii_days=8)
    offered = Access(staff=False, volunteer_id=7, offered=True, assignee=False)
    assert not pii_for(offered, closed_at=None, now=now)
    staff = Access(staff=True, volunteer_id=None, offered=False, assignee=False, staff_pii=True)
    assert pii_for(staff, closed_at=now - timedelta(days=400), now=now)


# -- 3. an offered volunteer sees no one else ------------------------------------------------------
def test_an_offered_volunteer_sees_only_their_own_offer(client, session, world) -> None:
    created = submit(client, contact=CONTACT).get_json()
    rid = created["id"]
    vol = token(client, world.users["volunteer"])
    assert _post(client, rid, "claim", vol).status_code == 200
    assert _post(client, rid, "resolve", vol, {"note": "好了"}).status_code == 200
    r = client.post(
        f"/api/v1/tickets/{created['ticket']}/rate", json={"rating": 1, "comment": "张师傅态度差"}
    )
    assert r.get_json()["status"] == "assigned"  # reopened: offered again
    member = token(client, world.users["grid_member"])
    assert _post(client, rid, "reply", member, {"note": "已重新派单"}).status_code == 200
    other = token(client, world.users["volunteer2"])
    seen = client.get(f"/api/v1/requests/{rid}", headers=other).get_json()
    assert [o["volunteer_id"] for o in seen["offers"]] == [world.volunteers["mid"].id]
    assert seen["rating_comment"] is None and seen["assignee"] is None
    assert all("actor" not in e for e in seen["timeline"])
    assert seen["contact"]["phone"] == MASKED
    # staff see everyone and who did what
    leader = client.get(
        f"/api/v1/requests/{rid}", headers=token(client, world.users["grid_leader"])
    )
    full = leader.get_json()
    assert len(full["offers"]) == 3 and full["rating_comment"] == "张师傅态度差"
    assert {e["actor"] for e in full["timeline"]} >= {world.users["grid_member"], "pl_vol"}


# -- 5. masking is decided per role binding ---------------------------------------------------------
def test_a_grant_remembers_which_bindings_see_names(world) -> None:
    mini = world.mini
    principal = Principal(
        user_id=1,
        bindings=(
            Binding("community_staff", area_id=world.gap.id),
            Binding("grid_member", grid_code=mini.east.code),
            Binding("grid_leader", grid_code=mini.west.code),
        ),
    )
    grant = grant_for("requests.read", principal)
    assert grant is not None and not grant.pii
    assert grant.pii_area_ids == {world.gap.id} and grant.pii_grid_codes == {mini.west.code}
    assert grant.unmasked().grid_codes == {mini.west.code}
    assert grant.grid_codes == {mini.west.code, mini.east.code}
    admin = grant_for("requests.read", Principal(user_id=2, bindings=(Binding("admin"),)))
    assert admin is not None and admin.pii and admin.unmasked().everything


def test_names_show_only_inside_the_binding_that_grants_them(client, session, world) -> None:
    mini = world.mini
    user(session, "pl_two_hats", "grid_leader", grid=mini.west.code)
    user(session, "pl_planner_staff", "planner")
    bind_role(session=session, username="pl_two_hats", role="grid_member", grid_code=mini.east.code)
    bind_role(
        session=session,
        username="pl_planner_staff",
        role="community_staff",
        area_code=world.gap.code,
    )
    west = submit(client, contact=CONTACT).get_json()["id"]
    east = submit(client, lon=EAST[0], lat=EAST[1], contact=CONTACT).get_json()["id"]
    gap = submit(client, lon=X0 + 0.025, lat=Y0 + 0.005, contact=CONTACT).get_json()["id"]
    expected = {
        # grid_leader (sees names) in the west grid, grid_member (masked) in the east grid
        "pl_two_hats": {west: FULL, east: MASKED},
        # planner everywhere (masked), community staff of the gap community (sees names)
        "pl_planner_staff": {west: MASKED, east: MASKED, gap: FULL},
    }
    for username, phones in expected.items():
        headers = token(client, username)
        rows = client.get("/api/v1/requests", headers=headers).get_json()["requests"]
        listed = {r["id"]: r["contact"]["phone"] for r in rows if r["id"] in phones}
        assert listed == phones, username
        for rid, phone in phones.items():
            detail = client.get(f"/api/v1/requests/{rid}", headers=headers).get_json()
            assert detail["contact"]["phone"] == phone, (username, rid)
        # the map layer masks row by row in the same way
        bbox = f"{X0},{Y0},{X0 + 0.03},{Y0 + 0.01}"
        fc = client.get(f"/api/v1/layers/requests?bbox={bbox}", headers=headers).get_json()
        layer = {
            f["properties"]["number"]: f["properties"]["contact_phone"] for f in fc["features"]
        }
        numbers = {
            rid: session.scalar(text("SELECT number FROM requests WHERE id = :i"), {"i": rid})
            for rid in phones
        }
        assert {rid: layer[numbers[rid]] for rid in phones} == phones, username
