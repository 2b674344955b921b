"""Publish as generation N+1 in one transaction, re-home open requests, undo, stale drafts."""

from __future__ import annotations

from types import SimpleNamespace

from shapely.geometry import mapping, shape
from sqlalchemy import text

from geo.validation import UtmProjector
from tests.drafts.conftest import COMMUNITY, community_geom, live_grids, split_line_through
from tests.drafts.test_drafts_api import codes_of, edit, grids_of, open_draft
from tests.factories import forge_status, request_row, volunteer

NUMBERS_TO_CODES = (
    "SELECT r.number, g.code FROM requests r JOIN grids g ON g.id = r.grid_id"
    " WHERE r.number LIKE 'T-%'"
)
TARGET = "990000002001005"
NEW = "990000002001006"


def _split_draft(client, session, planner):
    doc = open_draft(client, planner)
    proj = UtmProjector(community_geom(session))
    line = split_line_through(live_grids(session)[TARGET][1], proj)
    after = edit(
        client, planner, doc["draft"]["id"], {"op": "split", "grid": TARGET, "line": mapping(line)}
    )
    g = grids_of(after)
    return doc["draft"]["id"], shape(g[TARGET]["geometry"]), shape(g[NEW]["geometry"])


def _ids(session):
    community_id = session.scalar(text("SELECT id FROM areas WHERE code = :c"), {"c": COMMUNITY})
    return SimpleNamespace(id=community_id)


def test_publish_rehomes_open_requests_keeps_closed_ones_and_undo_restores(
    client, session, planner
):
    # this test counts re-homed requests exactly: set the demo's replayed history aside
    # (test setup only, rolled back afterwards)
    forge_status(session, "UPDATE requests SET status = 'closed' WHERE source = 'replay'")
    community = _ids(session)
    old_id = live_grids(session)[TARGET][0]
    leader_id = session.scalar(text("SELECT id FROM users WHERE username = 'leader1'"))
    session.execute(
        text("UPDATE grids SET leader_user_id = :u WHERE id = :g"), {"u": leader_id, "g": old_id}
    )
    original = live_grids(session)
    draft_id, stays, moves = _split_draft(client, session, planner)
    old_grid = SimpleNamespace(id=old_id)
    p_move, p_stay = moves.representative_point(), stays.representative_point()
    r_open = request_row(
        session, "T-OPEN", old_grid, community, p_move.x, p_move.y, status="assigned"
    )
    r_resolved = request_row(
        session, "T-RES", old_grid, community, p_move.x, p_move.y, status="resolved"
    )
    r_closed = request_row(
        session, "T-CLOSED", old_grid, community, p_move.x, p_move.y, status="closed"
    )
    r_stay = request_row(
        session, "T-STAY", old_grid, community, p_stay.x, p_stay.y, status="in_progress"
    )
    vol = volunteer(session, "李志愿", "13900000000", community, p_move.x, p_move.y)
    moved_building = session.execute(
        text(
            "SELECT b.code, b.households FROM buildings b"
            " WHERE ST_Covers(ST_GeomFromText(:g, 4326), b.rep_point) ORDER BY b.code LIMIT 1"
        ),
        {"g": moves.wkt},
    ).one()
    session.execute(
        text("UPDATE buildings SET leader_name = '张楼长' WHERE code = :c"),
        {"c": moved_building.code},
    )
    session.commit()

    impact = client.get(f"/api/v1/drafts/{draft_id}/impact", headers=planner).get_json()
    stats = {g["code"]: g for g in impact["grids"]}
    assert stats[NEW]["status"] == "added" and stats[TARGET]["status"] == "changed"
    assert stats[NEW]["buildings_gained"] == stats[TARGET]["buildings_lost"] > 0
    assert stats[NEW]["households_after"] == stats[TARGET]["households_lost"]
    assert (
        stats[TARGET]["households_before"]
        == stats[TARGET]["households_after"] + stats[NEW]["households_after"]
    )
    assert sorted(r["number"] for r in impact["requests"]) == ["T-OPEN", "T-RES"]
    assert vol.id in [v["id"] for v in impact["volunteers"]]
    assert {(v["from"], v["to"]) for v in impact["volunteers"]} == {(TARGET, NEW)}
    assert impact["building_leaders"] == [
        {
            "building": moved_building.code,
            "leader_name": impact["building_leaders"][0]["leader_name"],
            "from": TARGET,
            "to": NEW,
        }
    ]
    assert impact["building_leaders"][0]["leader_name"] != "张楼长"  # masked for planners
    (lead,) = [
        g for g in impact["grid_leaders"] if g["user_id"] == leader_id and g["grid"] == TARGET
    ]
    assert lead["area_lost_m2"] > 0 and not lead["grid_removed"]
    unchanged = [g for g in impact["grids"] if g["status"] == "unchanged"]
    assert len(unchanged) == 4 and all(g["buildings_lost"] == 0 for g in unchanged)

    resp = client.post(f"/api/v1/drafts/{draft_id}/publish", headers=planner)
    assert resp.status_code == 201, resp.get_json()
    pub = resp.get_json()
    assert (
        pub["generation"] == 2
        and pub["requests_rehomed"] == 3
        and pub["requests_changed_grid"] == 2
    )
    assert pub["codes_added"] == [NEW] and pub["grids_closed"] == 5 and pub["grids_opened"] == 6
    live = live_grids(session)
    assert sorted(live) == sorted([*original, NEW])
    grid_of = dict(session.execute(text(NUMBERS_TO_CODES)).all())
    assert grid_of == {"T-OPEN": NEW, "T-RES": NEW, "T-STAY": TARGET, "T-CLOSED": TARGET}
    assert (
        session.scalar(text("SELECT grid_id FROM requests WHERE id = :r"), {"r": r_closed.id})
        == old_id
    )
    assert (
        session.scalar(text("SELECT generation_high FROM grids WHERE id = :g"), {"g": old_id}) == 2
    )
    ev = session.execute(
        text(
            "SELECT action, from_status, to_status, note, data FROM request_events"
            " WHERE request_id = :r"
        ),
        {"r": r_open.id},
    ).one()
    assert ev.action == "rehome" and ev.from_status == ev.to_status == "assigned"
    assert (
        ev.data["old_grid_code"] == TARGET
        and ev.data["new_grid_code"] == NEW
        and ev.data["generation"] == 2
    )
    assert TARGET in ev.note and NEW in ev.note
    assert (
        session.scalar(
            text("SELECT count(*) FROM request_events WHERE request_id = :r"), {"r": r_closed.id}
        )
        == 0
    )
    audit = session.execute(
        text(
            "SELECT a.action, a.draft_id, a.generation, u.username, a.summary"
            " FROM audit_log a JOIN users u ON u.id = a.user_id"
        )
    ).one()
    assert (audit.action, audit.draft_id, audit.generation, audit.username) == (
        "publish",
        draft_id,
        2,
        "planner",
    )
    assert audit.summary["requests_rehomed"] == 3
    # the leader stays on the row that keeps the code
    assert (
        session.scalar(
            text("SELECT leader_user_id FROM grids WHERE code = :c AND generation_high IS NULL"),
            {"c": TARGET},
        )
        == leader_id
    )
    again = client.post(
        f"/api/v1/drafts/{draft_id}/edits", json={"op": "delete", "grid": NEW}, headers=planner
    )
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "draft_closed"

    # undo: the rows of generation 1 published again as generation 3
    resp = client.post("/api/v1/generations/1/restore", json={}, headers=planner)
    assert resp.status_code == 201, resp.get_json()
    undo = resp.get_json()
    assert (
        undo["generation"] == 3 and undo["action"] == "restore" and undo["restored_generation"] == 1
    )
    live = live_grids(session)
    assert sorted(live) == sorted(original)
    for code, (_, geom) in live.items():
        assert geom.equals(original[code][1])
    grid_of = dict(session.execute(text(NUMBERS_TO_CODES)).all())
    assert grid_of["T-OPEN"] == TARGET and grid_of["T-CLOSED"] == TARGET
    assert (
        session.scalar(
            text("SELECT count(*) FROM request_events WHERE request_id = :r AND action = 'rehome'"),
            {"r": r_open.id},
        )
        == 2
    )
    assert (
        session.scalar(text("SELECT grid_id FROM requests WHERE id = :r"), {"r": r_closed.id})
        == old_id
    )
    history = client.get("/api/v1/generations", headers=planner).get_json()["generations"]
    assert [h["id"] for h in history] == [3, 2, 1] and history[0]["current"]
    assert (
        history[1]["summary"]["community_code"] == COMMUNITY
        and history[1]["published_by"] == "planner"
    )
    nothing = client.post("/api/v1/generations/3/restore", json={}, headers=planner)
    assert (
        nothing.status_code == 409 and nothing.get_json()["error"]["code"] == "nothing_to_restore"
    )
    assert session.scalar(text("SELECT count(*) FROM audit_log")) == 2
    assert r_stay.id and r_resolved.id


def test_two_drafts_the_second_is_stale_other_communities_are_not(client, session, planner):
    first = open_draft(client, planner)["draft"]["id"]
    second = open_draft(client, planner)["draft"]["id"]
    other = open_draft(client, planner, "990000001002")["draft"]["id"]
    assert client.post(f"/api/v1/drafts/{first}/publish", headers=planner).status_code == 201
    resp = client.post(f"/api/v1/drafts/{second}/publish", headers=planner)
    err = resp.get_json()["error"]
    assert resp.status_code == 409 and err["code"] == "draft_stale"
    assert err["details"]["base_generation"] == 1 and err["details"]["current_generation"] == 2
    doc = client.get(f"/api/v1/drafts/{second}", headers=planner).get_json()
    assert doc["draft"]["stale"] is True and doc["draft"]["status"] == "open"
    assert session.scalar(text("SELECT max(id) FROM generations")) == 2
    resp = client.post(f"/api/v1/drafts/{other}/publish", headers=planner)
    assert resp.status_code == 201 and resp.get_json()["generation"] == 3


def test_blocking_findings_prevent_publishing_and_nothing_changes(client, session, planner):
    doc = open_draft(client, planner)
    draft_id = doc["draft"]["id"]
    gapped = edit(client, planner, draft_id, {"op": "delete", "grid": "990000002001003"})
    assert "gap" in [f["properties"]["code"] for f in gapped["validation"]["findings"]["features"]]
    before = live_grids(session)
    resp = client.post(f"/api/v1/drafts/{draft_id}/publish", headers=planner)
    err = resp.get_json()["error"]
    assert resp.status_code == 409 and err["code"] == "draft_blocked"
    assert {f["properties"]["code"] for f in err["details"]["findings"]} == {"gap"}
    assert all(f["geometry"] for f in err["details"]["findings"])
    assert session.scalar(text("SELECT max(id) FROM generations")) == 1
    assert {c: g[0] for c, g in live_grids(session).items()} == {c: g[0] for c, g in before.items()}
    assert codes_of(client.get(f"/api/v1/drafts/{draft_id}", headers=planner).get_json()) == sorted(
        set(before) - {"990000002001003"}
    )


def test_the_deadline_job_rehomes_a_request_a_publish_raced_with(client, session, planner):
    """An intake that read the grids before a publish and wrote after it leaves its request
    on a retired row; the deadline job's sweep moves it to the live row covering it."""
    from layers.drafts.publish import rehome_stragglers
    from web.serving import deadline_cycle

    community = _ids(session)
    old_id = live_grids(session)[TARGET][0]
    draft_id, _stays, moves = _split_draft(client, session, planner)
    session.commit()
    resp = client.post(f"/api/v1/drafts/{draft_id}/publish", headers=planner)
    assert resp.status_code == 201, resp.get_json()
    p = moves.representative_point()
    late = request_row(
        session, "T-LATE", SimpleNamespace(id=old_id), community, p.x, p.y, status="assigned"
    )
    done = request_row(
        session, "T-DONE", SimpleNamespace(id=old_id), community, p.x, p.y, status="closed"
    )
    counts = deadline_cycle(session=session)
    assert counts["rehomed"] == 1
    rows = dict(session.execute(text(NUMBERS_TO_CODES)).all())
    assert rows["T-LATE"] == NEW and rows["T-DONE"] == TARGET  # closed ones stay as they were
    event = session.execute(
        text(
            "SELECT action, actor_kind, from_status, to_status, data->>'new_grid_code'"
            " FROM request_events WHERE request_id = :r ORDER BY id DESC LIMIT 1"
        ),
        {"r": late.id},
    ).one()
    assert tuple(event) == ("rehome", "system", "assigned", "assigned", NEW)
    assert rehome_stragglers(session=session) == {"count": 0, "changed": 0}
    assert done.id
