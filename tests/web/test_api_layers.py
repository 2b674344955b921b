"""GET /api/v1/layers/<layer>: GeoJSON by bbox, keyset paging, scopes, masking, errors."""

from __future__ import annotations

import pytest

from tests.factories import (
    X0,
    Y0,
    building,
    mini_district,
    request_row,
    token,
    user,
    venue,
    volunteer,
)

BBOX = f"{X0 - 0.001},{Y0 - 0.001},{X0 + 0.021},{Y0 + 0.011}"


@pytest.fixture
def mini(session):
    m = mini_district(session)
    for i in range(5):
        building(
            session,
            f"TB{i:03d}",
            X0 + 0.002 + i * 0.003,
            Y0 + 0.005,
            households=30 + i,
            leader_name="李建国",
            leader_phone="13900001111",
        )
    venue(session, "党群服务中心", "community_centre", X0 + 0.005, Y0 + 0.004)
    volunteer(session, "赵志愿", "13700002222", m.community, X0 + 0.003, Y0 + 0.003)
    request_row(session, "R-W1", m.west, m.community, X0 + 0.004, Y0 + 0.004)
    request_row(session, "R-E1", m.east, m.community, X0 + 0.015, Y0 + 0.004)
    session.commit()
    return m


def test_grids_are_rfc7946_with_code_and_households(client, mini) -> None:
    resp = client.get(f"/api/v1/layers/grids?bbox={BBOX}")
    assert resp.status_code == 200
    fc = resp.get_json()
    assert fc["type"] == "FeatureCollection"
    codes = {f["properties"]["code"]: f for f in fc["features"]}
    assert set(codes) == {mini.west.code, mini.east.code}
    west = codes[mini.west.code]
    assert west["geometry"]["type"] == "MultiPolygon"
    assert west["properties"]["households"] == 320
    assert west["properties"]["community_code"] == mini.community.code
    assert fc["links"]["next"] is None


def test_bbox_filters_and_closed_generations_are_not_live(client, session, mini) -> None:
    only_west = f"{X0 + 0.001},{Y0 + 0.001},{X0 + 0.005},{Y0 + 0.005}"
    fc = client.get(f"/api/v1/layers/grids?bbox={only_west}").get_json()
    assert [f["properties"]["code"] for f in fc["features"]] == [mini.west.code]
    from layers.grids.models import Generation

    session.add(Generation(id=mini.west.generation_low + 1))
    session.flush()
    mini.west.generation_high = mini.west.generation_low + 1
    session.commit()
    fc = client.get(f"/api/v1/layers/grids?bbox={BBOX}").get_json()
    assert [f["properties"]["code"] for f in fc["features"]] == [mini.east.code]


def test_paging_follows_links_next_without_gaps_or_repeats(client, mini) -> None:
    url = f"/api/v1/layers/buildings?bbox={BBOX}&limit=2"
    seen = []
    pages = 0
    while url:
        fc = client.get(url).get_json()
        assert len(fc["features"]) <= 2
        seen += [f["properties"]["code"] for f in fc["features"]]
        url = fc["links"]["next"]
        pages += 1
    assert sorted(seen) == [f"TB{i:03d}" for i in range(5)]
    assert len(seen) == len(set(seen)) and pages == 3


def test_building_grid_is_derived_and_leader_masked_for_the_public(client, mini) -> None:
    fc = client.get(f"/api/v1/layers/buildings?bbox={BBOX}").get_json()
    by_code = {f["properties"]["code"]: f["properties"] for f in fc["features"]}
    assert by_code["TB000"]["grid_code"] == mini.west.code
    assert by_code["TB004"]["grid_code"] == mini.east.code
    assert by_code["TB000"]["leader_name"] == "李**"
    assert by_code["TB000"]["leader_phone"] == "139****1111"


@pytest.mark.parametrize("layer", ["volunteers", "requests"])
def test_personal_layers_need_credentials(client, mini, layer) -> None:
    resp = client.get(f"/api/v1/layers/{layer}")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_grid_leader_sees_only_own_grid_unmasked(client, session, mini) -> None:
    user(session, "leader_w", "grid_leader", grid=mini.west.code)
    headers = token(client, "leader_w")
    fc = client.get("/api/v1/layers/requests", headers=headers).get_json()
    assert [f["properties"]["number"] for f in fc["features"]] == ["R-W1"]
    assert fc["features"][0]["properties"]["contact_name"] == "王小明"


def test_grid_member_sees_masked_contacts_and_volunteer_forbidden(client, session, mini) -> None:
    user(session, "member_w", "grid_member", grid=mini.west.code)
    fc = client.get("/api/v1/layers/requests", headers=token(client, "member_w")).get_json()
    assert fc["features"][0]["properties"]["contact_phone"] == "138****5678"
    user(session, "vol", "volunteer", area=mini.community.code)
    resp = client.get("/api/v1/layers/requests", headers=token(client, "vol"))
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "forbidden"


def test_community_staff_sees_subtree(client, session, mini) -> None:
    user(session, "street_t", "street_staff", area=mini.street.code)
    fc = client.get("/api/v1/layers/requests", headers=token(client, "street_t")).get_json()
    assert {f["properties"]["number"] for f in fc["features"]} == {"R-W1", "R-E1"}
    vols = client.get("/api/v1/layers/volunteers", headers=token(client, "street_t")).get_json()
    assert [f["properties"]["name"] for f in vols["features"]] == ["赵志愿"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("bbox=1,2,3", "invalid_bbox"),
        ("bbox=a,b,c,d", "invalid_bbox"),
        ("bbox=10,10,9,11", "invalid_bbox"),
        ("bbox=0,0,nan,1", "invalid_bbox"),
        ("bbox=0,0,200,1", "invalid_bbox"),
        ("bbox=0,0,50,50", "bbox_too_large"),
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("cursor=not-a-cursor", "invalid_cursor"),
    ],
)
def test_bad_query_parameters_are_400_with_a_code(client, query, code) -> None:
    resp = client.get(f"/api/v1/layers/grids?{query}")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == code


def test_cursor_of_another_layer_is_refused(client, mini) -> None:
    fc = client.get(f"/api/v1/layers/buildings?bbox={BBOX}&limit=1").get_json()
    cursor = fc["links"]["next"].split("cursor=")[1].split("&")[0]
    resp = client.get(f"/api/v1/layers/venues?cursor={cursor}")
    assert resp.get_json()["error"]["code"] == "invalid_cursor"


def test_unknown_layer_is_404_in_both_languages(client) -> None:
    zh = client.get("/api/v1/layers/roads")
    assert zh.status_code == 404
    assert zh.get_json()["error"]["code"] == "unknown_layer"
    assert "未知图层" in zh.get_json()["error"]["message"]
    en = client.get("/api/v1/layers/roads", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert en.get_json()["error"]["message"].startswith("Unknown layer 'roads'")
    assert "grids" in en.get_json()["error"]["details"]["available"]


def test_grid_leader_sees_the_volunteers_of_their_community(client, session, mini) -> None:
    user(session, "leader_vol", "grid_leader", grid=mini.west.code)
    vols = client.get("/api/v1/layers/volunteers", headers=token(client, "leader_vol")).get_json()
    assert [f["properties"]["name"] for f in vols["features"]] == ["赵志愿"]
    assert vols["features"][0]["properties"]["phone"] == "13700002222"  # leaders need to call
