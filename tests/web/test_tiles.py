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
