"""`minqing import osm | file | network` against a committed database: successful imports print
their summary; every kind of bad input exits non-zero with a clear message and changes nothing."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
from click.testing import CliRunner, Result
from shapely.geometry import Point, box
from sqlalchemy import create_engine, text

from tests import db_support
from tests.shared_data import shared_data_dir
from web.cli import main

logger = logging.getLogger(__name__)

TABLES = (
    "areas",
    "grids",
    "generations",
    "buildings",
    "venues",
    "volunteers",
    "network_nodes",
    "network_edges",
    "network_versions",
)
CHENGDU = (104.06, 30.63)


@pytest.fixture(scope="module")
def cli_db_url(server_url: str, template_db: str) -> Iterator[str]:
    """One committed database (cloned from the template) for this module's CLI runs."""
    name = f"minqing_cli_{uuid.uuid4().hex[:10]}"
    admin = db_support.admin_engine(server_url)
    db_support.clone_database(admin, template_db, name)
    try:
        yield db_support.url_for_db(server_url, name).render_as_string(hide_password=False)
    finally:
        db_support.drop_database(admin, name)
        admin.dispose()


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=None)
    try:
        with engine.connect() as c:
            return {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


def run(url: str, *args: str) -> Result:
    result = CliRunner().invoke(main, ["import", *args], env={"DATABASE_URL": url})
    logger.info("minqing import %s -> %s\n%s", " ".join(args), result.exit_code, result.output)
    return result


# --------------------------------------------------------------------------- bad input files


def _points_geojson(path: Path, points: list[Point]) -> Path:
    gpd.GeoDataFrame(
        {"name": [f"p{i}" for i in range(len(points))], "category": "clinic"},
        geometry=points,
        crs="EPSG:4326",
    ).to_file(path, driver="GeoJSON")
    return path


def _grid_points(lon: float, lat: float, n: int = 12) -> list[Point]:
    return [Point(lon + 0.001 * (i % 4), lat + 0.001 * (i // 4)) for i in range(n)]


def _swapped_csv(path: Path, lon: float, lat: float) -> Path:
    rows = "\n".join(
        f"诊所{i},clinic,{p.y:.6f},{p.x:.6f}" for i, p in enumerate(_grid_points(lon, lat))
    )
    path.write_text(f"name,category,lon,lat\n{rows}\n", encoding="utf-8")
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (CLI arguments, expected words in the message)."""
    (tmp / "empty.osm").write_bytes(b"")
    (tmp / "corrupt.osm").write_text('<?xml version="1.0"?>\n<osm version="0.6"><node id="1"')
    (tmp / "nothing.osm").write_text('<?xml version="1.0"?>\n<osm version="0.6"></osm>')
    (tmp / "empty.geojson").write_bytes(b"")
    (tmp / "nofeatures.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (tmp / "corrupt.geojson").write_text('{"type": "FeatureCollection", "features": [{"ty')
    (tmp / "corrupt.zip").write_bytes(b"PK\x03\x04 truncated zip")
    points = _points_geojson(tmp / "points.geojson", _grid_points(*CHENGDU))
    lines = tmp / "lines.geojson"
    gpd.GeoDataFrame(
        {"name": ["a"]},
        geometry=[box(*CHENGDU, CHENGDU[0] + 0.01, CHENGDU[1] + 0.01)],
        crs="EPSG:4326",
    ).to_file(lines, driver="GeoJSON")
    _swapped_csv(tmp / "swapped_chengdu.csv", *CHENGDU)
    _swapped_csv(tmp / "swapped_kashgar.csv", 75.99, 39.47)
    return {
        "osm_empty": (["osm", str(tmp / "empty.osm")], "Nothing to import"),
        "osm_corrupt": (["osm", str(tmp / "corrupt.osm")], "looks corrupt"),
        "osm_nothing": (["osm", str(tmp / "nothing.osm")], "no buildings, venues or walkable"),
        "osm_missing": (["osm", str(tmp / "missing.osm")], "File not found"),
        "file_empty": (["file", str(tmp / "empty.geojson"), "--layer", "venues"], "empty"),
        "file_no_features": (
            ["file", str(tmp / "nofeatures.geojson"), "--layer", "venues"],
            "no features",
        ),
        "file_corrupt": (["file", str(tmp / "corrupt.geojson"), "--layer", "venues"], "corrupt"),
        "zip_corrupt": (["file", str(tmp / "corrupt.zip"), "--layer", "venues"], "corrupt"),
        "unknown_crs_epsg": (
            ["file", str(points), "--layer", "venues", "--crs", "EPSG:999999"],
            "Unknown crs 'EPSG:999999'",
        ),
        "unknown_crs_name": (
            ["file", str(points), "--layer", "venues", "--crs", "mars"],
            "Unknown crs 'mars'",
        ),
        "unknown_layer": (["file", str(points), "--layer", "roads"], "Unknown layer 'roads'"),
        "latlon_swapped_out_of_range": (
            ["file", str(tmp / "swapped_chengdu.csv"), "--layer", "venues"],
            "look swapped",
        ),
        "latlon_swapped_outside_china": (
            ["file", str(tmp / "swapped_kashgar.csv"), "--layer", "venues"],
            "look swapped",
        ),
        "wrong_geometry_areas": (
            ["file", str(points), "--layer", "areas"],
            "needs polygon geometries",
        ),
        "wrong_geometry_venues": (
            ["file", str(lines), "--layer", "venues"],
            "needs point geometries",
        ),
        "wrong_geometry_network": (["network", str(points)], "needs line geometries"),
    }


BAD_CASES = [
    "osm_empty",
    "osm_corrupt",
    "osm_nothing",
    "osm_missing",
    "file_empty",
    "file_no_features",
    "file_corrupt",
    "zip_corrupt",
    "unknown_crs_epsg",
    "unknown_crs_name",
    "unknown_layer",
    "latlon_swapped_out_of_range",
    "latlon_swapped_outside_china",
    "wrong_geometry_areas",
    "wrong_geometry_venues",
    "wrong_geometry_network",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exits_non_zero_and_changes_nothing(
    cli_db_url: str, tmp_path: Path, case: str
) -> None:
    args, words = _bad_inputs(tmp_path)[case]
    before = counts(cli_db_url)
    result = run(cli_db_url, *args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Error:" in result.output and words in result.output
    assert "Traceback" not in result.output
    assert counts(cli_db_url) == before


# --------------------------------------------------------------------------- successful imports


def test_osm_import_via_cli_then_rerun(cli_db_url: str) -> None:
    path = shared_data_dir() / "chengdu" / "central_2018.osm"
    before = counts(cli_db_url)
    result = run(cli_db_url, "osm", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["layers"]["buildings"]["inserted"] == 800
    after = counts(cli_db_url)
    assert after["buildings"] == before["buildings"] + 800
    assert after["venues"] == before["venues"] + report["layers"]["venues"]["inserted"]
    assert after["network_edges"] == report["layers"]["network"]["imported"]

    again = run(cli_db_url, "osm", str(path))
    assert again.exit_code == 0, again.output
    assert "buildings: 800 imported (0 inserted, 0 updated, 800 unchanged)" in again.output
    assert "network: unchanged" in again.output
    assert counts(cli_db_url) == after


def test_areas_and_network_via_cli(cli_db_url: str, tmp_path: Path) -> None:
    districts = gpd.read_file(shared_data_dir() / "districts_gcj02.geojson")
    wuhou = tmp_path / "wuhou.geojson"
    districts[districts["adcode"].astype(str) == "510107"].to_file(wuhou, driver="GeoJSON")
    result = run(cli_db_url, "file", str(wuhou), "--layer", "areas", "--crs", "gcj02")
    assert result.exit_code == 0, result.output
    assert "areas: 1 imported" in result.output and "source_crs: gcj02" in result.output

    roads = shared_data_dir() / "chengdu" / "yulin_roads_wgs84.geojson"
    result = run(cli_db_url, "network", str(roads), "--snap-m", "0.5")
    assert result.exit_code == 0, result.output
    assert "network: replaced" in result.output and "snap_m: 0.5" in result.output
    inside = db_support.scalar_on_own_connection(
        cli_db_url,
        "SELECT avg(CASE WHEN ST_Covers(a.geom, n.geom) THEN 1.0 ELSE 0 END) "
        "FROM network_nodes n, areas a WHERE a.code = '510107'",
    )
    # the Yulin roads lie in Wuhou once the boundary is converted from GCJ-02
    assert float(inside) >= 0.9
