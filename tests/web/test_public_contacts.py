"""Contacts (issue 16, item 6): personal names and phones stay masked by role and never cross a
street boundary; a grid or building leader may publish a consented public contact, which the
service card, ``/r`` and the buildings' layer and tiles show as it is."""

from __future__ import annotations

import math

import mapbox_vector_tile
import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import text

from layers.areas.models import Area
from layers.contacts.service import set_building_leader
from layers.grids.models import Grid
from tests.factories import X0, Y0, building, ewkt, mini_district, token, user

BBOX = f"{X0 - 0.001},{Y0 - 0.001},{X0 + 0.041},{Y0 + 0.011}"
WEST_PHONE = "13900001111"  # the leader of a building in the west grid (street 1)
FAR_PHONE = "13900002222"  # the leader of a building in the second street
LEADER_PHONE = "13811112222"  # the grid leader's personal phone


@pytest.fixture
def world(session):
    """The mini district's street (west and east grids) and a second street beside it with a
    community and a grid of its own; a building with a leader in the west grid and one in the
    second street."""
    m = mini_district(session)
    outline = MultiPolygon([box(X0 + 0.03, Y0, X0 + 0.04, Y0 + 0.01)])
    street2 = Area(
        code=m.district.code + "002",
        name="第二街道",
        level="street",
        parent_id=m.district.id,
        geom=ewkt(outline),
    )
    session.add(street2)
    session.flush()
    community2 = Area(
        code=street2.code + "001",
        name="第二社区",
        level="community",
        parent_id=street2.id,
        geom=ewkt(outline),
    )
    session.add(community2)
    session.flush()
    far = Grid(
        code=community2.code + "001",
        name="远网格",
        community_id=community2.id,
        households=100,
        generation_low=m.west.generation_low,
        geom=ewkt(outline),
    )
    session.add(far)
    session.flush()
    building(session, "TBW", X0 + 0.005, Y0 + 0.005, leader_name="李建国", leader_phone=WEST_PHONE)
    building(session, "TBF", X0 + 0.035, Y0 + 0.005, leader_name="周远方", leader_phone=FAR_PHONE)
    user(session, "leader_w", "grid_leader", grid=m.west.code)
    session.execute(
        text("UPDATE users SET phone = :p, display_name = '王网格' WHERE username = 'leader_w'"),
        {"p": LEADER_PHONE},
    )
    session.commit()
    m.street2, m.community2, m.far = street2, community2, far
    return m


def _leaders(client, headers: dict[str, str]) -> dict[str, tuple[str, str]]:
    fc = client.get(f"/api/v1/layers/buildings?bbox={BBOX}", headers=headers).get_json()
    return {
        f["properties"]["code"]: (f["properties"]["leader_name"], f["properties"]["leader_phone"])
        for f in fc["features"]
        if f["properties"]["code"] in ("TBW", "TBF")
    }


WEST = ("李建国", WEST_PHONE)
WEST_MASKED = ("李**", "139****1111")
FAR = ("周远方", FAR_PHONE)
FAR_MASKED = ("周**", "139****2222")


# -- personal contacts: masked by role, never across a street --------------------------------
def test_building_leaders_are_masked_outside_the_viewers_street(client, session, world) -> None:
    user(session, "comm_1", "community_staff", area=world.community.code)
    user(session, "street_2", "street_staff", area=world.street2.code)
    user(session, "comm_2", "community_staff", area=world.community2.code)
    user(session, "district_staff", "street_staff", area=world.district.code)
    user(session, "member_w", "grid_member", grid=world.west.code)
    user(session, "planner_x", "planner")
    user(session, "admin_x", "admin")
    seen = {
        who: _leaders(client, token(client, who) if who else {})
        for who in (
            None,
            "leader_w",
            "comm_1",
            "street_2",
            "comm_2",
            "district_staff",
            "member_w",
            "planner_x",
            "admin_x",
        )
    }
    assert seen[None] == {"TBW": WEST_MASKED, "TBF": FAR_MASKED}
    # a grid leader and a community's staff: their own street only (the east grid's
    # buildings too: same street), never the second street's
    assert seen["leader_w"] == {"TBW": WEST, "TBF": FAR_MASKED}
    assert seen["comm_1"] == {"TBW": WEST, "TBF": FAR_MASKED}
    assert seen["street_2"] == seen["comm_2"] == {"TBW": WEST_MASKED, "TBF": FAR}
    # bound to the district: every street under it; bound everywhere: everything
    assert seen["district_staff"] == seen["admin_x"] == {"TBW": WEST, "TBF": FAR}
    # roles that never see names: masked even in their own grid
    assert seen["member_w"] == seen["planner_x"] == {"TBW": WEST_MASKED, "TBF": FAR_MASKED}


def test_the_card_masks_the_leaders_personal_phone(client, world) -> None:
    html = client.get(f"/grids/{world.west.code}/card").get_data(as_text=True)
    assert "王**" in html and "138****2222" in html
    assert LEADER_PHONE not in html and "王网格" not in html


# -- public contacts ------------------------------------------------------------------------------
def _publish(client, headers, **body):
    payload = {"display_name": "王网格长", "work_phone": "010-6512 3456", "consent": True}
    payload.update(body)
    return client.put("/api/v1/me/public-contact", json=payload, headers=headers)


def test_a_grid_leader_publishes_a_public_contact_the_card_and_r_show(
    client, session, world
) -> None:
    headers = token(client, "leader_w")
    before = client.get("/api/v1/me/public-contact", headers=headers).get_json()
    assert before == {"contact": None, "leads": {"grids": [world.west.code], "buildings": []}}
    resp = _publish(client, headers)
    assert resp.status_code == 200, resp.get_json()
    contact = resp.get_json()["contact"]
    assert contact["display_name"] == "王网格长" and contact["work_phone"] == "010-6512 3456"
    consented = session.scalar(
        text(
            "SELECT consented_at FROM public_contacts pc JOIN users u ON u.id = pc.user_id"
            " WHERE u.username = 'leader_w'"
        )
    )
    assert consented is not None and contact["consented_at"] == consented.isoformat()
    card = client.get(f"/grids/{world.west.code}/card").get_data(as_text=True)
    assert "王网格长" in card and "010-6512 3456" in card
    assert LEADER_PHONE not in card  # the personal phone stays masked, and is not shown
    page = client.get(f"/r?grid={world.west.code}").get_data(as_text=True)
    assert 'id="mq-contact"' in page and "王网格长" in page and "010-6512 3456" in page
    assert LEADER_PHONE not in page
    # another grid's card shows none of it
    assert "王网格长" not in client.get(f"/grids/{world.east.code}/card").get_data(as_text=True)
    # withdrawn: the card is back to the masked personal contact, /r shows no contact
    assert client.delete("/api/v1/me/public-contact", headers=headers).status_code == 204
    card = client.get(f"/grids/{world.west.code}/card").get_data(as_text=True)
    assert "王网格长" not in card and "138****2222" in card
    assert 'id="mq-contact"' not in client.get(f"/r?grid={world.west.code}").get_data(as_text=True)
    audit = session.execute(
        text(
            "SELECT a.action, a.summary->>'work_phone' FROM audit_log a"
            " JOIN users u ON u.id = a.user_id WHERE u.username = 'leader_w' ORDER BY a.id"
        )
    ).all()
    assert [tuple(r) for r in audit] == [
        ("contact.publish", "010-6512 3456"),
        ("contact.withdraw", None),
    ]


def test_a_deactivated_leaders_public_contact_is_not_shown(client, session, world) -> None:
    assert _publish(client, token(client, "leader_w")).status_code == 200
    session.execute(text("UPDATE users SET active = false WHERE username = 'leader_w'"))
    assert "王网格长" not in client.get(f"/grids/{world.west.code}/card").get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"consent": False}, "consent_required"),
        ({"consent": "yes"}, "consent_required"),
        ({"consent": None}, "consent_required"),
        ({"display_name": "  "}, "missing_field"),
        ({"display_name": "名" * 101}, "text_too_long"),
        ({"work_phone": "call me <b>"}, "invalid_field"),
        ({"work_phone": 13800000000}, "invalid_field"),
    ],
)
def test_a_public_contact_needs_consent_and_a_valid_phone(
    client, session, world, body, code
) -> None:
    resp = _publish(client, token(client, "leader_w"), **body)
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == code
    assert session.scalar(text("SELECT count(*) FROM public_contacts")) == 0


def test_only_leaders_publish_and_only_for_themselves(client, session, world) -> None:
    assert _publish(client, {}).status_code == 401
    user(session, "member_w", "grid_member", grid=world.west.code)
    user(session, "staff_c", "community_staff", area=world.community.code)
    for who in ("member_w", "staff_c"):
        resp = _publish(client, token(client, who))
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "not_a_leader"
    assert session.scalar(text("SELECT count(*) FROM public_contacts")) == 0


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return int((lon + 180.0) / 360.0 * n), int(y)


def test_a_building_leader_publishes_for_their_building(client, session, world) -> None:
    user(session, "zhou", None)
    assert _publish(client, token(client, "zhou")).get_json()["error"]["code"] == "not_a_leader"
    set_building_leader(session=session, building_code="TBF", username="zhou")
    resp = _publish(client, token(client, "zhou"), display_name="周楼长", work_phone="13900009999")
    assert resp.status_code == 200, resp.get_json()
    fc = client.get(f"/api/v1/layers/buildings?bbox={BBOX}").get_json()  # anonymous
    props = {f["properties"]["code"]: f["properties"] for f in fc["features"]}
    assert props["TBF"]["leader_public_name"] == "周楼长"
    assert props["TBF"]["leader_public_phone"] == "13900009999"
    assert props["TBF"]["leader_name"] == "周**"  # the personal contact stays masked
    assert props["TBW"]["leader_public_name"] is None
    x, y = _tile_of(X0 + 0.035, Y0 + 0.005, 16)
    tile = mapbox_vector_tile.decode(client.get(f"/tiles/buildings/16/{x}/{y}.mvt").data)
    by_code = {f["properties"]["code"]: f["properties"] for f in tile["buildings"]["features"]}
    assert by_code["TBF"]["leader_public_name"] == "周楼长"
    assert by_code["TBF"]["leader_public_phone"] == "13900009999"
    assert all("leader_name" not in p and "leader_phone" not in p for p in by_code.values())
    # unlinked: no longer their building's contact
    set_building_leader(session=session, building_code="TBF", username=None)
    fc = client.get(f"/api/v1/layers/buildings?bbox={BBOX}").get_json()
    far = next(f["properties"] for f in fc["features"] if f["properties"]["code"] == "TBF")
    assert far["leader_public_name"] is None
