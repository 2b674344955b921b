"""geo.walk against an independent networkx Dijkstra on real networks (Helsinki, Chengdu)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from geo.walk import (
    build_walk_graph,
    distances_at,
    distances_from_one_m,
    nearest_targets,
    per_source_node_distances,
    reach_from,
    route_to,
    snap_points,
)
from tests.geo.walk_support import brute_snap, nx_point_distances, with_sources


def _sources(network, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    pts = network.pois_xy[
        rng.choice(len(network.pois_xy), size=min(n, len(network.pois_xy)), replace=False)
    ]
    return pts, snap_points(network.graph, pts, max_snap_m=250.0)


def test_snapping_matches_brute_force_and_keeps_the_position_along_the_edge(network, reference):
    pts, snap = _sources(network, 40)
    expected = brute_snap(network.graph, reference, pts)
    for i, (e, off, d) in enumerate(expected):
        assert snap.snap_m[i] == pytest.approx(d, abs=1e-6)
        if snap.ok[i] and snap.edge[i] == e:
            assert snap.offset_m[i] == pytest.approx(off, abs=1e-6)
    # a point beside the middle of a long edge snaps to the middle, not to an end node
    g = network.graph
    main_edges = g.snappable_edges
    e = int(main_edges[np.argmax(g.edge_length_m[main_edges])])
    mid = g.edge_geoms[e].interpolate(0.5, normalized=True)
    s = snap_points(g, np.array([[mid.x, mid.y]]))
    assert s.edge[0] == e or g.edge_length_m[s.edge[0]] > 0
    assert s.snap_m[0] == pytest.approx(0.0, abs=1e-6)
    assert s.offset_m[0] == pytest.approx(g.edge_length_m[e] / 2, rel=1e-6)


def test_multi_source_reach_equals_networkx(network, reference):
    g = network.graph
    _, snap = _sources(network, 25)
    for limit in (np.inf, 600.0):
        reach = reach_from(g, snap, limit_m=limit)
        h = with_sources(g, reference, snap, np.flatnonzero(snap.ok))
        expected = nx.multi_source_dijkstra_path_length(
            h,
            [("s", i) for i in np.flatnonzero(snap.ok)],
            cutoff=None if np.isinf(limit) else limit,
        )
        expected = {k: d for k, d in expected.items() if not isinstance(k, tuple)}
        reached = set(np.flatnonzero(np.isfinite(reach.node_dist_m)).tolist())
        assert reached == set(expected)
        got = reach.node_dist_m[sorted(expected)]
        want = np.array([expected[k] for k in sorted(expected)])
        np.testing.assert_allclose(got, want, atol=1e-6)
        # the nearest source reported for each node really is at that distance
        assert (reach.node_source[sorted(expected)] >= 0).all()


def test_distances_from_one_point_equal_the_general_search(network):
    """One source to many targets (the offer's question) gives the metres of the general
    multi-source search, at every limit, with and without access legs, for targets on the
    source's own edge too."""
    g = network.graph
    _, snap = _sources(network, 30, seed=11)
    tgt = snap.take(np.arange(len(snap)))  # unsnapped targets included: they stay inf
    for i in np.flatnonzero(snap.ok)[:15]:
        one = snap.take([i])
        for limit in (np.inf, 400.0, float(one.snap_m[0]) + 1.0, 0.0):
            for access in (True, False):
                full = reach_from(g, one, limit_m=limit, access=access)
                want = distances_at(g, full, tgt, access=access)[0]
                got = distances_from_one_m(g, one, tgt, limit_m=limit, access=access)
                np.testing.assert_allclose(got, want, atol=1e-9)
    # a target on the source's edge: straight along it, not via an end node
    e = int(g.snappable_edges[np.argmax(g.edge_length_m[g.snappable_edges])])
    a_xy, b_xy = (g.edge_geoms[e].interpolate(f, normalized=True) for f in (0.4, 0.6))
    pts = snap_points(g, np.array([[a_xy.x, a_xy.y], [b_xy.x, b_xy.y]]))
    assert (pts.edge == e).all()
    d = distances_from_one_m(g, pts.take([0]), pts.take([1]))
    assert d[0] == pytest.approx(0.2 * g.edge_length_m[e], rel=1e-6)
    # an unsnapped source reaches nothing
    far = snap_points(g, np.array([[1e9, 1e9]]), max_snap_m=10.0)
    assert np.isinf(distances_from_one_m(g, far, pts)).all()


def test_per_source_distances_equal_networkx_single_source(network, reference):
    g = network.graph
    _, snap = _sources(network, 12, seed=7)
    budget = 800.0
    for i, dist in per_source_node_distances(g, snap, limit_m=budget):
        h = with_sources(g, reference, snap, [i])
        expected = nx.single_source_dijkstra_path_length(h, ("s", i), cutoff=budget)
        expected.pop(("s", i))
        assert set(np.flatnonzero(np.isfinite(dist)).tolist()) == set(expected)
        for node, d in expected.items():
            assert dist[node] == pytest.approx(d, abs=1e-6)


def test_point_distances_for_200_buildings_match_networkx_within_1_m(network, reference):
    g = network.graph
    rng = np.random.default_rng(3)
    b = network.buildings_xy
    if len(b) < 50:
        pytest.skip("too few buildings in this extract")
    pts = b[rng.choice(len(b), size=min(200, len(b)), replace=False)]
    _src_pts, src = _sources(network, 15, seed=5)
    tgt = snap_points(g, pts, max_snap_m=250.0)
    dist, who = distances_at(g, reach_from(g, src), tgt)
    ok_t, ok_s = np.flatnonzero(tgt.ok), np.flatnonzero(src.ok)
    sources = [(int(src.edge[i]), float(src.offset_m[i]), float(src.snap_m[i])) for i in ok_s]
    targets = [(int(tgt.edge[j]), float(tgt.offset_m[j]), float(tgt.snap_m[j])) for j in ok_t]
    expected = nx_point_distances(g, reference, sources, targets)
    assert len(ok_t) >= 0.9 * len(pts)
    np.testing.assert_allclose(dist[ok_t], expected, atol=1.0)
    assert (who[ok_t] >= 0).all()


def test_k_nearest_and_routes(network, reference):
    g = network.graph
    venues_xy, venues = _sources(network, 60, seed=11)
    origin_xy = network.buildings_xy[:1] if len(network.buildings_xy) else venues_xy[:1] + 30
    origin = snap_points(g, origin_xy, max_snap_m=250.0)
    assert origin.ok[0]
    idx, dist, reach = nearest_targets(g, origin, venues, 5, start_limit_m=100.0)
    sources = [(int(origin.edge[0]), float(origin.offset_m[0]), float(origin.snap_m[0]))]
    ok = np.flatnonzero(venues.ok)
    targets = [
        (int(venues.edge[j]), float(venues.offset_m[j]), float(venues.snap_m[j])) for j in ok
    ]
    every = nx_point_distances(g, reference, sources, targets)
    order = np.argsort(every, kind="stable")[:5]
    np.testing.assert_allclose(dist, every[order], atol=1e-6)
    assert np.all(np.diff(dist) >= 0)
    for j, d in zip(idx, dist, strict=True):
        line = route_to(g, reach, venues, int(j))
        assert isinstance(line, LineString)
        assert line.coords[0] == pytest.approx(tuple(origin_xy[0]))
        assert line.coords[-1] == pytest.approx(tuple(venues.point_xy[j]))
        # planar UTM length vs geodesic edge lengths: well within 1 %
        assert line.length == pytest.approx(d, rel=0.01, abs=1.0)


def _toy():
    # a square 0-1-2-3 of 100 m sides, a parallel long edge 0-1, a loop at 2, a detached edge
    lines = [
        LineString([(0, 0), (100, 0)]),
        LineString([(100, 0), (100, 100)]),
        LineString([(100, 100), (0, 100)]),
        LineString([(0, 100), (0, 0)]),
        LineString([(0, 0), (50, -40), (100, 0)]),
        LineString([(100, 100), (130, 130), (100, 130), (100, 100)]),
        LineString([(500, 500), (600, 500)]),
    ]
    src = [0, 1, 2, 3, 0, 2, 10]
    dst = [1, 2, 3, 0, 1, 2, 11]
    return build_walk_graph(np.array(src), np.array(dst), np.array(lines, dtype=object))


def test_toy_graph_parallel_edges_loops_and_components():
    g = _toy()
    assert g.n_nodes == 6 and g.n_edges == 7
    # parallel edge 0-1: the shorter (100 m) one is in the matrix
    i0, i1 = np.searchsorted(g.node_ids, [0, 1])
    assert g.matrix[i0, i1] == pytest.approx(100.0)
    # the detached edge is not snappable: a point on it snaps to the square
    s = snap_points(g, np.array([[550.0, 500.0], [50.0, 10.0]]), max_snap_m=100.0)
    assert s.edge[0] == -1 and s.snap_m[0] > 400
    assert (
        s.edge[1] == 0
        and s.offset_m[1] == pytest.approx(50.0)
        and s.snap_m[1] == pytest.approx(10.0)
    )
    # from (50, 10): to node 2 at (100, 100) is 10 + 50 + 100 = 160 m
    reach = reach_from(g, s)
    i2 = np.searchsorted(g.node_ids, 2)
    assert reach.node_dist_m[i2] == pytest.approx(160.0)
    # a target on the same edge is reached straight along it
    t = snap_points(g, np.array([[80.0, -5.0]]))
    d, who = distances_at(g, reach, t)
    assert d[0] == pytest.approx(10.0 + 30.0 + 5.0) and who[0] == 1
    # without access legs
    d0, _ = distances_at(g, reach_from(g, s, access=False), t, access=False)
    assert d0[0] == pytest.approx(30.0)


def test_empty_inputs():
    g = _toy()
    none = snap_points(g, np.zeros((0, 2)))
    reach = reach_from(g, none)
    assert not np.isfinite(reach.node_dist_m).any()
    d, who = distances_at(g, reach, snap_points(g, np.array([[50.0, 0.0]])))
    assert np.isinf(d[0]) and who[0] == -1
    bad = snap_points(g, np.array([[np.nan, 1.0]]))
    assert bad.edge[0] == -1
    with pytest.raises(ValueError):
        build_walk_graph(
            np.array([1]), np.array([2]), np.array([shapely.Point(0, 0)], dtype=object)
        )
