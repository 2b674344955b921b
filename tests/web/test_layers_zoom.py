"""GET /api/v1/layers/<layer>?zoom=: outlines simplified to what the map's zoom can show."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from sqlalchemy import text

from layers.features import zoom_geometry_sql
from tests.factories import X0, Y0, mini_district, venue

BBOX = f"{X0 - 0.001},{Y0 - 0.001},{X0 + 0.021},{Y0 + 0.011}"


def _wiggly_box(x0: float, y0: float, x1: float, y1: float, n: int, amp_deg: float) -> Polygon:
    """A box whose edges carry ``n`` vertices each, moved by up to ``amp_deg`` sideways."""
    rng = np.random.default_rng(7)
    t = np.linspace(0, 1, n, endpoint=False)
    edges = [
        np.column_stack([x0 + (x1 - x0) * t, np.full(n, y0)]),
        np.column_stack([np.full(n, x1), y0 + (y1 - y0) * t]),
        np.column_stack([x1 - (x1 - x0) * t, np.full(n, y1)]),
        np.column_stack([np.full(n, x0), y1 - (y1 - y0) * t]),
    ]
    ring = np.concatenate(edges)
    ring += rng.uniform(-amp_deg, amp_deg, ring.shape)
    return Polygon(ring)


@pytest.fixture
def wiggly(session):
    m = mini_district(session)
    west = _wiggly_box(X0, Y0, X0 + 0.01, Y0 + 0.01, n=200, amp_deg=2e-6)  # ±0.2 m
    session.execute(
        text("UPDATE grids SET geom = ST_GeomFromText(:w, 4326) WHERE code = :c"),
        {"w": MultiPolygon([west]).wkt, "c": m.west.code},
    )
    venue(session, "党群服务中心", "community_centre", X0 + 0.005123456, Y0 + 0.004123456)
    session.commit()
    return m, west


def _coords(geom: dict) -> int:
    return int(shapely.get_num_coordinates(shape(geom)))


def test_zoom_simplifies_grid_outlines_within_half_a_pixel(client, wiggly) -> None:
    m, west = wiggly
    full = client.get(f"/api/v1/layers/grids?bbox={BBOX}").get_json()
    z12 = client.get(f"/api/v1/layers/grids?bbox={BBOX}&zoom=12").get_json()
    by_code = {f["properties"]["code"]: f for f in full["features"]}
    by_code_z = {f["properties"]["code"]: f for f in z12["features"]}
    assert set(by_code) == set(by_code_z) == {m.west.code, m.east.code}
    assert by_code_z[m.west.code]["properties"] == by_code[m.west.code]["properties"]
    assert _coords(by_code[m.west.code]["geometry"]) == 801  # stored detail without a zoom
    simple = shape(by_code_z[m.west.code]["geometry"])
    assert _coords(by_code_z[m.west.code]["geometry"]) < 20
    assert simple.is_valid and not simple.is_empty
    half_px_deg = 360 / (256 * 2**12) / 2
    assert simple.hausdorff_distance(west) <= half_px_deg
    assert abs(simple.area - west.area) / west.area < 0.01
    # at zoom 20 half a pixel (~0.07 m) is less than the wiggles (±0.2 m): the detail is back
    z20 = client.get(f"/api/v1/layers/grids?bbox={BBOX}&zoom=20").get_json()
    z20_west = next(f for f in z20["features"] if f["properties"]["code"] == m.west.code)
    assert _coords(z20_west["geometry"]) > 10 * _coords(by_code_z[m.west.code]["geometry"])


def test_zoom_rounds_coordinates_to_what_a_pixel_shows(client, wiggly) -> None:
    fc = client.get(f"/api/v1/layers/grids?bbox={BBOX}&zoom=12").get_json()
    xy = shapely.get_coordinates(shape(fc["features"][0]["geometry"]))
    decimals = max(len(repr(float(v)).split(".")[1]) for v in xy.ravel())
    assert decimals <= 5
    sql, params = zoom_geometry_sql(12)
    assert "ST_SimplifyPreserveTopology" in sql and params["simplify_deg"] == pytest.approx(
        360 / (256 * 4096) / 2
    )
    assert zoom_geometry_sql(None) == ("ST_AsGeoJSON(t.geom, 7)", {})


def test_points_are_not_simplified_nor_rounded(client, wiggly) -> None:
    fc = client.get(f"/api/v1/layers/venues?bbox={BBOX}&zoom=11").get_json()
    lon, lat = fc["features"][0]["geometry"]["coordinates"]
    assert lon == pytest.approx(X0 + 0.005123456, abs=1e-7)
    assert lat == pytest.approx(Y0 + 0.004123456, abs=1e-7)


@pytest.mark.parametrize("zoom", ["abc", "1.5", "-1", "25", "999"])
def test_bad_zoom_is_a_400(client, wiggly, zoom) -> None:
    resp = client.get(f"/api/v1/layers/grids?bbox={BBOX}&zoom={zoom}")
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["code"] == "invalid_field" and err["details"]["field"] == "zoom"
