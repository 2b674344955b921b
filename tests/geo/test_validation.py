"""geo.validation on crafted geometry: every finding code, its severity, numbers and shape."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
import shapely.affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from geo.validation import (
    BLOCKING,
    SEVERITY,
    WARNING,
    ValidationRules,
    blocking,
    households_per_grid,
    validate_grids,
)

UTM = pyproj.CRS.from_epsg(32648)  # Chengdu
_TO_LONLAT = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
X0, Y0 = 400_000.0, 3_390_000.0
COMMUNITY_CODE = "510107001001"


def ll(geom):
    """A UTM geometry (metres from X0, Y0) in lon/lat."""
    moved = shapely.affinity.translate(geom, X0, Y0)
    return shapely.transform(
        moved, lambda xy: np.column_stack(_TO_LONLAT.transform(xy[:, 0], xy[:, 1]))
    )


def code(seq: int) -> str:
    return f"{COMMUNITY_CODE}{seq:03d}"


COMMUNITY = box(0, 0, 200, 100)


def run(grids, codes=None, **kw):
    codes = codes or [code(i + 1) for i in range(len(grids))]
    return validate_grids(
        [ll(g) if g is not None else None for g in grids],
        codes,
        ll(kw.pop("community", COMMUNITY)),
        community_code=COMMUNITY_CODE,
        utm_crs=UTM,
        **kw,
    )


def by_code(findings, c):
    return [f for f in findings if f.code == c]


def test_clean_tiling_has_no_findings():
    assert run([box(0, 0, 100, 100), box(100, 0, 200, 100)]) == []


def test_invalid_geometry_reports_reason_location_and_repair():
    bowtie = Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    findings = run([bowtie, box(100, 0, 200, 100)])
    (f,) = by_code(findings, "invalid_geometry")
    assert f.severity == BLOCKING and f.grids == (0,)
    assert "Self-intersection" in f.params["reason"]
    lon, lat = f.params["location"]
    centre = ll(Point(50, 50))
    assert abs(lon - centre.x) < 1e-6 and abs(lat - centre.y) < 1e-6
    assert f.geometry_lonlat.is_valid and not f.geometry_lonlat.is_empty
    # make_valid keeps the two triangles: half of the square
    assert f.params["repaired_area_m2"] == pytest.approx(5000, rel=1e-3)
    # the other checks run on the repair: the two missing triangles are gaps
    gaps = by_code(findings, "gap")
    assert sum(g.params["area_m2"] for g in gaps) == pytest.approx(5000, rel=1e-3)


def test_overlap_area_and_geometry():
    findings = run([box(0, 0, 110, 100), box(100, 0, 200, 100)])
    (f,) = by_code(findings, "overlap")
    assert f.severity == BLOCKING
    assert f.params["area_m2"] == pytest.approx(1000, rel=1e-3)
    assert f.params["grids"] == [code(1), code(2)]
    assert f.geometry_lonlat.equals_exact(ll(box(100, 0, 110, 100)), 1e-7) or (
        f.geometry_lonlat.symmetric_difference(ll(box(100, 0, 110, 100))).area < 1e-12
    )


def test_overlap_below_tolerance_is_float_noise():
    findings = run([box(0, 0, 100.005, 100), box(100, 0, 200, 100)])  # 0.5 m²
    assert by_code(findings, "overlap") == []
    strict = run(
        [box(0, 0, 100.005, 100), box(100, 0, 200, 100)], rules=ValidationRules(min_area_m2=0.1)
    )
    assert len(by_code(strict, "overlap")) == 1


def test_gap_inside_the_community():
    findings = run([box(0, 0, 100, 100), box(120, 0, 200, 100)])
    (f,) = by_code(findings, "gap")
    assert f.severity == BLOCKING and f.params["area_m2"] == pytest.approx(2000, rel=1e-3)


def test_outside_the_community_names_the_other_community():
    other = box(200, 0, 400, 100)
    findings = run(
        [box(0, 0, 100, 100), box(100, 0, 250, 100)],
        other_communities_lonlat={
            "510107001002": ll(other),
            "510107001003": ll(box(0, 500, 1, 501)),
        },
    )
    (f,) = by_code(findings, "outside_community")
    assert f.severity == BLOCKING and f.grids == (1,)
    assert f.params["area_m2"] == pytest.approx(5000, rel=1e-3)
    assert f.params["other_communities"] == ["510107001002"]


def test_building_cut_by_a_boundary():
    buildings = [box(90, 40, 110, 60), box(10, 10, 30, 30)]
    findings = run(
        [box(0, 0, 100, 100), box(100, 0, 200, 100)],
        building_geoms_lonlat=[ll(b) for b in buildings],
        building_codes=["B1", "B2"],
    )
    (f,) = by_code(findings, "building_cut")
    assert f.severity == WARNING
    assert f.params["building"] == "B1" and sorted(f.params["grids"]) == [code(1), code(2)]
    assert f.params["shares"] == pytest.approx([0.5, 0.5], abs=1e-3)


def test_households_out_of_range_from_building_points():
    pts = [Point(50, 50), Point(60, 50), Point(150, 50)]
    hh = [200, 150, 600]
    findings = run(
        [box(0, 0, 100, 100), box(100, 0, 200, 100)],
        building_rep_points_lonlat=[ll(p) for p in pts],
        building_households=hh,
    )
    (f,) = by_code(findings, "households_out_of_range")
    assert f.severity == WARNING and f.params == {
        "grid": code(2),
        "households": 600,
        "min": 300,
        "max": 500,
    }
    assert blocking(findings) == []


def test_households_on_a_shared_border_go_to_the_lowest_code():
    grids = [ll(box(0, 0, 100, 100)), ll(box(100, 0, 200, 100))]
    border = shapely.get_coordinates(grids[0])  # a vertex on the shared edge
    on_edge = [Point(p) for p in border if abs(p[0] - grids[1].bounds[0]) < 1e-12]
    assert on_edge
    per = households_per_grid(grids, [code(2), code(1)], [on_edge[0]], [7])
    assert per.tolist() == [0, 7]  # the second grid has the lower code


def test_codes_missing_duplicate_and_malformed():
    grids = [box(0, 0, 50, 100), box(50, 0, 100, 100), box(100, 0, 150, 100), box(150, 0, 200, 100)]
    findings = run(
        grids, codes=[None, code(2), code(2), "510107009001001"], grid_keys=["a", "b", "c", "d"]
    )
    (missing,) = by_code(findings, "code_missing")
    assert missing.grids == ("a",) and missing.params == {"grid": "#a"}
    (dup,) = by_code(findings, "code_duplicate")
    assert dup.params == {"code": code(2), "count": 2} and dup.grids == ("b", "c")
    (bad,) = by_code(findings, "code_malformed")
    assert bad.grids == ("d",) and COMMUNITY_CODE in bad.params["reason"]
    short = run([COMMUNITY], codes=["12345"])
    (f,) = by_code(short, "code_malformed")
    assert "15" in f.params["reason"]
    assert all(f.severity == BLOCKING for f in findings if f.code.startswith("code_"))


def test_non_contiguous_grid_is_a_warning():
    two_parts = MultiPolygon([box(0, 0, 100, 50), box(100, 50, 200, 100)])
    rest = MultiPolygon([box(0, 50, 100, 100), box(100, 0, 200, 50)])
    findings = run([two_parts, rest])
    nc = by_code(findings, "non_contiguous")
    assert {f.params["parts"] for f in nc} == {2} and len(nc) == 2
    assert all(f.severity == WARNING for f in nc) and blocking(findings) == []


def test_empty_geometry_and_no_grids():
    findings = run([None, COMMUNITY])
    assert [f.code for f in blocking(findings)] == ["empty_geometry"]
    line_only = ll(LineString([(0, 0), (10, 10)]))
    findings = validate_grids(
        [line_only], [code(1)], ll(COMMUNITY), community_code=COMMUNITY_CODE, utm_crs=UTM
    )
    assert "empty_geometry" in [f.code for f in findings]
    (f,) = validate_grids([], [], ll(COMMUNITY), utm_crs=UTM)
    assert f.code == "no_grids" and f.severity == BLOCKING


def test_blocking_findings_come_first_and_every_code_has_a_severity():
    findings = run(
        [box(0, 0, 110, 100), box(100, 0, 200, 100)],
        building_rep_points_lonlat=[ll(Point(10, 10))],
        building_households=[5],
    )
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=lambda s: s != BLOCKING)
    assert set(SEVERITY.values()) == {BLOCKING, WARNING}
