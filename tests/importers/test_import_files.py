"""File reading (GeoJSON / GeoPackage / Shapefile / CSV), CRS conversion, lat/lon checks and
geometry kinds; GeoPackage and Shapefile round trips through PostGIS."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import wgs84_to_bd09, wgs84_to_gcj02
from layers.errors import MinqingError
from layers.importers.files import (
    CHINA,
    ReferenceBox,
    check_lonlat,
    conform_geometries,
    load_features,
    normalise_crs,
)
from layers.importers.osm_read import ImportSummary
from layers.importers.service import import_file

logger = logging.getLogger(__name__)

GEOD = pyproj.Geod(ellps="WGS84")
# real places: Chengdu (Yulin), Kashgar (western China, lon < 90), Helsinki
CHENGDU = (104.0600, 30.6300)
KASHGAR = (75.9900, 39.4700)
HELSINKI = (24.9400, 60.1700)


def _points(lon0: float, lat0: float, n: int = 20, step: float = 0.001) -> list[Point]:
    return [Point(lon0 + step * (i % 5), lat0 + step * (i // 5)) for i in range(n)]


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.code


def _max_error_m(a: np.ndarray, b: np.ndarray) -> float:
    _, _, dist = GEOD.inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    return float(np.max(dist))


# --------------------------------------------------------------------------- CRS names


def test_normalise_crs() -> None:
    assert normalise_crs("GCJ-02") == "gcj02"
    assert normalise_crs("bd09") == "bd09"
    assert normalise_crs("EPSG:4326") == "wgs84"
    assert normalise_crs("epsg:32648") == "EPSG:32648"
    for bad in ("EPSG:999999", "mars", "EPSG:abc", ""):
        with pytest.raises(MinqingError) as err:
            normalise_crs(bad)
        assert _code(err) == "unknown_crs"
        assert repr(bad).strip("'") in err.value.message("en")


# --------------------------------------------------------------------------- lat/lon order


def _geoms(points: list[Point]) -> np.ndarray:
    return np.array(points, dtype=object)


def _swap(points: list[Point]) -> list[Point]:
    return [Point(p.y, p.x) for p in points]


def test_lonlat_as_given_passes_anywhere_in_the_world() -> None:
    for place in (CHENGDU, KASHGAR, HELSINKI):
        keep = check_lonlat(_geoms(_points(*place)), references=[CHINA])
        assert keep.all()


def test_swapped_beyond_valid_latitudes_is_diagnosed() -> None:
    with pytest.raises(MinqingError) as err:
        check_lonlat(_geoms(_swap(_points(*CHENGDU))), references=[CHINA], path="x.csv")
    assert _code(err) == "latlon_swapped"
    assert "swapped" in err.value.message("en")


def test_swapped_within_valid_ranges_is_diagnosed_by_reference_boxes() -> None:
    # Kashgar swapped is (39.47 E, 75.99 N): a valid place, but outside China; swapped back
    # it is inside China
    with pytest.raises(MinqingError) as err:
        check_lonlat(_geoms(_swap(_points(*KASHGAR))), references=[CHINA])
    assert _code(err) == "latlon_swapped"
    assert "China" in err.value.message("en")
    # Helsinki swapped (60.17 E, 24.94 N) is a valid place; only an existing district there
    # makes the swap visible
    swapped = _geoms(_swap(_points(*HELSINKI)))
    assert check_lonlat(swapped, references=[CHINA]).all()
    district = ReferenceBox("district 990000", (24.8, 60.1, 25.1, 60.3))
    with pytest.raises(MinqingError) as err:
        check_lonlat(swapped, references=[district, CHINA])
    assert "district 990000" in err.value.message("en")


def test_few_out_of_range_rows_are_rejected_not_the_file() -> None:
    points = [*_points(*CHENGDU), Point(30.6, 104.06)]
    summary = ImportSummary(source="t")
    keep = check_lonlat(_geoms(points), references=[CHINA], summary=summary, frame="venues")
    assert keep.sum() == len(points) - 1 and not keep[-1]
    assert summary.rejected == {"venues": {"coordinates_out_of_range": 1}}


def test_projected_coordinates_without_crs_are_refused() -> None:
    xy = [Point(404_000 + 10 * i, 3_389_000) for i in range(10)]  # UTM 48N metres
    with pytest.raises(MinqingError) as err:
        check_lonlat(_geoms(xy), references=[CHINA], path="roads.geojson")
    assert _code(err) == "import_coordinates_out_of_range"
    assert "--crs" in err.value.message("en")


# --------------------------------------------------------------------------- geometry kinds


def test_conform_geometries_repairs_and_rejects() -> None:
    bow_tie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    geoms = np.array(
        [
            box(0, 0, 1, 1),
            bow_tie,
            Point(0, 0),
            LineString([(0, 0), (1, 1)]),
            None,
            shapely.MultiPolygon([box(0, 0, 1, 1), box(2, 2, 4, 4)]),
        ],
        dtype=object,
    )
    summary = ImportSummary(source="t")
    keep, out = conform_geometries(geoms, "polygon", single=True, summary=summary, frame="b")
    assert keep.tolist() == [True, True, False, False, False, True]
    assert all(isinstance(g, Polygon) and g.is_valid for g in out[keep])
    assert out[5].area == 4  # the largest part
    assert summary.repaired["b"] == {"make_valid": 1, "multipart_largest_kept": 2}
    assert summary.rejected["b"] == {
        "wrong_geometry_type:Point": 1,
        "wrong_geometry_type:LineString": 1,
        "empty_geometry": 1,
    }
    summary = ImportSummary(source="t")
    keep, out = conform_geometries(geoms[:2], "polygon", summary=summary, frame="a")
    assert all(g.geom_type == "MultiPolygon" for g in out[keep])


def test_points_and_all_wrong_types() -> None:
    summary = ImportSummary(source="t")
    geoms = np.array([MultiPoint([(1, 1)]), MultiPoint([(1, 1), (2, 2)]), Point(3, 3)])
    keep, out = conform_geometries(geoms, "point", summary=summary, frame="v")
    assert keep.tolist() == [True, False, True] and out[0] == Point(1, 1)
    assert summary.rejected["v"] == {"multipoint_with_several_points": 1}
    with pytest.raises(MinqingError) as err:
        conform_geometries(
            np.array([Point(0, 0), Point(1, 1)]), "polygon", summary=summary, frame="areas"
        )
    assert _code(err) == "wrong_geometry_type"
    assert "Point ×2" in err.value.message("en") and "polygon" in err.value.message("en")


# --------------------------------------------------------------------------- reading files


def test_csv_with_chinese_headers_gb18030_and_gcj02(tmp_path: Path) -> None:
    lon = np.array([CHENGDU[0] + 0.001 * i for i in range(5)])
    lat = np.full(5, CHENGDU[1])
    glon, glat = wgs84_to_gcj02(lon, lat)
    rows = "\n".join(
        f"便利店{i},convenience,{x:.9f},{y:.9f}"
        for i, (x, y) in enumerate(zip(glon, glat, strict=True))
    )
    path = tmp_path / "shops.csv"
    path.write_bytes(f"名称,category,经度,纬度\n{rows}\nbad,convenience,abc,30\n".encode("gb18030"))
    loaded = load_features(path, kind="point", frame="venues", crs="gcj02")
    assert loaded.rows_read == 6 and len(loaded.frame) == 5
    assert loaded.summary.rejected["venues"] == {"empty_geometry": 1}
    assert list(loaded.frame["名称"]) == [f"便利店{i}" for i in range(5)]
    xy = shapely.get_coordinates(loaded.frame.geometry.to_numpy())
    assert _max_error_m(xy, np.column_stack([lon, lat])) < 0.01


def test_file_errors(tmp_path: Path) -> None:
    cases = {
        "missing.geojson": (None, "import_not_found"),
        "empty.geojson": (b"", "import_empty"),
        "nofeatures.geojson": (b'{"type": "FeatureCollection", "features": []}', "import_empty"),
        "broken.geojson": (
            b'{"type": "FeatureCollection", "features": [{"type": "Fea',
            "import_corrupt",
        ),
        "garbage.gpkg": (b"\x00\x01not a geopackage" * 10, "import_corrupt"),
        "table.xlsx": (b"PK\x03\x04", "import_format"),
        "header_only.csv": (b"name,lon,lat\n", "import_empty"),
        "no_coords.csv": (b"name,city\na,b\n", "csv_no_lonlat"),
    }
    for name, (content, code) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(MinqingError) as err:
            load_features(path, kind="point", frame="venues")
        assert _code(err) == code, name
        assert name in err.value.message("en") or str(path) in err.value.message("en")


# --------------------------------------------------------------------------- into PostGIS


def test_geopackage_in_web_mercator_round_trips(session: Session, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x0, y0 = HELSINKI
    polys = [
        shapely.Polygon(
            [
                (x0 + dx, y0 + dy),
                (x0 + dx + 0.0004, y0 + dy + 0.00003),
                (x0 + dx + 0.00037, y0 + dy + 0.0003),
                (x0 + dx - 0.00002, y0 + dy + 0.00027),
            ]
        )
        for dx, dy in rng.uniform(0, 0.02, size=(30, 2))
    ]
    wgs = gpd.GeoDataFrame(
        {"code": [f"T-GPKG-{i:03d}" for i in range(30)], "levels": 4},
        geometry=polys,
        crs="EPSG:4326",
    )
    path = tmp_path / "buildings.gpkg"
    wgs.to_crs("EPSG:3857").to_file(path, driver="GPKG", layer="buildings")
    report = import_file(session=session, path=path, layer="buildings")
    assert report.stats["source_crs"].startswith("EPSG:3857")
    assert report.layers["buildings"].inserted == 30
    stored = dict(
        session.execute(
            text("SELECT code, ST_AsBinary(geom) FROM buildings WHERE code LIKE 'T-GPKG-%'")
        ).all()
    )
    worst = 0.0
    for code, poly in zip(wgs["code"], wgs.geometry, strict=True):
        got = shapely.normalize(shapely.from_wkb(bytes(stored[code])))
        want = shapely.normalize(poly)
        worst = max(
            worst, _max_error_m(shapely.get_coordinates(got), shapely.get_coordinates(want))
        )
    logger.info("GeoPackage EPSG:3857 round trip: max error %.2e m", worst)
    assert worst < 0.01


@pytest.mark.parametrize("zipped", [False, True])
def test_shapefile_in_utm_round_trips(session: Session, tmp_path: Path, zipped: bool) -> None:
    points = _points(*CHENGDU, n=25)
    wgs = gpd.GeoDataFrame(
        {
            "name": [f"药店{i}" for i in range(25)],
            "category": ["pharmacy"] * 24 + ["casino"],
        },
        geometry=points,
        crs="EPSG:4326",
    )
    folder = tmp_path / "shp"
    folder.mkdir()
    shp = folder / "venues.shp"
    wgs.to_crs("EPSG:32648").to_file(shp, encoding="utf-8")
    path = shp
    if zipped:
        path = tmp_path / "venues.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for part in folder.iterdir():
                zf.write(part, part.name)
    report = import_file(session=session, path=path, layer="venues")
    rep = report.layers["venues"]
    assert report.stats["format"] == ("zipped Shapefile" if zipped else "Shapefile")
    assert (rep.imported, rep.inserted) == (24, 24)
    assert rep.rejected == {"unknown_category": 1} and rep.examples["unknown_category"] == [
        "casino"
    ]
    stored = dict(
        session.execute(
            text(
                "SELECT name, ST_AsBinary(geom) FROM venues "
                "WHERE name LIKE '药店%' AND osm_id LIKE 'F%'"
            )
        ).all()
    )
    assert len(stored) == 24
    got = np.array(
        [shapely.get_coordinates(shapely.from_wkb(bytes(stored[f"药店{i}"])))[0] for i in range(24)]
    )
    want = shapely.get_coordinates(np.array(points[:24], dtype=object))
    error = _max_error_m(got, want)
    logger.info("Shapefile EPSG:32648 round trip: max error %.2e m", error)
    assert error < 0.01


def test_csv_venues_with_lonlat_columns_bd09_and_rerun(session: Session, tmp_path: Path) -> None:
    lon = np.array([CHENGDU[0] + 0.002 * i for i in range(4)])
    lat = np.full(4, CHENGDU[1])
    blon, blat = wgs84_to_bd09(lon, lat)
    path = tmp_path / "venues.csv"
    path.write_text(
        "name,category,opening_hours,capacity,x_bd,y_bd\n"
        f"玉林社区卫生服务站,clinic,Mo-Fr 08:00-17:30,20,{blon[0]:.9f},{blat[0]:.9f}\n"
        f"芳草街党群服务中心,党群服务中心,,120,{blon[1]:.9f},{blat[1]:.9f}\n"
        f"玉林菜市场,market,,,{blon[2]:.9f},{blat[2]:.9f}\n"
        f"某会所,casino,,,{blon[3]:.9f},{blat[3]:.9f}\n",
        encoding="utf-8",
    )
    report = import_file(
        session=session, path=path, layer="venues", crs="bd09", lon_col="x_bd", lat_col="y_bd"
    )
    rep = report.layers["venues"]
    assert (rep.imported, rep.inserted, rep.rejected) == (3, 3, {"unknown_category": 1})
    rows = {
        r.name: r
        for r in session.execute(
            text(
                "SELECT name, category, opening_hours, capacity, ST_X(geom) AS x, ST_Y(geom) AS y "
                "FROM venues WHERE osm_id LIKE 'F%' AND (name LIKE '%玉林%' OR name LIKE '芳草%')"
            )
        ).all()
    }
    assert rows["芳草街党群服务中心"].category == "community_centre"  # matched by its zh name
    assert rows["玉林社区卫生服务站"].opening_hours == "Mo-Fr 08:00-17:30"
    assert rows["玉林社区卫生服务站"].capacity == 20
    got = np.array(
        [[rows[n].x, rows[n].y] for n in ("玉林社区卫生服务站", "芳草街党群服务中心", "玉林菜市场")]
    )
    assert _max_error_m(got, np.column_stack([lon[:3], lat[:3]])) < 0.01
    again = import_file(
        session=session, path=path, layer="venues", crs="bd09", lon_col="x_bd", lat_col="y_bd"
    ).layers["venues"]
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
