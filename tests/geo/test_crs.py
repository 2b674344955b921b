"""Tests of geo.crs: GCJ-02 / BD-09 conversions, to_wgs84 dispatch, UTM zone choice."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import shapely

from geo import crs
from tests.shared_data import shared_data_dir

GEOD = pyproj.Geod(ellps="WGS84")

# Beijing railway station, published reference values (rounded to 5 decimals, ~0.5 m each).
BJ_WGS84 = (116.42079, 39.90105)
BJ_GCJ02 = (116.42703, 39.90245)
BJ_BD09 = (116.43351, 39.90851)


def _dist_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


def _dist_m_arrays(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.mark.parametrize(
    ("func", "src", "expected", "tol_m"),
    [
        (crs.wgs84_to_gcj02, BJ_WGS84, BJ_GCJ02, 1.0),
        (crs.gcj02_to_wgs84, BJ_GCJ02, BJ_WGS84, 1.0),
        (crs.gcj02_to_bd09, BJ_GCJ02, BJ_BD09, 1.0),
        (crs.bd09_to_gcj02, BJ_BD09, BJ_GCJ02, 1.0),
        # Two chained steps between two independently rounded references: rounding compounds.
        (crs.wgs84_to_bd09, BJ_WGS84, BJ_BD09, 1.5),
        (crs.bd09_to_wgs84, BJ_BD09, BJ_WGS84, 1.5),
    ],
)
def test_beijing_station_reference_points(func, src, expected, tol_m):
    out = func(*src)
    assert isinstance(out[0], float) and isinstance(out[1], float)
    assert _dist_m(out, expected) < tol_m
    # and the shift is real: the input itself is hundreds of metres away
    assert _dist_m(src, expected) > 500


def _china_grid() -> tuple[np.ndarray, np.ndarray]:
    lon, lat = np.meshgrid(np.arange(73.0, 135.01, 0.5), np.arange(18.0, 53.01, 0.5))
    return lon.ravel(), lat.ravel()


def test_gcj02_round_trip_over_china_below_half_metre():
    lon, lat = _china_grid()
    g_lon, g_lat = crs.wgs84_to_gcj02(lon, lat)
    assert np.all(_dist_m_arrays(lon, lat, g_lon, g_lat) > 1.0)  # really shifted everywhere
    w_lon, w_lat = crs.gcj02_to_wgs84(g_lon, g_lat)
    err_m = _dist_m_arrays(lon, lat, w_lon, w_lat)
    assert err_m.max() < 0.5
    # the other direction too
    g2_lon, g2_lat = crs.wgs84_to_gcj02(*crs.gcj02_to_wgs84(lon, lat))
    assert _dist_m_arrays(lon, lat, g2_lon, g2_lat).max() < 0.5


def test_bd09_round_trip_over_china_below_half_metre():
    lon, lat = _china_grid()
    b_lon, b_lat = crs.wgs84_to_bd09(lon, lat)
    w_lon, w_lat = crs.bd09_to_wgs84(b_lon, b_lat)
    assert _dist_m_arrays(lon, lat, w_lon, w_lat).max() < 0.5
    g_lon, g_lat = crs.bd09_to_gcj02(*crs.gcj02_to_bd09(lon, lat))
    assert _dist_m_arrays(lon, lat, g_lon, g_lat).max() < 0.5


def test_gcj02_is_identity_outside_china():
    lon = np.array([24.94, -0.1276, 151.21, -74.006, 139.69])
    lat = np.array([60.17, 51.507, -33.87, 40.71, 35.69])  # Helsinki, London, Sydney, NYC, Tokyo
    for func in (crs.wgs84_to_gcj02, crs.gcj02_to_wgs84):
        out_lon, out_lat = func(lon, lat)
        np.testing.assert_array_equal(out_lon, lon)
        np.testing.assert_array_equal(out_lat, lat)
    assert crs.out_of_china(24.94, 60.17) is True
    assert crs.out_of_china(104.07, 30.66) is False


def test_vectorised_equals_scalar_calls():
    rng = np.random.default_rng(7)
    lon = np.concatenate([rng.uniform(73, 135, 40), [24.94, 151.21]])
    lat = np.concatenate([rng.uniform(18, 53, 40), [60.17, -33.87]])
    for func in (
        crs.wgs84_to_gcj02,
        crs.gcj02_to_wgs84,
        crs.gcj02_to_bd09,
        crs.bd09_to_gcj02,
        crs.wgs84_to_bd09,
        crs.bd09_to_wgs84,
    ):
        v_lon, v_lat = func(lon, lat)
        assert v_lon.shape == lon.shape
        s = np.array([func(float(x), float(y)) for x, y in zip(lon, lat, strict=True)])
        # iteration stops on the batch's worst residual, so allow sub-micrometre differences
        np.testing.assert_allclose(v_lon, s[:, 0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(v_lat, s[:, 1], rtol=0, atol=1e-9)


def test_to_wgs84_dispatch_and_errors():
    lon, lat = crs.to_wgs84(*BJ_GCJ02, "gcj02")
    assert _dist_m((lon, lat), BJ_WGS84) < 1.0
    lon, lat = crs.to_wgs84(*BJ_BD09, "BD09")
    assert _dist_m((lon, lat), BJ_WGS84) < 1.5
    assert crs.to_wgs84(*BJ_WGS84, "wgs84") == BJ_WGS84
    # an EPSG CRS goes through pyproj with x = easting
    x, y = pyproj.Transformer.from_crs(4326, 32648, always_xy=True).transform(104.07, 30.66)
    lon, lat = crs.to_wgs84(x, y, "EPSG:32648")
    assert _dist_m((lon, lat), (104.07, 30.66)) < 1e-3
    arr_lon, _ = crs.to_wgs84(np.array([x, x]), np.array([y, y]), "epsg:32648")
    assert arr_lon.shape == (2,)
    # from_wgs84 inverts it
    gx, gy = crs.from_wgs84(*crs.to_wgs84(*BJ_GCJ02, "gcj02"), "gcj02")
    assert _dist_m((gx, gy), BJ_GCJ02) < 0.01
    for bad in ("mars", "EPSG:999999", "", "EPSG:abc"):
        with pytest.raises(ValueError, match="unknown crs"):
            crs.to_wgs84(1.0, 2.0, bad)
    assert "gcj02" in crs.SUPPORTED_CRS


def test_utm_zone_choice():
    # Chengdu, a cloud of points around it
    rng = np.random.default_rng(1)
    lon = 104.07 + rng.normal(0, 0.05, 200)
    lat = 30.66 + rng.normal(0, 0.05, 200)
    assert crs.utm_epsg_for_lonlat(lon, lat) == 32648
    # one stray far-away point does not move the median-based centre
    assert crs.utm_epsg_for_lonlat(np.append(lon, 0.0), np.append(lat, 0.0)) == 32648
    assert crs.utm_crs_for_lonlat(lon, lat) == pyproj.CRS.from_epsg(32648)
    assert crs.utm_epsg_for_lonlat(24.94, 60.17) == 32635  # Helsinki
    assert crs.utm_epsg_for_lonlat(151.21, -33.87) == 32756  # Sydney, southern hemisphere
    assert crs.utm_epsg_for_lonlat(-58.38, -34.60) == 32721  # Buenos Aires
    assert crs.utm_epsg_for_lonlat(5.32, 60.39) == 32632  # Bergen, Norway exception 32V
    with pytest.raises(ValueError):
        crs.utm_epsg_for_lonlat(np.array([np.nan]), np.array([np.nan]))
    with pytest.raises(ValueError):
        crs.utm_epsg_for_lonlat(500000.0, 3400000.0)  # metres, not lon/lat


def test_wuhou_boundary_converted_from_gcj02_fits_wgs84_roads():
    data = shared_data_dir()
    districts = json.loads((data / "districts_gcj02.geojson").read_text(encoding="utf-8"))
    feature = next(f for f in districts["features"] if f["properties"]["adcode"] == "510107")
    boundary_gcj = shapely.geometry.shape(feature["geometry"])
    boundary_wgs = shapely.transform(
        boundary_gcj, lambda xy: np.column_stack(crs.to_wgs84(xy[:, 0], xy[:, 1], "gcj02"))
    )
    assert boundary_wgs.is_valid

    roads = json.loads((data / "chengdu" / "yulin_roads_wgs84.geojson").read_text("utf-8"))
    coords = np.array(
        [xy for f in roads["features"] for xy in shapely.geometry.shape(f["geometry"]).coords]
    )
    assert len(coords) > 1000
    shapely.prepare(boundary_wgs)
    shapely.prepare(boundary_gcj)
    share_wgs = shapely.contains_xy(boundary_wgs, coords[:, 0], coords[:, 1]).mean()
    share_gcj = shapely.contains_xy(boundary_gcj, coords[:, 0], coords[:, 1]).mean()
    assert share_wgs >= 0.91
    assert share_gcj < share_wgs
