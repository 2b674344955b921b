"""geo.circles raster polygons: sampling, coverage of the lines, reach, holes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from geo.circles import (
    REACH_SLACK_M,
    Pieces,
    circle_polygon,
    edge_samples,
    line_samples,
    naive_circle_polygon,
    pieces_lines,
    pieces_samples,
    polygon_from_samples,
)
from geo.walk import build_walk_graph


def _exact(lines: np.ndarray, radius_m: float) -> shapely.Geometry:
    """A near-exact buffer (64 segments per quarter: chords sag < 1 cm at 55 m)."""
    return shapely.union_all(shapely.buffer(lines, radius_m, quad_segs=64))


def _assert_circle_contract(lines: np.ndarray, poly, width_m: float) -> None:
    assert poly.is_valid
    assert poly.covers(shapely.multilinestrings(list(lines)))
    assert _exact(lines, width_m + REACH_SLACK_M + 0.01).covers(poly)


def _random_lines(rng: np.random.Generator, n: int, span_m: float) -> np.ndarray:
    """Random polylines: long and short segments, zigzags, a zero-length piece, a far island."""
    out = []
    for _ in range(n):
        k = rng.integers(2, 6)
        start = rng.uniform(0, span_m, 2)
        steps = rng.normal(0, rng.choice([3.0, 40.0, 150.0]), (k - 1, 2))
        out.append(LineString(np.vstack([start, start + np.cumsum(steps, axis=0)])))
    out.append(LineString([(10.0, 10.0), (10.0, 10.0)]))
    out.append(LineString([(span_m + 900.0, 0.0), (span_m + 950.0, 30.0)]))
    return np.array(out, dtype=object)


def test_line_samples_cover_every_line_point_within_half_a_step() -> None:
    lines = np.array(
        [
            LineString([(0, 0), (100, 0), (100, 7)]),
            LineString([(500, 500), (503, 504)]),
            LineString([(-50, 20), (-50, 20)]),
        ],
        dtype=object,
    )
    step = 5.0
    xy = line_samples(lines, step)
    pts = shapely.points(xy)
    # every sample lies on a line, every vertex is a sample
    assert shapely.distance(shapely.multilinestrings(list(lines)), pts).max() < 1e-9
    verts = {tuple(v) for v in shapely.get_coordinates(lines)}
    assert verts <= {tuple(v) for v in xy}
    # points all along the lines are within step / 2 of some sample
    for line in lines:
        probe = shapely.line_interpolate_point(line, np.linspace(0, line.length, 997))
        d = shapely.distance(probe[:, None], pts[None, :]).min(axis=1)
        assert d.max() <= step / 2 + 1e-9
    # vertices (3 + 2 + 2), plus 19 inside the 100 m segment (20 parts) and 1 inside the
    # 7 m one (2 parts); the 5 m segment needs none
    assert len(xy) == 7 + 19 + 1
    with pytest.raises(ValueError):
        line_samples(lines, 0.0)


def test_edge_and_piece_samples_lie_on_their_pieces_and_cover_them() -> None:
    geoms = np.array(
        [
            LineString([(0, 0), (60, 0), (60, 80)]),
            LineString([(60, 80), (0, 80)]),
            LineString([(0, 80), (0, 0)]),
        ],
        dtype=object,
    )
    g = build_walk_graph(np.array([1, 2, 3]), np.array([2, 3, 1]), geoms)
    es = edge_samples(g, 5.0)
    assert edge_samples(g, 5.0) is es  # computed once per graph and step
    for e in range(3):
        xy = es.xy[es.ptr[e] : es.ptr[e + 1]]
        on = shapely.line_interpolate_point(geoms[e], es.along[es.ptr[e] : es.ptr[e + 1]])
        np.testing.assert_allclose(shapely.get_coordinates(on), xy, atol=1e-9)
    pieces = Pieces(np.array([0, 1, 2]), np.array([0.0, 13.3, 0.0]), np.array([140.0, 41.7, 2.2]))
    xy = pieces_samples(g, pieces, 5.0)
    lines = pieces_lines(g, pieces)
    multi = shapely.multilinestrings(list(lines))
    pts = shapely.points(xy)
    assert shapely.distance(multi, pts).max() < 1e-9
    for line in lines:
        probe = shapely.line_interpolate_point(line, np.linspace(0, line.length, 301))
        assert shapely.distance(probe[:, None], pts[None, :]).min(axis=1).max() <= 2.5 + 1e-9
    # nothing sampled outside the pieces: not beyond 41.7 m on edge 1 (its v end, (0, 80),
    # belongs to edge 2's piece)
    assert not shapely.intersects(pts, LineString([(60 - 41.8, 80), (0.5, 80)])).any()
    assert not shapely.intersects(pts, LineString([(59.5, 80), (60 - 13.2, 80)])).any()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_polygon_covers_lines_and_reaches_at_most_width_plus_slack(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = _random_lines(rng, 60, 800.0)
    poly = circle_polygon(lines, width_m=50.0)
    _assert_circle_contract(lines, poly, 50.0)
    exact = naive_circle_polygon(lines, width_m=50.0)
    assert poly.area == pytest.approx(exact.area, rel=0.01)
    # the far island stays a separate part
    assert poly.geom_type == "MultiPolygon" and len(poly.geoms) >= 2


def test_close_parallel_lines_and_narrow_widths() -> None:
    # parallel lines 3 m apart, a sharp V: ridges between lines are where tracing errs most
    lines = np.array(
        [
            LineString([(0, 0), (300, 0)]),
            LineString([(0, 3), (300, 3)]),
            LineString([(0, 100), (150, 180), (300, 100)]),
        ],
        dtype=object,
    )
    for width in (50.0, 20.0, 8.0):
        poly = circle_polygon(lines, width_m=width)
        _assert_circle_contract(lines, poly, width)
        assert poly.area == pytest.approx(naive_circle_polygon(lines, width_m=width).area, rel=0.03)
    with pytest.raises(ValueError):
        polygon_from_samples(line_samples(lines, 5.0), width_m=10.0, cell_m=5.0)
    with pytest.raises(ValueError):
        polygon_from_samples(np.array([[0.0, np.nan]]), width_m=50.0)
    assert circle_polygon(np.array([], dtype=object)).is_empty


def test_a_block_larger_than_twice_the_width_keeps_its_hole() -> None:
    ring = LineString([(0, 0), (400, 0), (400, 400), (0, 400), (0, 0)])
    lines = np.array([ring], dtype=object)
    poly = circle_polygon(lines, width_m=50.0)
    _assert_circle_contract(lines, poly, 50.0)
    assert poly.geom_type == "Polygon" and len(poly.interiors) == 1
    hole = shapely.Polygon(poly.interiors[0])
    assert hole.area == pytest.approx(300.0 * 300.0, rel=0.02)
    # a smaller block is filled: its inside is within the width of the streets
    small = np.array([LineString([(0, 0), (90, 0), (90, 90), (0, 90), (0, 0)])], dtype=object)
    assert len(circle_polygon(small, width_m=50.0).interiors) == 0


def test_polygon_is_deterministic() -> None:
    lines = _random_lines(np.random.default_rng(7), 40, 600.0)
    a = circle_polygon(lines)
    b = circle_polygon(lines.copy())
    assert shapely.to_wkb(a) == shapely.to_wkb(b)
