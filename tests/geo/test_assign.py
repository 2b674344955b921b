"""Tests of geo.assign: ST_Covers semantics, lowest code on shared borders, PostGIS arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from geo.assign import GridIndex, assign_points_to_grids, postgis_covers_xy


def voronoi_grids(
    n_cells: int = 60, side_m: float = 3000.0, spacing_m: float = 25.0, seed: int = 0
) -> np.ndarray:
    """Voronoi cells over a square near Chengdu, in lon/lat, with densified boundaries.

    Boundaries are densified once per shared edge and re-polygonised, so neighbouring cells
    carry bit-identical vertices along their common border.
    """
    rng = np.random.default_rng(seed)
    to_utm = pyproj.Transformer.from_crs(4326, 32648, always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(32648, 4326, always_xy=True)
    x0, y0 = to_utm.transform(104.05, 30.63)
    seeds_xy_utm = np.column_stack(
        [x0 + rng.uniform(0, side_m, n_cells), y0 + rng.uniform(0, side_m, n_cells)]
    )
    square = box(x0, y0, x0 + side_m, y0 + side_m)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seeds_xy_utm), extend_to=square)
    )
    edges = shapely.union_all(shapely.boundary(shapely.intersection(cells, square)))
    edges = shapely.segmentize(shapely.get_parts(shapely.line_merge(edges)), spacing_m)
    polys_utm = shapely.get_parts(shapely.polygonize(edges))
    return shapely.transform(
        polys_utm, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
    )


def shared_vertices(grids: np.ndarray) -> np.ndarray:
    """Vertices that appear in at least two different grids (exact coordinates)."""
    owners: dict[tuple[float, float], set[int]] = {}
    for i, g in enumerate(grids):
        for xy in map(tuple, shapely.get_coordinates(g)):
            owners.setdefault(xy, set()).add(i)
    return np.array([xy for xy, who in owners.items() if len(who) >= 2])


def brute_force(lon, lat, grids, codes) -> np.ndarray:
    """Reference: shapely.covers of every grid against every point, lowest code wins."""
    covers = shapely.covers(
        np.asarray(grids, dtype=object)[:, None], shapely.points(lon, lat)[None, :]
    )
    order = np.argsort(np.asarray(codes), kind="stable")
    result = np.full(len(lon), -1, dtype=np.intp)
    for j in range(len(lon)):
        hits = order[covers[order, j]]
        if len(hits):
            result[j] = hits[0]
    return result


@pytest.fixture(scope="module")
def grids() -> np.ndarray:
    polys = voronoi_grids()
    assert np.median(shapely.get_num_coordinates(polys)) >= 20
    return polys


@pytest.fixture(scope="module")
def codes(grids) -> np.ndarray:
    rng = np.random.default_rng(42)
    return np.array([f"990000001001{i:03d}" for i in rng.permutation(len(grids)) + 1])


def test_interior_points_go_to_their_grid(grids, codes):
    reps = shapely.get_coordinates(shapely.point_on_surface(grids))
    result = assign_points_to_grids(reps[:, 0], reps[:, 1], grids, codes)
    np.testing.assert_array_equal(result, np.arange(len(grids)))


def test_shared_border_vertices_go_to_lowest_code(grids, codes):
    border = shared_vertices(grids)
    assert len(border) > 50
    result = assign_points_to_grids(border[:, 0], border[:, 1], grids, codes)
    for j, (x, y) in enumerate(border):
        covering = np.nonzero(shapely.covers(grids, shapely.Point(x, y)))[0]
        assert len(covering) >= 2  # exactly on the border: covered by both sides
        assert result[j] == covering[np.argmin(codes[covering])]
    # reversing the code order flips every two-grid border point to the other side
    flipped = assign_points_to_grids(border[:, 0], border[:, 1], grids, codes[::-1].copy())
    assert (flipped != result).mean() > 0.5


def test_outside_points_and_non_finite_get_minus_one(grids, codes):
    xmin, ymin, xmax, ymax = shapely.total_bounds(grids)
    lon = np.array([xmin - 0.01, xmax + 0.5, (xmin + xmax) / 2, np.nan, 0.0, np.inf])
    lat = np.array([ymin, ymax, ymax + 1e-3, 30.6, 0.0, 30.6])
    np.testing.assert_array_equal(assign_points_to_grids(lon, lat, grids, codes), -1)


def test_agrees_with_brute_force_covers(grids, codes):
    rng = np.random.default_rng(3)
    xmin, ymin, xmax, ymax = shapely.total_bounds(grids)
    pad = 0.002
    lon = rng.uniform(xmin - pad, xmax + pad, 4000)
    lat = rng.uniform(ymin - pad, ymax + pad, 4000)
    border = shared_vertices(grids)
    lon = np.concatenate([lon, border[:, 0]])
    lat = np.concatenate([lat, border[:, 1]])
    expected = brute_force(lon, lat, grids, codes)
    assert (expected == -1).sum() > 50  # some really are outside
    index = GridIndex(grids, codes)
    np.testing.assert_array_equal(index.assign(lon, lat), expected)
    np.testing.assert_array_equal(index.assign(lon, lat), expected)  # index is reusable
    # integer codes give the same order as the fixed-width strings
    np.testing.assert_array_equal(
        assign_points_to_grids(lon, lat, grids, codes.astype(np.int64)), expected
    )


def test_hole_island_and_multipolygon_parts():
    outer = Polygon(box(0, 0, 10, 10).exterior.coords, [box(4, 4, 6, 6).exterior.coords])
    island = box(4, 4, 6, 6)  # fills the hole exactly
    far = MultiPolygon([box(20, 0, 22, 2), box(30, 0, 32, 2)])  # two parts
    lon = np.array([5.0, 1.0, 4.0, 5.0, 31.0, 21.0, 25.0, 6.0])
    lat = np.array([5.0, 1.0, 5.0, 4.0, 1.0, 1.0, 1.0, 6.0])
    # hole interior, outer interior, hole edge, hole edge, part 2, part 1, between parts,
    # hole corner
    result = assign_points_to_grids(lon, lat, [outer, island, far], ["003", "002", "001"])
    np.testing.assert_array_equal(result, [1, 0, 1, 1, 2, 2, -1, 1])
    # without the island, the hole is nobody's, but the hole's ring still covers
    result = assign_points_to_grids(lon, lat, [outer, far], ["003", "001"])
    np.testing.assert_array_equal(result, [-1, 0, 0, 0, 1, 1, -1, 0])
    # the island loses its border to a lower-code outer polygon
    result = assign_points_to_grids(lon, lat, [outer, island], ["001", "002"])
    np.testing.assert_array_equal(result, [1, 0, 0, 0, -1, -1, -1, 0])


def test_empty_inputs():
    grid = [box(0, 0, 1, 1)]
    out = assign_points_to_grids(np.array([]), np.array([]), grid, ["1"])
    assert out.shape == (0,) and out.dtype == np.intp
    np.testing.assert_array_equal(assign_points_to_grids([0.5], [0.5], [], []), [-1])
    # empty / missing geometries are never chosen, other grids still work
    out = assign_points_to_grids(
        [0.5, 5.5], [0.5, 5.5], [None, Polygon(), box(5, 5, 6, 6)], [1, 2, 3]
    )
    np.testing.assert_array_equal(out, [-1, 2])
    with pytest.raises(ValueError):
        assign_points_to_grids([0.5], [0.5], grid, ["1", "2"])
    with pytest.raises(ValueError):
        assign_points_to_grids([0.5, 1.0], [0.5], grid, ["1"])
    with pytest.raises(TypeError):
        assign_points_to_grids([0.5], [0.5], [shapely.Point(0, 0)], ["1"])


def test_postgis_replica_matches_shapely_on_ordinary_points():
    shape = MultiPolygon(
        [
            Polygon(box(0, 0, 10, 10).exterior.coords, [box(2, 2, 4, 4).exterior.coords]),
            box(12, 0, 14, 3),
        ]
    )
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.uniform(-1, 15, 3000), [0, 10, 2, 3, 12, 13, 11]])
    y = np.concatenate([rng.uniform(-1, 11, 3000), [0, 5, 3, 4, 1, 3, 1]])
    expected = shapely.covers(shape, shapely.points(x, y))
    np.testing.assert_array_equal(postgis_covers_xy(shape, x, y), expected)
    assert expected.sum() > 1000 and (~expected).sum() > 500


def _side(seg1, seg2, q) -> float:
    """PostGIS determineSide in doubles."""
    return (seg2[0] - seg1[0]) * (q[1] - seg1[1]) - (q[0] - seg1[0]) * (seg2[1] - seg1[1])


def test_float_boundary_case_follows_postgis_not_geos():
    """A point 1e-18 degree off an edge: PostGIS's double determinant is exactly 0.0, so
    PostGIS 3.3.2 reports it covered by BOTH triangles sharing the edge (checked against a
    live PostGIS); GEOS, being exact, puts it in one. Assignment must follow PostGIS."""
    a = (104.00006401540242, 30.60060513033778)
    c = (104.00060703933256, 30.6013881383272)
    q = (104.00048857616648, 30.601217321535618)
    right_apex = (104.00111853535691, 30.60045361040234)
    left_apex = (103.99955251937808, 30.601539658262638)
    exact = (Fraction(c[0]) - Fraction(a[0])) * (Fraction(q[1]) - Fraction(a[1])) - (
        Fraction(q[0]) - Fraction(a[0])
    ) * (Fraction(c[1]) - Fraction(a[1]))
    assert _side(a, c, q) == 0.0 and exact != 0  # the case is genuinely non-robust
    right = MultiPolygon([Polygon([a, c, right_apex])])
    left = MultiPolygon([Polygon([c, a, left_apex])])
    point = shapely.Point(q)
    geos = (shapely.covers(right, point), shapely.covers(left, point))
    assert sorted(geos) == [False, True]  # GEOS: exactly one side
    assert postgis_covers_xy(right, *q)[0] and postgis_covers_xy(left, *q)[0]
    missed_by_geos = 0 if not geos[0] else 1
    codes = ["990000001001002", "990000001001002"]
    codes[missed_by_geos] = "990000001001001"  # give the lower code to the side GEOS misses
    result = assign_points_to_grids([q[0]], [q[1]], [right, left], codes)
    assert result[0] == missed_by_geos


def test_invalid_grid_uses_postgis_replica():
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    assert not bowtie.is_valid
    index = GridIndex([bowtie, box(5, 5, 6, 6)], ["1", "2"])
    x = np.array([0.5, 1.0, 1.5, 1.0, 5.5, 1.0])
    y = np.array([1.0, 0.5, 1.0, 1.0, 5.5, 1.9])
    expected = np.where(postgis_covers_xy(bowtie, x, y), 0, -1)
    expected[4] = 1
    np.testing.assert_array_equal(index.assign(x, y), expected)
    assert (expected == 0).any() and (expected == -1).any()


def test_grids_far_apart_and_tiny():
    """A wide extent with tiny grids (bucket lattice capped) still finds every point."""
    grids = [box(100.0, 30.0, 100.0005, 30.0005), box(120.0, 45.0, 120.0005, 45.0005)]
    lon = np.array([100.0002, 120.0002, 110.0, 120.0005, 100.0])
    lat = np.array([30.0002, 45.0002, 40.0, 45.0005, 30.0])
    result = assign_points_to_grids(lon, lat, grids, ["2", "1"])
    np.testing.assert_array_equal(result, [0, 1, -1, 1, 0])
