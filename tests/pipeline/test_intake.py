"""Intake (DESIGN §3): placement, offers, duplicates, deadline, events, outbox (the
Idempotency-Key: test_idempotency.py)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import text

from geo.crs import from_wgs84
from layers.requests.offers import distance_to_volunteers
from tests.factories import X0, Y0, building, token
from tests.pipeline.conftest import (
    CENTRE,
    add_volunteer,
    request_events,
    stored_offers,
    submit,
)


def _count(session, table: str) -> int:
    return session.scalar(text(f"SELECT count(*) FROM {table}"))


def test_intake_in_a_grid_offers_nearest_volunteers(client, session, world) -> None:
    resp = submit(client, contact={"name": "王小明", "phone": "13812345678"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["grid"] == {"code": world.mini.west.code, "name": "西网格"}
    assert body["status"] == "assigned" and body["owner_level"] == "grid"
    assert body["number"].endswith(f"{body['id']:06d}")
    head, _, secret = body["ticket"].partition("-")  # <id>-<128 random bits in hex>
    assert int(head) == body["id"] and len(secret) == 32 and int(secret, 16) >= 0
    row = session.execute(
        text("SELECT ticket_hash, deadline_at, created_at, contact_name FROM requests WHERE id=:i"),
        {"i": body["id"]},
    ).one()
    assert row.ticket_hash == hashlib.sha256(body["ticket"].encode()).hexdigest()
    assert body["ticket"] not in str(row)
    assert row.deadline_at - row.created_at == timedelta(hours=48)  # elderly_care: 48 h
    assert datetime.fromisoformat(body["deadline"]) == row.deadline_at
    assert body["deadline"].endswith("+08:00")
    # the anonymous 201 says how many volunteers were offered, not who or where
    assert body["offered_count"] == 3 and body["distance_method"] == "straight_line"
    assert not {"offered_volunteers", "offers"} & set(body)
    offers = stored_offers(session, body["id"])
    assert [o.volunteer_id for o in offers] == [
        world.volunteers[k].id for k in ("near", "mid", "far")
    ]
    assert [o.rank for o in offers] == [1, 2, 3]
    # distances are metres in UTM: 0.0002 degree of longitude at 10 N is about 21.9 m
    assert 21 < offers[0].distance_m < 23
    shown = str(body)
    for v in world.volunteers.values():
        assert v.name not in shown and v.name[0] + "**" not in shown
    events = request_events(session, body["id"])
    assert [tuple(e) for e in events] == [
        ("submit", None, "submitted", "grid"),
        ("assign", "submitted", "assigned", "grid"),
    ]
    outbox = session.execute(
        text(
            "SELECT n.kind, n.recipient_volunteer_id, n.recipient_user_id FROM notifications n"
            " JOIN request_events e ON e.id = n.event_id WHERE e.request_id=:i"
        ),
        {"i": body["id"]},
    ).all()
    leader = session.scalar(text("SELECT id FROM users WHERE username = 'pl_grid_leader'"))
    assert {r.recipient_volunteer_id for r in outbox} - {None} == {o.volunteer_id for o in offers}
    assert {r.recipient_user_id for r in outbox} - {None} == {leader}
    assert {r.kind for r in outbox} == {"assigned"}


def test_offer_filters_skill_availability_load_and_breaks_ties_by_load(
    client, session, world
) -> None:
    c = world.mini.community
    x, y = X0 + 0.0040, Y0 + 0.005  # all 110 m west of the centre
    busy = add_volunteer(session, c, "忙人", x, y, load_limit=2, active_load=2)
    wrong_skill = add_volunteer(session, c, "修理", x, y, skills=("housing",))
    # 2026-01-05 is a Monday; availability is read in Asia/Shanghai
    asleep = add_volunteer(session, c, "夜班", x, y, availability={"mon": ["22:00-06:00"]})
    loaded = add_volunteer(session, c, "一单", x, y, active_load=1)
    free = add_volunteer(session, c, "空闲", x, y, availability={"mon": ["08:00-12:00"]})
    from datetime import UTC

    from layers.requests.offers import rank_volunteers

    monday_10_local = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    ranked, method = rank_volunteers(
        session=session,
        lonlat=CENTRE,
        category="elderly_care",
        now=monday_10_local,
        tz="Asia/Shanghai",
        k=10,
    )
    ids = [r.volunteer_id for r in ranked]
    assert busy.id not in ids and wrong_skill.id not in ids and asleep.id not in ids
    assert ids.index(free.id) < ids.index(loaded.id)  # same distance, lower load first
    assert method == "straight_line"
    # at 23:00 local the night-shift volunteer is available and the morning one is not
    monday_23_local = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    ranked, _ = rank_volunteers(
        session=session,
        lonlat=CENTRE,
        category="elderly_care",
        now=monday_23_local,
        tz="Asia/Shanghai",
        k=10,
    )
    ids = [r.volunteer_id for r in ranked]
    assert asleep.id in ids and free.id not in ids
    # k limits the offer
    ranked, _ = rank_volunteers(
        session=session,
        lonlat=CENTRE,
        category="elderly_care",
        now=monday_10_local,
        tz="Asia/Shanghai",
        k=2,
    )
    assert len(ranked) == 2


def test_distance_function_is_utm_metres(session) -> None:
    lon, lat = 104.07, 30.66
    x0, y0 = from_wgs84(lon, lat, "EPSG:32648")
    # a point exactly 300 m east and 400 m north in UTM: 500 m away
    from geo.crs import to_wgs84

    lon2, lat2 = to_wgs84(x0 + 300.0, y0 + 400.0, "EPSG:32648")
    dist, method = distance_to_volunteers(
        session=session, lonlat=(lon, lat), targets_lonlat=[(7, lon2, lat2)]
    )
    assert method == "straight_line"
    assert abs(dist[7] - 500.0) < 0.01


def test_point_on_shared_border_goes_to_lowest_code(client, world) -> None:
    body = submit(client, lon=X0 + 0.01, lat=Y0 + 0.005).get_json()
    assert body["grid"]["code"] == world.mini.west.code < world.mini.east.code


def test_point_in_community_without_grid_goes_to_triage(client, session, world) -> None:
    user_id = session.scalar(text("SELECT id FROM users WHERE username = 'pl_community_staff'"))
    # bind community staff to the gap community so the triage has someone to act
    session.execute(
        text(
            "INSERT INTO role_bindings (user_id, role_code, area_id)"
            " VALUES (:u, 'community_staff', :a)"
        ),
        {"u": user_id, "a": world.gap.id},
    )
    body = submit(client, lon=X0 + 0.025, lat=Y0 + 0.005).get_json()
    assert body["status"] == "triage" and body["owner_level"] == "community"
    assert body["grid"] is None and body["community"]["code"] == world.gap.code
    assert body["offered_count"] == 0
    rows = session.execute(
        text(
            "SELECT n.kind, n.recipient_user_id FROM notifications n JOIN request_events e"
            " ON e.id = n.event_id WHERE e.request_id = :i"
        ),
        {"i": body["id"]},
    ).all()
    assert [(r.kind, r.recipient_user_id) for r in rows] == [("triage", user_id)]


def test_outside_jurisdiction_is_422_and_stores_nothing(client, session, world) -> None:
    before = [_count(session, t) for t in ("requests", "request_events", "notifications")]
    resp = submit(client, lon=X0 + 0.5, lat=Y0 + 0.5)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "outside_jurisdiction"
    after = [_count(session, t) for t in ("requests", "request_events", "notifications")]
    assert before == after


def test_gcj02_and_bd09_inputs_are_converted_to_wgs84(client, world) -> None:
    lon, lat = X0 + 0.015, Y0 + 0.004  # east grid
    for crs in ("gcj02", "bd09"):
        glon, glat = from_wgs84(lon, lat, crs)
        assert abs(glon - lon) + abs(glat - lat) > 1e-4  # the offset is real here
        body = submit(client, lon=glon, lat=glat, crs=crs).get_json()
        assert body["grid"]["code"] == world.mini.east.code
        assert abs(body["location"]["lon"] - lon) < 1e-6
        assert abs(body["location"]["lat"] - lat) < 1e-6


def test_building_code_intake_uses_its_representative_point(client, session, world) -> None:
    building(session, "B-PL-1", X0 + 0.015, Y0 + 0.002)
    resp = client.post(
        "/api/v1/requests",
        json={"building_code": "B-PL-1", "category": "housing", "text": "屋顶漏水"},
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["grid"]["code"] == world.mini.east.code
    bad = client.post(
        "/api/v1/requests",
        json={"building_code": "B-NONE", "category": "housing", "text": "x"},
    )
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "unknown_building"


def test_possible_duplicates_within_250_m_same_category_open(client, world) -> None:
    first = submit(client).get_json()
    other_cat = submit(client, category="housing").get_json()
    near = submit(client, lon=CENTRE[0] + 0.002).get_json()  # ~219 m east
    # the resident learns how many, not which or where
    assert near["possible_duplicate_count"] == 1 and "possible_duplicates" not in near
    staff = token(client, world.users["grid_member"])
    seen = client.get(f"/api/v1/requests/{near['id']}", headers=staff).get_json()
    dup_ids = [d["id"] for d in seen["possible_duplicates"]]
    assert dup_ids == [first["id"]] and other_cat["id"] not in dup_ids
    assert 200 < seen["possible_duplicates"][0]["distance_m"] < 250
    assert seen["possible_duplicates"][0]["number"] == first["number"]
    far = submit(client, lon=CENTRE[0] + 0.0025).get_json()  # ~274 m from the first
    seen = client.get(f"/api/v1/requests/{far['id']}", headers=staff).get_json()
    assert first["id"] not in [d["id"] for d in seen["possible_duplicates"]]
    vol = token(client, world.users["volunteer"])
    offered = client.get(f"/api/v1/requests/{near['id']}", headers=vol).get_json()
    assert "possible_duplicates" not in offered


def test_anonymous_intake_is_rate_limited_per_address(app, client, world) -> None:
    app.config["MINQING_INTAKE_RATE_LIMIT"] = "3/60"
    codes = [submit(client).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    resp = submit(client)
    assert resp.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    other = client.post(
        "/api/v1/requests",
        json={"lon": CENTRE[0], "lat": CENTRE[1], "category": "other", "text": "x"},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert other.status_code == 201


def test_signed_in_intake_is_rate_limited_per_account(app, client, world) -> None:
    """An account counts on its own, wherever it submits from (before: not at all); the
    address it shares with anonymous residents keeps their own count."""
    app.config["MINQING_INTAKE_ACCOUNT_RATE_LIMIT"] = "2/60"
    app.config["MINQING_INTAKE_RATE_LIMIT"] = "2/60"
    plain = token(client, world.users["plain"])
    other = token(client, world.users["grid_member"])
    body = {"lon": CENTRE[0], "lat": CENTRE[1], "category": "other", "text": "x"}
    codes = [
        client.post(
            "/api/v1/requests",
            json=body,
            headers=plain,
            environ_base={"REMOTE_ADDR": f"10.0.1.{i}"},
        ).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]
    refused = submit(client, headers=plain)
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in refused.headers
    assert submit(client, headers=other).status_code == 201
    assert [submit(client).status_code for _ in range(3)] == [201, 201, 429]  # anonymous


def test_categories_list_the_catalogue(client) -> None:
    cats = client.get("/api/v1/categories").get_json()["categories"]
    assert {"code": "elderly_care", "deadline_hours": 48}.items() <= cats[5].items()
    assert len({c["code"] for c in cats}) == len(cats) >= 9
