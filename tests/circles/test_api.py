"""GET /api/v1/nearest, /api/v1/coverage and /api/v1/coverage/gaps on the demo district."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text

from geo.crs import from_wgs84
from layers.circles import graph_cache


@pytest.fixture
def home(session):
    if graph_cache.get_graph(session) is None:
        pytest.skip("the test template has no walking network")
    return session.execute(
        text(
            "SELECT ST_X(rep_point), ST_Y(rep_point) FROM buildings WHERE residential ORDER BY id LIMIT 1"
        )
    ).one()


def test_nearest_returns_k_venues_by_walking_distance_with_routes(client, session, home):
    lon, lat = home
    resp = client.get(f"/api/v1/nearest?lon={lon}&lat={lat}&category=bank&k=3")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    venues = body["venues"]
    assert len(venues) == 3
    metres = [v["distance_m"] for v in venues]
    assert metres == sorted(metres)
    for v in venues:
        assert v["category"] == "bank" and v["distance_method"] == "walk"
        assert v["minutes"] == pytest.approx(v["distance_m"] / 72.0, abs=0.06)
        route = v["route"]
        assert route["type"] == "LineString"
        assert route["coordinates"][0] == pytest.approx([lon, lat], abs=1e-6)
        assert route["coordinates"][-1] == pytest.approx([v["lon"], v["lat"]], abs=1e-6)
    # the nearest by walking is no farther than any other bank's walking distance
    loaded = graph_cache.get_graph(session)
    all_banks = session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM venues WHERE active AND category = 'bank'")
    ).all()
    from layers.circles.service import walking_distances_m

    every, _ = walking_distances_m(session, (lon, lat), np.array(all_banks))
    assert metres[0] == pytest.approx(float(every.min()), abs=0.1)
    assert loaded.version == body["network_version"]
    assert "circle" not in body


def test_nearest_with_circle_and_gcj02_input(client, home):
    lon, lat = home
    glon, glat = from_wgs84(lon, lat, "gcj02")
    body = client.get(
        f"/api/v1/nearest?lon={glon}&lat={glat}&crs=gcj02&category=clinic&k=2&circle=1"
    ).get_json()
    assert body["origin"]["lon"] == pytest.approx(lon, abs=1e-6)
    feature = body["circle"]
    assert feature["properties"]["method"] == "network"
    assert feature["properties"]["budget_m"] == 1000.0 and feature["properties"]["tier"] == "15min"
    geom = shape(feature["geometry"])
    assert geom.geom_type == "MultiPolygon" and geom.covers(shapely.Point(lon, lat))
    # a route to a venue within 1000 m stays inside the caller's circle
    for v in body["venues"]:
        if v["distance_m"] <= 1000.0 - 60.0:
            assert geom.buffer(1e-6).covers(shape(v["route"]))
    # minutes × speed, unit reported
    body = client.get(
        f"/api/v1/nearest?lon={lon}&lat={lat}&category=clinic&circle=1&minutes=5"
    ).get_json()
    assert body["circle"]["properties"]["budget_m"] == 360.0
    assert body["circle"]["properties"]["budget_unit"] == "min"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("lon=24.94&lat=60.17&category=spaceport", 400, "unknown_venue_category"),
        ("lon=24.94&lat=60.17", 400, "unknown_venue_category"),
        ("lat=60.17&category=bank", 400, "missing_field"),
        ("lon=abc&lat=60.17&category=bank", 400, "invalid_coordinates"),
        ("lon=nan&lat=60.17&category=bank", 400, "invalid_coordinates"),
        ("lon=24.94&lat=60.17&category=bank&crs=mars", 400, "unknown_crs"),
        ("lon=24.94&lat=95&category=bank", 400, "coordinates_out_of_range"),
        ("lon=24.94&lat=60.17&category=bank&k=0", 400, "invalid_field"),
        ("lon=24.94&lat=60.17&category=bank&k=21", 400, "invalid_field"),
        ("lon=24.94&lat=60.17&category=bank&circle=1&minutes=0", 400, "invalid_budget"),
        ("lon=24.94&lat=60.17&category=bank&circle=1&minutes=-5", 400, "invalid_budget"),
        ("lon=24.94&lat=60.17&category=bank&circle=1&minutes=999", 400, "invalid_budget"),
    ],
)
def test_nearest_bad_input(client, home, query, status, code):
    resp = client.get(f"/api/v1/nearest?{query}")
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"]["code"] == code


def test_point_far_from_any_path_is_422_with_the_snap_distance(client, home):
    lon, lat = home
    resp = client.get(f"/api/v1/nearest?lon={lon + 0.1}&lat={lat}&category=bank")
    assert resp.status_code == 422
    err = resp.get_json()["error"]
    assert err["code"] == "too_far_from_network"
    assert err["details"]["snap_m"] > err["details"]["limit_m"] == 250.0


def test_coverage_levels_and_errors(client, home):
    body = client.get("/api/v1/coverage?level=community&category=bank&tier=15min").get_json()
    items = body["items"]
    assert items and {i["level"] for i in items} == {"community"}
    assert all(i["category"] == "bank" and i["tier"] == "15min" for i in items)
    assert all(0 <= (i["households_share"] or 0) <= 1 for i in items)
    grids = client.get("/api/v1/coverage?level=grid&category=bank&tier=15min").get_json()["items"]
    assert sum(i["buildings"] for i in grids) == sum(i["buildings"] for i in items)
    for query, code in [
        ("level=planet", "invalid_level"),
        ("category=spaceport", "unknown_venue_category"),
        ("category=bank&tier=5min", "unknown_tier"),
    ]:
        resp = client.get(f"/api/v1/coverage?{query}")
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code


def test_gaps_are_uncovered_homes_farthest_first(client, home):
    fc = client.get("/api/v1/coverage/gaps?category=pharmacy&tier=5min").get_json()
    assert fc["type"] == "FeatureCollection"
    feats = fc["features"]
    assert feats and fc["numberMatched"] >= len(feats)
    dists = [f["properties"]["distance_m"] for f in feats]
    assert all(d is None or d > 300.0 for d in dists)
    finite = [d for d in dists if d is not None]
    assert finite == sorted(finite, reverse=True)
    assert feats[0]["geometry"]["type"] == "Polygon"
    # coverage and gaps agree
    cov = client.get("/api/v1/coverage?level=community&category=pharmacy&tier=5min").get_json()
    uncovered = sum(i["buildings"] - i["buildings_covered"] for i in cov["items"])
    assert fc["numberMatched"] == uncovered
    # bbox narrows the layer
    lon, lat = home
    bbox = f"{lon - 0.003},{lat - 0.002},{lon + 0.003},{lat + 0.002}"
    small = client.get(f"/api/v1/coverage/gaps?category=pharmacy&tier=5min&bbox={bbox}").get_json()
    assert small["numberMatched"] <= fc["numberMatched"]
    resp = client.get("/api/v1/coverage/gaps?category=pharmacy")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "missing_field"
