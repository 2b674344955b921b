"""The demo district as loaded into PostGIS: nesting, exact cover, codes, idempotent load."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from data.demo import DISTRICT_CODE, load_demo
from geo.codes import is_valid_grid_code

UTM = 32635  # Helsinki


def test_hierarchy_is_nested_and_sized(session) -> None:
    levels = dict(session.execute(text("SELECT level, count(*) FROM areas GROUP BY level")).all())
    assert levels["district"] == 1
    assert 3 <= levels["community"] <= 6
    assert levels["street"] >= 1
    # every child lies within its parent (1 m tolerance for reprojection)
    outside = session.execute(
        text(
            f"""SELECT c.code FROM areas c JOIN areas p ON p.id = c.parent_id
                WHERE ST_Area(ST_Difference(ST_Transform(c.geom, {UTM}),
                      ST_Buffer(ST_Transform(p.geom, {UTM}), 1))) > 1"""
        )
    ).all()
    assert outside == []
    grids_outside = session.execute(
        text(
            f"""SELECT g.code FROM grids g JOIN areas c ON c.id = g.community_id
                WHERE ST_Area(ST_Difference(ST_Transform(g.geom, {UTM}),
                      ST_Buffer(ST_Transform(c.geom, {UTM}), 1))) > 1"""
        )
    ).all()
    assert grids_outside == []


def test_grids_cover_each_community_exactly(session) -> None:
    rows = session.execute(
        text(
            f"""SELECT c.code,
                  ST_Area(ST_SymDifference(ST_Transform(c.geom, {UTM}),
                          ST_Transform(ST_Union(g.geom), {UTM}))) AS diff_m2,
                  sum(ST_Area(ST_Transform(g.geom, {UTM}))) -
                  ST_Area(ST_Transform(ST_Union(g.geom), {UTM})) AS overlap_m2
                FROM areas c JOIN grids g ON g.community_id = c.id
                WHERE c.level = 'community' GROUP BY c.id"""
        )
    ).all()
    assert rows
    for code, diff_m2, overlap_m2 in rows:
        assert diff_m2 < 1.0, code
        assert overlap_m2 < 1.0, code


def test_grid_codes_and_households(session) -> None:
    rows = session.execute(
        text(
            "SELECT g.code, c.code, g.households FROM grids g JOIN areas c ON c.id = g.community_id"
        )
    ).all()
    assert len(rows) >= 20
    for code, community_code, _ in rows:
        assert is_valid_grid_code(code)
        assert code.startswith(community_code) and code.startswith(DISTRICT_CODE)
    in_range = sum(1 for *_, h in rows if 300 <= h <= 500) / len(rows)
    assert in_range >= 0.9
    # sequences within a community are 001..n without gaps
    by_community: dict[str, list[int]] = {}
    for code, community_code, _ in rows:
        by_community.setdefault(community_code, []).append(int(code[-3:]))
    for seqs in by_community.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_buildings_venues_network_volunteers_loaded(session) -> None:
    counts = {
        t: session.scalar(text(f"SELECT count(*) FROM {t}"))
        for t in ("buildings", "venues", "network_nodes", "network_edges", "volunteers")
    }
    assert counts["buildings"] > 300 and counts["venues"] > 50
    assert counts["network_edges"] > 3000 and counts["volunteers"] == 400
    estimated = session.scalar(
        text("SELECT count(*) FROM buildings WHERE residential AND households_estimated")
    )
    assert estimated > 0
    assert all(
        re.fullmatch(r"B-[WR]\d+", c) for c in session.scalars(text("SELECT code FROM buildings"))
    )
    # each volunteer lives in a real building of the district and belongs to its community
    homeless = session.scalar(
        text(
            "SELECT count(*) FROM volunteers v WHERE NOT EXISTS (SELECT 1 FROM buildings b "
            "WHERE ST_DWithin(b.geom, v.geom, 0.00001))"
        )
    )
    assert homeless == 0
    assert session.scalar(text("SELECT count(*) FROM volunteers WHERE community_id IS NULL")) < 20


@pytest.mark.slow
def test_loading_twice_changes_nothing(committed_db) -> None:
    def snapshot():
        with committed_db.session() as s:
            return {
                t: s.scalar(text(f"SELECT count(*) FROM {t}"))
                for t in (
                    "areas",
                    "grids",
                    "generations",
                    "buildings",
                    "venues",
                    "volunteers",
                    "network_versions",
                    "users",
                )
            }

    before = snapshot()
    assert before["grids"] > 0
    assert load_demo(database=committed_db) == {"status": "already loaded"}
    assert snapshot() == before


@pytest.fixture(scope="module")
def built():
    from data.demo import build_demo

    return build_demo()


def test_demo_partition_meets_the_issue_criteria(built) -> None:
    """Each building ≥ 99.9 % in one grid; ≥ 70 % of internal boundary on streets."""
    import geopandas as gpd
    import shapely

    from data.demo import PARTITION_STREETS
    from geo.partition import boundary_street_share, building_shares

    utm = built.frames.utm_crs
    grids = built.grids.to_crs(utm)
    areas = built.areas.to_crs(utm)
    roads = built.frames.roads.to_crs(utm)
    streets = roads[roads["highway"].isin(PARTITION_STREETS)]
    footprints = shapely.make_valid(built.frames.buildings.to_crs(utm).geometry.to_numpy())
    on_street_m = internal_m = 0.0
    for community in areas[areas["level"] == "community"].itertuples():
        mine = grids[grids["community_code"] == community.code]
        reps = shapely.point_on_surface(footprints)
        inside = shapely.intersection(
            footprints[shapely.covers(community.geometry.buffer(0.01), reps)], community.geometry
        )
        shares = building_shares(gpd.GeoDataFrame(geometry=mine.geometry.values, crs=utm), inside)
        assert shares.min() >= 0.999, community.code
        share, length_m = boundary_street_share(
            gpd.GeoDataFrame(geometry=mine.geometry.values, crs=utm),
            community.geometry,
            streets,
            distance_m=15.0,
        )
        on_street_m += share * length_m
        internal_m += length_m
    assert on_street_m / internal_m >= 0.7
    assert built.grids["in_range"].mean() >= 0.9


def test_demo_build_is_deterministic(built) -> None:
    from data.demo import build_demo

    again = build_demo()
    assert list(again.grids["code"]) == list(built.grids["code"])
    assert list(again.grids.geometry.to_wkb()) == list(built.grids.geometry.to_wkb())
    assert again.volunteers["name"].tolist() == built.volunteers["name"].tolist()
    assert again.intake["seconds_ago"].tolist() == built.intake["seconds_ago"].tolist()


def test_demo_has_service_circles_on_the_network(session) -> None:
    rows = dict(
        session.execute(text("SELECT method, count(*) FROM service_circles GROUP BY method")).all()
    )
    assert rows.get("network", 0) >= 100
    assert rows.get("buffer", 0) <= rows["network"] * 0.05
