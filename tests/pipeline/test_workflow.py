"""Workflow actions through the transition table, events, points, masking, the deadline job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from layers.requests.rules import escalation_deadline_hours, points_for
from layers.requests.service import run_escalations
from layers.requests.workflow import allowed_actions
from tests.factories import X0, Y0, forge_status, token
from tests.pipeline.conftest import request_events, submit

UP = {"reason": "需上级协调"}


def _vol(session, vid: int):
    return session.execute(
        text("SELECT active_load, points FROM volunteers WHERE id = :i"), {"i": vid}
    ).one()


def test_full_cycle_claim_start_resolve_rate_closes(client, session, world) -> None:
    created = submit(client, contact={"name": "王小明", "phone": "13812345678"}).get_json()
    rid, ticket = created["id"], created["ticket"]
    vol = token(client, world.users["volunteer"])
    near = world.volunteers["near"].id
    r = client.post(f"/api/v1/requests/{rid}/claim", headers=vol)
    assert r.status_code == 200, r.get_json()
    detail = r.get_json()
    assert detail["status"] == "claimed" and detail["assignee"]["volunteer_id"] == near
    assert detail["contact"] == {"name": "王小明", "phone": "13812345678"}  # the assignee sees
    assert _vol(session, near) == (1, points_for("claim"))
    assert client.post(f"/api/v1/requests/{rid}/start", headers=vol).status_code == 200
    r = client.post(f"/api/v1/requests/{rid}/resolve", headers=vol, json={"note": "换了灯泡"})
    assert r.status_code == 200 and r.get_json()["status"] == "resolved"
    assert _vol(session, near) == (0, points_for("claim") + points_for("resolve"))
    view = client.get(f"/api/v1/tickets/{ticket}").get_json()
    assert view["can_rate"] and view["contact"]["name"] == "王**"
    assert "actor" not in view["timeline"][0]
    r = client.post(f"/api/v1/tickets/{ticket}/rate", json={"rating": 5, "comment": "很好"})
    assert r.status_code == 200 and r.get_json()["status"] == "closed"
    assert _vol(session, near).points == sum(
        points_for(e) for e in ("claim", "resolve", "rating_5")
    )
    assert request_events(session, rid) == [
        ("submit", None, "submitted", "grid"),
        ("assign", "submitted", "assigned", "grid"),
        ("claim", "assigned", "claimed", "grid"),
        ("start", "claimed", "in_progress", "grid"),
        ("resolve", "in_progress", "resolved", "grid"),
        ("rate", "resolved", "rated", "grid"),
        ("close", "rated", "closed", "grid"),
    ]


def test_low_rating_reopens_automatically(client, session, world) -> None:
    created = submit(client).get_json()
    rid = created["id"]
    vol = token(client, world.users["volunteer"])
    client.post(f"/api/v1/requests/{rid}/claim", headers=vol)
    client.post(f"/api/v1/requests/{rid}/resolve", headers=vol, json={"note": "ok"})
    r = client.post(f"/api/v1/tickets/{created['ticket']}/rate", json={"rating": 2})
    assert r.status_code == 200 and r.get_json()["status"] == "assigned"
    row = session.execute(
        text("SELECT reopen_count, assignee_id, rating FROM requests WHERE id=:i"), {"i": rid}
    ).one()
    assert tuple(row) == (1, None, 2)
    assert request_events(session, rid)[-2:] == [
        ("rate", "resolved", "rated", "grid"),
        ("reopen", "rated", "assigned", "grid"),
    ]
    # the same volunteer may claim again
    assert client.post(f"/api/v1/requests/{rid}/claim", headers=vol).status_code == 200


def test_illegal_transition_names_the_allowed_actions(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    admin = token(client, world.users["admin"])
    r = client.post(f"/api/v1/requests/{rid}/start", headers=admin)
    assert r.status_code == 409
    err = r.get_json()["error"]
    assert err["code"] == "illegal_transition"
    assert err["details"]["allowed"] == allowed_actions("assigned")
    assert "claim" in err["details"]["allowed"] and "start" not in err["details"]["allowed"]
    # an unknown action is not a route
    assert client.post(f"/api/v1/requests/{rid}/explode", headers=admin).status_code == 404


def test_second_claim_is_already_claimed_and_not_offered_is_403(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    a = token(client, world.users["volunteer"])
    b = token(client, world.users["volunteer2"])
    assert client.post(f"/api/v1/requests/{rid}/claim", headers=a).status_code == 200
    r = client.post(f"/api/v1/requests/{rid}/claim", headers=b)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "already_claimed"
    # a request far east offers only the east volunteers: volunteer2 is not among them
    session.execute(
        text("UPDATE volunteers SET skills = '{housing}' WHERE id = :i"),
        {"i": world.volunteers["mid"].id},
    )
    rid2 = submit(client).get_json()["id"]
    r = client.post(f"/api/v1/requests/{rid2}/claim", headers=b)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "not_offered"


def test_withdraw_reject_and_mark_duplicate(client, session, world) -> None:
    staff = token(client, world.users["community_staff"])
    a = submit(client).get_json()
    vol = token(client, world.users["volunteer"])
    client.post(f"/api/v1/requests/{a['id']}/claim", headers=vol)
    r = client.post(f"/api/v1/tickets/{a['ticket']}/withdraw", json={"note": "已自行解决"})
    assert r.status_code == 200 and r.get_json()["status"] == "withdrawn"
    assert _vol(session, world.volunteers["near"].id).active_load == 0
    again = client.post(f"/api/v1/tickets/{a['ticket']}/withdraw")
    assert again.status_code == 409 and again.get_json()["error"]["details"]["allowed"] == []
    b = submit(client).get_json()
    r = client.post(f"/api/v1/requests/{b['id']}/reject", headers=staff, json={})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "missing_field"
    r = client.post(f"/api/v1/requests/{b['id']}/reject", headers=staff, json={"reason": "不属实"})
    assert r.get_json()["status"] == "rejected"
    c, d = submit(client).get_json(), submit(client).get_json()
    seen = client.get(f"/api/v1/requests/{d['id']}", headers=staff).get_json()
    assert c["id"] in [x["id"] for x in seen["possible_duplicates"]]
    r = client.post(
        f"/api/v1/requests/{d['id']}/mark_duplicate",
        headers=staff,
        json={"duplicate_of": c["number"], "reason": "同一处漏水"},
    )
    assert r.status_code == 200
    assert r.get_json()["status"] == "duplicate" and r.get_json()["duplicate_of"] == c["number"]


def test_reassign_to_volunteer_or_grid(client, session, world) -> None:
    leader = token(client, world.users["grid_leader"])
    rid = submit(client).get_json()["id"]
    far = world.volunteers["far"].id
    r = client.post(
        f"/api/v1/requests/{rid}/reassign",
        headers=leader,
        json={"volunteer_id": far, "reason": "他熟悉情况"},
    )
    assert r.status_code == 200, r.get_json()
    assert [o["volunteer_id"] for o in r.get_json()["offers"]] == [far]
    east = {"grid_code": world.mini.east.code, "reason": "在东网格"}
    r = client.post(f"/api/v1/requests/{rid}/reassign", headers=leader, json=east)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "grid_out_of_scope"
    staff = token(client, world.users["community_staff"])  # both grids are in their subtree
    r = client.post(f"/api/v1/requests/{rid}/reassign", headers=staff, json=east)
    assert r.status_code == 200, r.get_json()
    assert client.get(f"/api/v1/requests/{rid}", headers=leader).status_code == 403
    admin = token(client, world.users["admin"])
    detail = client.get(f"/api/v1/requests/{rid}", headers=admin).get_json()
    assert detail["grid"]["code"] == world.mini.east.code and detail["status"] == "assigned"
    assert [e["action"] for e in detail["timeline"]][-2:] == ["reassign", "reassign"]
    r = client.post(f"/api/v1/requests/{rid}/reassign", headers=leader, json={})
    assert r.status_code == 400


def test_escalation_chain_and_deadlines(client, session, world) -> None:
    """Each level hands up what it owns; once it went up, the level below reads it but no
    longer acts on it (the level above owns it now)."""
    rid = submit(client).get_json()["id"]
    hours = escalation_deadline_hours()
    chain = (
        ("grid_leader", "community"),
        ("community_staff", "street"),
        ("street_staff", "district"),
    )
    for who, level in chain:
        headers = token(client, world.users[who])
        t0 = datetime.now(UTC)
        r = client.post(f"/api/v1/requests/{rid}/escalate", headers=headers, json=UP)
        assert r.status_code == 200 and r.get_json()["owner_level"] == level
        deadline = datetime.fromisoformat(r.get_json()["deadline"])
        assert abs((deadline - t0) - timedelta(hours=hours[level])) < timedelta(seconds=30)
        again = client.post(f"/api/v1/requests/{rid}/escalate", headers=headers, json=UP)
        assert again.status_code == 403, again.get_json()  # not twice: it is not theirs now
        assert again.get_json()["error"]["code"] == "owned_by_another_level"
        seen = client.get(f"/api/v1/requests/{rid}", headers=headers)
        assert seen.status_code == 200 and seen.get_json()["allowed_actions"] == []
    admin = token(client, world.users["admin"])
    r = client.post(f"/api/v1/requests/{rid}/escalate", headers=admin, json=UP)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "cannot_escalate"


def test_triage_then_assign_by_community_staff(client, session, world) -> None:
    session.execute(
        text(
            "INSERT INTO role_bindings (user_id, role_code, area_id) SELECT id,"
            " 'community_staff', :a FROM users WHERE username = 'pl_community_staff'"
        ),
        {"a": world.gap.id},
    )
    staff = token(client, world.users["community_staff"])
    rid = submit(client, lon=X0 + 0.025, lat=Y0 + 0.005).get_json()["id"]
    r = client.post(
        f"/api/v1/requests/{rid}/assign", headers=staff, json={"grid_code": world.mini.east.code}
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "assigned" and r.get_json()["owner_level"] == "grid"


def test_deadline_job_escalates_once_and_auto_closes(client, session, world) -> None:
    overdue = submit(client).get_json()["id"]
    done = submit(client, category="housing").get_json()["id"]
    admin = token(client, world.users["admin"])
    forge_status(
        session,
        "UPDATE requests SET status = 'resolved', resolved_at = now() WHERE id = :i",
        {"i": done},
    )
    later = datetime.now(UTC) + timedelta(hours=49)  # elderly_care deadline is 48 h
    assert run_escalations(session=session, now=later)["escalated"] >= 1
    assert run_escalations(session=session, now=later)["escalated"] == 0  # idempotent
    level = session.scalar(text("SELECT owner_level FROM requests WHERE id=:i"), {"i": overdue})
    assert level == "community"
    much_later = datetime.now(UTC) + timedelta(days=8)
    out = run_escalations(session=session, now=much_later)
    assert out["auto_closed"] >= 1
    assert request_events(session, done)[-1] == ("auto_closed", "resolved", "closed", "grid")
    r = client.get(f"/api/v1/requests/{overdue}", headers=admin).get_json()
    assert [e["action"] for e in r["timeline"]].count("escalate") >= 2


def test_pii_visibility_by_role(client, session, world) -> None:
    rid = submit(client, contact={"name": "王小明", "phone": "13812345678"}).get_json()["id"]
    seen = {}
    for role in (
        "admin",
        "street_staff",
        "community_staff",
        "grid_leader",
        "grid_member",
        "planner",
        "volunteer",
    ):
        r = client.get(f"/api/v1/requests/{rid}", headers=token(client, world.users[role]))
        assert r.status_code == 200, (role, r.get_json())
        seen[role] = r.get_json()["contact"]["phone"]
    full, masked = "13812345678", "138****5678"
    assert seen == {
        "admin": full,
        "street_staff": full,
        "community_staff": full,
        "grid_leader": full,
        "grid_member": masked,
        "planner": masked,
        "volunteer": masked,
    }
    listed = client.get("/api/v1/requests", headers=token(client, world.users["grid_member"]))
    assert listed.get_json()["requests"][0]["contact"]["phone"] == masked
    # the other grid's leader sees neither the detail nor the row
    other = token(client, world.users["other_leader"])
    assert client.get(f"/api/v1/requests/{rid}", headers=other).status_code == 403
    assert client.get("/api/v1/requests", headers=other).get_json()["requests"] == []


def test_list_filters_and_paging(client, session, world) -> None:
    ids = [submit(client, lon=X0 + 0.001 * (i + 1)).get_json()["id"] for i in range(5)]
    east = submit(client, lon=X0 + 0.015, category="housing").get_json()["id"]
    admin = token(client, world.users["admin"])
    got, url = [], f"/api/v1/requests?limit=2&community={world.mini.community.code}"
    while url:
        page = client.get(url, headers=admin).get_json()
        assert page["numberReturned"] <= 2
        got += [r["id"] for r in page["requests"]]
        url = page["links"]["next"]
    assert got == sorted([*ids, east], reverse=True)
    q = client.get(f"/api/v1/requests?grid={world.mini.east.code}", headers=admin).get_json()
    assert [r["id"] for r in q["requests"]] == [east]
    q = client.get("/api/v1/requests?category=housing&status=assigned", headers=admin).get_json()
    assert [r["id"] for r in q["requests"] if r["id"] in [*ids, east]] == [east]
    bbox = f"{X0},{Y0},{X0 + 0.0025},{Y0 + 0.01}"
    q = client.get(f"/api/v1/requests?bbox={bbox}", headers=admin).get_json()
    assert sorted(r["id"] for r in q["requests"]) == ids[:2]
    q = client.get("/api/v1/requests?overdue=true", headers=admin).get_json()
    assert [r for r in q["requests"] if r["id"] in ids] == []
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    q = client.get("/api/v1/requests", headers=admin, query_string={"from": future}).get_json()
    assert q["requests"] == []
    assert client.get("/api/v1/requests?status=nope", headers=admin).status_code == 400
    assert client.get("/api/v1/requests?cursor=zzz", headers=admin).status_code == 400
