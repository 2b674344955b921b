"""With the demo's walking network loaded, volunteer offers rank by walking distance."""

from __future__ import annotations

from sqlalchemy import text


def test_offers_use_walking_distance_on_the_demo(client, session) -> None:
    lon, lat = session.execute(
        text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grids "
            "ORDER BY households DESC LIMIT 1"
        )
    ).one()
    resp = client.post(
        "/api/v1/requests",
        json={"lon": lon, "lat": lat, "category": "housing", "text": "楼道灯坏了"},
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["distance_method"] == "walk"
    offers = body["offered_volunteers"]
    assert offers and all(o["distance_method"] == "walk" for o in offers)
    assert [o["distance_m"] for o in offers] == sorted(o["distance_m"] for o in offers)
    # walking is never shorter than the straight line to the same volunteer
    for o in offers:
        straight = session.scalar(
            text(
                "SELECT ST_Distance(ST_Transform(v.geom, 32635), "
                "ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 32635)) "
                "FROM volunteers v WHERE v.id = :v"
            ),
            {"x": lon, "y": lat, "v": o["volunteer_id"]},
        )
        assert o["distance_m"] >= straight - 1.0
