"""geo.circles: reached pieces against networkx distances, cut lengths, polygon bounds."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from geo.circles import (
    circle_polygon,
    naive_circle_polygon,
    pieces_lines,
    reached_pieces,
    service_circles,
    straight_circle,
)
from geo.walk import build_walk_graph, snap_points
from tests.geo.walk_support import with_sources


def _nx_source_distances(network, reference, snap, i):
    g = network.graph
    d = nx.single_source_dijkstra_path_length(with_sources(g, reference, snap, [i]), ("s", i))
    d.pop(("s", i))
    out = np.full(g.n_nodes, np.inf)
    out[list(d)] = list(d.values())
    return out


@pytest.mark.parametrize("budget_m", [300.0, 1000.0])
def test_circles_reach_exactly_the_nodes_within_budget_and_cut_edges_right(
    network, reference, budget_m
):
    g = network.graph
    rng = np.random.default_rng(2)
    pts = network.pois_xy[rng.choice(len(network.pois_xy), size=6, replace=False)]
    snap = snap_points(g, pts, max_snap_m=250.0)
    circles = service_circles(g, snap, budget_m)
    checked = 0
    for c in circles:
        if c.method != "network":
            assert not snap.ok[c.source]
            continue
        d = _nx_source_distances(network, reference, snap, c.source)
        # the circle's nodes are exactly networkx's nodes within the budget: none farther
        assert set(c.reached_nodes.tolist()) == set(np.flatnonzero(d <= budget_m).tolist())
        p = c.pieces
        e = p.edge
        length = g.edge_length_m[e]
        du, dv = d[g.edge_u[e]], d[g.edge_v[e]]
        own = e == snap.edge[c.source]
        # every piece end is within the budget (pieces touching an end node count from it)
        from_u = (p.start_m <= 1e-9) & ~own
        from_v = (p.end_m >= length - 1e-9) & ~own
        assert np.all(du[from_u] <= budget_m + 1e-6)
        assert np.all(dv[from_v] <= budget_m + 1e-6)
        # a partly reached edge is cut at budget − distance to its reached end (± 1 m)
        part_u = from_u & ~from_v
        part_v = from_v & ~from_u
        np.testing.assert_allclose(p.length_m[part_u], budget_m - du[part_u], atol=1.0)
        np.testing.assert_allclose(p.length_m[part_v], budget_m - dv[part_v], atol=1.0)
        # edges with both ends reached and room for the whole edge are whole
        whole_edges = set(e[(p.start_m <= 1e-9) & (p.end_m >= length - 1e-9)].tolist())
        for ee in np.flatnonzero(
            (d[g.edge_u] + g.edge_length_m <= budget_m)
            | (d[g.edge_v] + g.edge_length_m <= budget_m)
        ):
            assert int(ee) in whole_edges
        checked += 1
    assert checked >= 3


def test_polygon_contains_pieces_and_stays_within_width_plus_5_m(network):
    g = network.graph
    rng = np.random.default_rng(9)
    pts = network.pois_xy[rng.choice(len(network.pois_xy), size=5, replace=False)]
    snap = snap_points(g, pts, max_snap_m=250.0)
    for c in service_circles(g, snap, 500.0, width_m=50.0):
        if c.method != "network":
            continue
        lines = pieces_lines(g, c.pieces)
        # piece lines have the pieces' lengths (planar vs geodesic scale only)
        np.testing.assert_allclose(
            shapely.length(lines),
            c.pieces.length_m
            * g.edge_geom_length[c.pieces.edge]
            / np.maximum(g.edge_length_m[c.pieces.edge], 1e-9),
            atol=1e-6,
        )
        multi = shapely.multilinestrings(list(lines))
        assert c.geometry.buffer(1e-6).covers(multi)
        assert multi.buffer(55.0).covers(c.geometry)
        # and it is close to the exact buffer (not a thin approximation)
        exact = naive_circle_polygon(lines, width_m=50.0)
        assert c.geometry.area == pytest.approx(exact.area, rel=0.05)


def test_source_on_a_long_edge_reaches_along_it_both_ways():
    g = build_walk_graph(
        np.array([1, 2]),
        np.array([2, 3]),
        np.array(
            [LineString([(0, 0), (1000, 0)]), LineString([(1000, 0), (1000, 1000)])], dtype=object
        ),
    )
    snap = snap_points(g, np.array([[400.0, 20.0]]))
    [c] = service_circles(g, snap, 300.0)
    assert c.method == "network"
    assert len(c.reached_nodes) == 0
    [(e, lo, hi)] = zip(c.pieces.edge, c.pieces.start_m, c.pieces.end_m, strict=True)
    # access leg of 20 m counts against the budget: 280 m either way along the edge
    assert e == 0 and lo == pytest.approx(120.0) and hi == pytest.approx(680.0)
    # near the corner: the other edge is cut at budget − distance to its reached end
    snap = snap_points(g, np.array([[900.0, 0.0]]))
    [c] = service_circles(g, snap, 300.0)
    other = c.pieces.edge == 1
    assert c.pieces.length_m[other].sum() == pytest.approx(200.0)
    assert c.pieces.length_m[~other].sum() == pytest.approx(400.0)


def test_unsnapped_source_gets_a_straight_buffer_marked_buffer():
    g = build_walk_graph(
        np.array([1]), np.array([2]), np.array([LineString([(0, 0), (100, 0)])], dtype=object)
    )
    snap = snap_points(g, np.array([[50.0, 400.0], [50.0, 5.0]]), max_snap_m=100.0)
    far, near = service_circles(g, snap, 300.0)
    assert far.method == "buffer" and far.pieces is None
    assert far.geometry.area == pytest.approx(np.pi * 300.0**2, rel=0.01)
    assert far.geometry.centroid.distance(shapely.Point(50, 400)) < 1e-6
    assert near.method == "network"
    with pytest.raises(ValueError):
        service_circles(g, snap, 0.0)
    with pytest.raises(ValueError):
        straight_circle((0, 0), -1.0)
    with pytest.raises(ValueError):
        circle_polygon(np.array([LineString([(0, 0), (1, 0)])], dtype=object), width_m=0)


def test_reached_pieces_without_source_edge_uses_node_distances():
    g = build_walk_graph(
        np.array([1, 2]),
        np.array([2, 3]),
        np.array([LineString([(0, 0), (100, 0)]), LineString([(100, 0), (300, 0)])], dtype=object),
    )
    d = np.array([0.0, 100.0, 300.0])
    p = reached_pieces(g, d, 150.0)
    assert sorted(zip(p.edge.tolist(), p.length_m.tolist(), strict=True)) == [(0, 100.0), (1, 50.0)]
