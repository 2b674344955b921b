"""Vector tiles from ST_AsMVT: decodable, clipped to the tile, empty 200 outside the data."""

from __future__ import annotations

import math

import mapbox_vector_tile
import pytest
from sqlalchemy import text


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return x, y


def test_building_tile_holds_the_buildings_under_it(client, session) -> None:
    code, lon, lat = session.execute(
        text("SELECT code, ST_X(rep_point), ST_Y(rep_point) FROM buildings ORDER BY code LIMIT 1")
    ).one()
    x, y = tile_of(lon, lat, 16)
    resp = client.get(f"/tiles/buildings/16/{x}/{y}.mvt")
    assert resp.status_code == 200
    assert resp.mimetype == "application/vnd.mapbox-vector-tile"
    decoded = mapbox_vector_tile.decode(resp.data)
    features = decoded["buildings"]["features"]
    assert code in {f["properties"]["code"] for f in features}
    assert all("leader_name" not in f["properties"] for f in features)
    # the tile holds exactly the buildings whose footprint intersects its envelope
    expected = session.scalar(
        text(
            "SELECT count(*) FROM buildings WHERE ST_Intersects(ST_Transform(geom, 3857), "
            "ST_TileEnvelope(16, :x, :y))"
        ),
        {"x": x, "y": y},
    )
    assert len(features) == expected


def test_grid_tile_has_only_live_grids(client, session) -> None:
    lon, lat = session.execute(
        text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grids LIMIT 1"
        )
    ).one()
    x, y = tile_of(lon, lat, 14)
    decoded = mapbox_vector_tile.decode(client.get(f"/tiles/grids/14/{x}/{y}.mvt").data)
    codes = {f["properties"]["code"] for f in decoded["grids"]["features"]}
    assert codes and all(len(c) == 15 for c in codes)


def test_tile_outside_the_data_is_an_empty_200(client) -> None:
    resp = client.get("/tiles/buildings/16/0/0.mvt")
    assert resp.status_code == 200
    assert mapbox_vector_tile.decode(resp.data) == {}


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/tiles/buildings/23/0/0.mvt", 400, "invalid_tile"),
        ("/tiles/buildings/3/8/0.mvt", 400, "invalid_tile"),
        ("/tiles/requests/3/1/1.mvt", 404, "unknown_layer"),
    ],
)
def test_bad_tile_addresses(client, url, status, code) -> None:
    resp = client.get(url)
    assert resp.status_code == status
    assert resp.get_json()["error"]["code"] == code


def test_gcj02_display_crs_shifts_geojson_and_tiles(client, session) -> None:
    from geo.crs import wgs84_to_gcj02
    from tests.factories import venue

    v = venue(session, "北京站", "community_centre", 116.42079, 39.90105)
    session.commit()
    bbox = "116.41,39.89,116.44,39.91"
    plain = client.get(f"/api/v1/layers/venues?bbox={bbox}").get_json()["features"]
    shifted = client.get(f"/api/v1/layers/venues?bbox={bbox}&crs=gcj02").get_json()["features"]
    assert [f["id"] for f in plain] == [f["id"] for f in shifted] == [v.id]
    gx, gy = wgs84_to_gcj02(116.42079, 39.90105)
    assert shifted[0]["geometry"]["coordinates"] == pytest.approx([gx, gy], abs=1e-7)
    assert plain[0]["geometry"]["coordinates"] == pytest.approx([116.42079, 39.90105], abs=1e-7)
    assert client.get("/api/v1/layers/venues?crs=mars").get_json()["error"]["code"] == (
        "unknown_crs"
    )
    # a tile drawn for GCJ-02 holds the venue at its shifted position
    x, y = tile_of(gx, gy, 18)
    decoded = mapbox_vector_tile.decode(client.get(f"/tiles/venues/18/{x}/{y}.mvt?crs=gcj02").data)
    assert [f["properties"]["name"] for f in decoded["venues"]["features"]] == ["北京站"]
    wx, wy = tile_of(116.42079, 39.90105, 18)
    assert (wx, wy) != (x, y)
    raw = mapbox_vector_tile.decode(client.get(f"/tiles/venues/18/{wx}/{wy}.mvt?crs=gcj02").data)
    assert raw == {}
