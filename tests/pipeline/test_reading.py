"""Reading requests: filters of GET /api/v1/requests."""

from __future__ import annotations


def test_list_filters_by_owner_level(client, session) -> None:
    from tests.factories import token, user

    user(session, "admin_ol", "admin")
    headers = token(client, "admin_ol")
    body = client.get(
        "/api/v1/requests?owner_level=community,street&limit=1000", headers=headers
    ).get_json()
    levels = {r["owner_level"] for r in body["requests"]}
    assert levels and levels <= {"community", "street"}
    bad = client.get("/api/v1/requests?owner_level=planet", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_field"


def test_locations_and_bbox_in_a_display_crs(client, world) -> None:
    """A page drawn over a GCJ-02 (AMap) or BD-09 (Baidu) basemap asks for crs=...: the
    bbox is read in that CRS and locations come back in it; storage stays WGS84."""
    from geo.crs import from_wgs84
    from tests.factories import token
    from tests.pipeline.conftest import CENTRE, submit

    created = submit(client)
    assert created.status_code == 201, created.get_json()
    rid = created.get_json()["id"]
    admin = token(client, world.users["admin"])

    def listed(query: str) -> dict[int, dict]:
        resp = client.get(f"/api/v1/requests?limit=1000{query}", headers=admin)
        assert resp.status_code == 200, resp.get_json()
        return {r["id"]: r["location"] for r in resp.get_json()["requests"]}

    wgs = listed("")[rid]
    assert wgs["crs"] == "wgs84"
    assert abs(wgs["lon"] - CENTRE[0]) < 1e-6 and abs(wgs["lat"] - CENTRE[1]) < 1e-6
    for crs in ("gcj02", "bd09"):
        want = from_wgs84(wgs["lon"], wgs["lat"], crs)
        shown = listed(f"&crs={crs}")[rid]
        assert shown["crs"] == crs
        assert abs(shown["lon"] - want[0]) < 1e-7 and abs(shown["lat"] - want[1]) < 1e-7
        assert abs(shown["lon"] - wgs["lon"]) + abs(shown["lat"] - wgs["lat"]) > 1e-3  # moved
        detail = client.get(f"/api/v1/requests/{rid}?crs={crs}", headers=admin).get_json()
        assert detail["location"] == shown
        # a 100 m window around where the map shows it finds it; the same window, read as
        # WGS84 coordinates, lies hundreds of metres off and does not
        x, y = shown["lon"], shown["lat"]
        window = f"&bbox={x - 0.0005},{y - 0.0005},{x + 0.0005},{y + 0.0005}"
        assert rid in listed(f"{window}&crs={crs}")
        assert rid not in listed(window)
    bad = client.get("/api/v1/requests?crs=mars", headers=admin)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "unknown_crs"
