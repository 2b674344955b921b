"""Access ends with its reason (issue 14, item 3; DESIGN §3): an offer lapses when someone
claims, when the request leaves its level and when it closes; the assignee's unmasked view
ends some days after closure; an offered volunteer sees no one else; handoff targets lie in
the actor's scope (and fit the work, or the leader overrides); masking is decided per role
binding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import text

from layers.areas.models import Area
from layers.auth.permissions import Binding, Principal, grant_for
from layers.auth.service import bind_role
from layers.grids.models import Grid
from layers.grids.repo import current_generation
from layers.requests.access import Access, pii_for
from layers.volunteers.dashboard import volunteer_dashboard
from layers.volunteers.service import DAYS
from tests.factories import X0, Y0, ewkt, token, user
from tests.pipeline.conftest import add_volunteer, request_events, stored_offers, submit

FULL, MASKED = "13812345678", "138****5678"
CONTACT = {"name": "王小明", "phone": FULL}
EAST = (X0 + 0.015, Y0 + 0.005)
TABLES = ("requests", "request_events", "request_offers", "notifications", "volunteers")


def _post(client, rid, action, headers, body=None):
    return client.post(f"/api/v1/requests/{rid}/{action}", headers=headers, json=body or {})


def _code(resp) -> str:
    return resp.get_json()["error"]["code"]


def _snapshot(session) -> tuple[str, ...]:
    return tuple(
        session.scalar(
            text(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {t} t")
        )
        for t in TABLES
    )


def _listed(client, headers) -> set[int]:
    return {r["id"] for r in client.get("/api/v1/requests", headers=headers).get_json()["requests"]}


def _dashboard_offers(session, vol) -> set[int]:
    return {r["id"] for r in volunteer_dashboard(session=session, user_id=vol.user_id)["offers"]}


def _other_district(session) -> tuple[Area, Grid]:
    """A district one degree east (its community and one live grid), nowhere near the mini's."""
    outline = MultiPolygon([box(X0 + 1, Y0, X0 + 1.01, Y0 + 0.01)])
    parent = None
    for level, code in (("district", "990066"), ("street", "990066001"), ("community", "")):
        code = code or "990066001001"
        area = Area(code=code, name=f"外区{level}", level=level, geom=ewkt(outline))
        area.parent_id = parent.id if parent else None
        session.add(area)
        session.flush()
        parent = area
    grid = Grid(
        code="990066001001001",
        name="外区网格",
        community_id=parent.id,
        households=100,
        generation_low=current_generation(session),
        geom=ewkt(outline),
    )
    session.add(grid)
    session.flush()
    return parent, grid


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


# -- 4. handoff targets in the actor's scope --------------------------------------------------------
def _refused(client, session, rid, headers, action, body, status, code) -> None:
    before = _snapshot(session)
    r = _post(client, rid, action, headers, body)
    assert (r.status_code, _code(r)) == (status, code), r.get_json()
    assert _snapshot(session) == before  # nothing half-written


def test_reassign_to_a_grid_must_be_in_scope_and_elsewhere(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    leader = token(client, world.users["grid_leader"])
    staff = token(client, world.users["community_staff"])
    east = {"grid_code": world.mini.east.code, "reason": "属东网格"}
    west = {"grid_code": world.mini.west.code, "reason": "本网格"}
    _refused(client, session, rid, leader, "reassign", east, 422, "grid_out_of_scope")
    _refused(client, session, rid, staff, "reassign", west, 409, "same_target")
    # a grid of another district is out of every staff scope below the admin
    _, far = _other_district(session)
    body = {"grid_code": far.code, "reason": "x"}
    street = token(client, world.users["street_staff"])
    _refused(client, session, rid, street, "reassign", body, 422, "grid_out_of_scope")
    # escalated to the community, sending it back down to the same grid is a real hand-off
    assert _post(client, rid, "escalate", leader, {"reason": "需协调"}).status_code == 200
    r = _post(client, rid, "reassign", staff, west)
    assert r.status_code == 200 and r.get_json()["owner_level"] == "grid"


def test_reassign_to_a_volunteer_must_be_in_scope(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    outsider = add_volunteer(session, world.gap, "赵外社", X0 + 0.025, Y0 + 0.005)
    body = {"volunteer_id": outsider.id, "reason": "他有空"}
    for role in ("grid_leader", "community_staff"):
        headers = token(client, world.users[role])
        _refused(client, session, rid, headers, "reassign", body, 422, "volunteer_out_of_scope")
    # the street's staff reach both communities
    street = token(client, world.users["street_staff"])
    assert _post(client, rid, "reassign", street, body).status_code == 200
    _refused(client, session, rid, street, "reassign", body, 409, "same_target")
    # the assignee is the same target too
    vol = world.volunteers["near"]
    staff = token(client, world.users["community_staff"])
    r = _post(client, rid, "reassign", staff, {"volunteer_id": vol.id, "reason": "熟"})
    assert r.status_code == 200, r.get_json()
    assert _post(client, rid, "claim", token(client, world.users["volunteer"])).status_code == 200
    body = {"volunteer_id": vol.id, "reason": "再派"}
    _refused(client, session, rid, staff, "reassign", body, 409, "same_target")


def _unfit(session, world, kind: str):
    shape = {
        "skill": {"skills": ("housing",)},
        "availability": {"availability": {d: [] for d in DAYS}},  # no window on any day
        "load_limit": {"load_limit": 1, "active_load": 1},
    }[kind]
    return add_volunteer(
        session, world.mini.community, f"不合适{kind}", X0 + 0.005, Y0 + 0.006, **shape
    )


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("skill", 422, "volunteer_lacks_skill"),
        ("availability", 409, "volunteer_unavailable"),
        ("load_limit", 409, "volunteer_at_load_limit"),
    ],
)
def test_an_unfit_volunteer_needs_the_leaders_override(
    client, session, world, kind, status, code
) -> None:
    rid = submit(client).get_json()["id"]
    vol = _unfit(session, world, kind)
    leader = token(client, world.users["grid_leader"])
    body = {"volunteer_id": vol.id, "reason": "只有他熟悉这户"}
    _refused(client, session, rid, leader, "reassign", body, status, code)
    r = _post(client, rid, "reassign", leader, {**body, "override": True})
    assert r.status_code == 200, r.get_json()
    assert [o["volunteer_id"] for o in r.get_json()["offers"]] == [vol.id]
    event = session.execute(
        text(
            "SELECT note, data FROM request_events WHERE request_id = :r ORDER BY id DESC LIMIT 1"
        ),
        {"r": rid},
    ).one()
    assert event.note == "只有他熟悉这户"
    assert event.data["override"] == {"waived": [kind]}


def test_an_overridden_load_limit_lets_the_volunteer_claim(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    full = add_volunteer(
        session,
        world.mini.community,
        "满负荷",
        X0 + 0.005,
        Y0 + 0.006,
        username="pl_full",
        load_limit=1,
        active_load=1,
    )
    leader = token(client, world.users["grid_leader"])
    body = {"volunteer_id": full.id, "reason": "老住户点名要他", "override": True}
    assert _post(client, rid, "reassign", leader, body).status_code == 200
    r = _post(client, rid, "claim", token(client, "pl_full"))
    assert r.status_code == 200, r.get_json()
    load = session.scalar(text("SELECT active_load FROM volunteers WHERE id = :v"), {"v": full.id})
    assert load == 2
    # without an override, a full volunteer's claim is still refused
    rid2 = submit(client).get_json()["id"]
    session.execute(
        text("UPDATE volunteers SET load_limit = active_load WHERE id = :v"),
        {"v": world.volunteers["mid"].id},
    )
    late = _post(client, rid2, "claim", token(client, world.users["volunteer2"]))
    assert late.status_code == 409 and _code(late) == "load_limit_reached"


def test_a_duplicate_points_to_a_live_request_in_scope_and_district(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    leader = token(client, world.users["grid_leader"])
    admin = token(client, world.users["admin"])

    def body(original: int) -> dict:
        return {"duplicate_of": original, "reason": "同一问题"}

    for how in ("resolve", "reject", "withdraw", "mark_duplicate"):
        created = submit(client).get_json()
        _close_by(client, world, how, created)
        if how == "resolve":  # rated, it closes
            r = client.post(f"/api/v1/tickets/{created['ticket']}/rate", json={"rating": 4})
            assert r.get_json()["status"] == "closed"
        _refused(
            client,
            session,
            rid,
            leader,
            "mark_duplicate",
            body(created["id"]),
            422,
            "invalid_duplicate_target",
        )
    east = submit(client, lon=EAST[0], lat=EAST[1]).get_json()["id"]  # not the west leader's
    _refused(
        client,
        session,
        rid,
        leader,
        "mark_duplicate",
        body(east),
        422,
        "invalid_duplicate_target",
    )
    _refused(
        client,
        session,
        rid,
        leader,
        "mark_duplicate",
        body(rid),
        422,
        "invalid_duplicate_target",
    )
    # another district: refused even to the admin, who reaches both
    community, grid = _other_district(session)
    far = submit(client).get_json()["id"]
    session.execute(
        text("UPDATE requests SET community_id = :c, grid_id = :g WHERE id = :r"),
        {"c": community.id, "g": grid.id, "r": far},
    )
    before = _snapshot(session)
    r = _post(client, rid, "mark_duplicate", admin, body(far))
    assert r.status_code == 422 and r.get_json()["error"]["details"]["reason"] == "other_district"
    assert _snapshot(session) == before
    # a resolved request of the same grid is a fine original (only ended-undone ones are not)
    original = submit(client).get_json()["id"]
    _close_by(client, world, "resolve", {"id": original})
    r = _post(client, rid, "mark_duplicate", leader, body(original))
    assert r.status_code == 200, r.get_json()
    assert request_events(session, rid)[-1][:3] == ("mark_duplicate", "assigned", "duplicate")


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
