"""Walking graph: shortest walking distances on a street / path network (pure, metric CRS).

The graph is a symmetric sparse matrix (``scipy.sparse.csgraph``) of edge lengths in metres;
parallel edges keep the shortest. Points (homes, venues, a resident's position) are *snapped*
to the nearest edge of the largest connected component: the snap distance is reported and the
position along the edge is kept, so a point in the middle of a 400 m block is not moved to a
corner.

Distances between snapped points are computed with one virtual graph node per source, joined
to the two ends of its edge by the along-edge offsets. One Dijkstra run from all virtual nodes
with ``min_only=True`` gives every node its distance to the *nearest* source (and which source
that is); a point's distance then is the best of its edge's two ends (plus the rest of the
edge) and of a source on the same edge (straight along the edge).

By default a distance includes the *access legs*: the straight walk from a source point to its
snapped position, and from the snapped target position to the target point. Geometry is
planar in the caller's projected CRS (UTM); weights are the edges' ``length_m`` (geodesic when
the importer measured them), positions along an edge scale between the two.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from shapely.geometry import LineString
from shapely.ops import substring

logger = logging.getLogger(__name__)

#: weight used instead of 0 for zero-length edges (csgraph would treat 0 as "no edge")
_EPS_M = 1e-9
#: cap on floats held by one batched (not min_only) Dijkstra call: rows x nodes
_BATCH_FLOATS = 4_000_000


@dataclass(frozen=True)
class WalkGraph:
    """A walking network in a projected CRS; node and edge arrays are aligned by index."""

    node_ids: np.ndarray  # (n,) external ids (e.g. network_nodes.id)
    node_xy: np.ndarray  # (n, 2) metres
    edge_ids: np.ndarray  # (m,) external ids
    edge_u: np.ndarray  # (m,) node index of each edge's source (first vertex)
    edge_v: np.ndarray  # (m,) node index of each edge's target (last vertex)
    edge_length_m: np.ndarray  # (m,) weights in metres
    edge_geoms: np.ndarray  # (m,) LineStrings oriented u -> v, projected metres
    edge_geom_length: np.ndarray  # (m,) planar lengths of edge_geoms
    matrix: csr_matrix  # (n, n) symmetric, min weight per node pair
    pair_edge: np.ndarray  # (nnz,) edge index behind each matrix entry
    incident_ptr: np.ndarray  # (n+1,) CSR pointer: node -> incident edges
    incident_edges: np.ndarray  # edge indices, grouped by node
    component: np.ndarray  # (n,) connected-component label
    main_component: int
    snappable_edges: np.ndarray  # edge indices in the largest component
    tree: shapely.STRtree  # over edge_geoms[snappable_edges]

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @functools.cached_property
    def one_source_search(self) -> _OneSourceSearch:
        """This graph plus a spare virtual node, for ``distances_from_one_m`` (built once)."""
        return _OneSourceSearch(self)

    @property
    def n_edges(self) -> int:
        return len(self.edge_ids)


@dataclass(frozen=True)
class Snap:
    """Points snapped to the graph; ``edge == -1`` where a point is beyond ``max_snap_m``."""

    edge: np.ndarray  # (k,) edge index or -1
    offset_m: np.ndarray  # (k,) metres along the edge from its u end (edge_length_m scale)
    snap_m: np.ndarray  # (k,) straight distance point -> edge (reported even when too far)
    point_xy: np.ndarray  # (k, 2) the input points
    snapped_xy: np.ndarray  # (k, 2) their positions on the edges (nearest-edge point)

    def __len__(self) -> int:
        return len(self.edge)

    @property
    def ok(self) -> np.ndarray:
        return self.edge >= 0

    def take(self, idx: Any) -> Snap:
        """The subset ``idx`` (indices or a boolean mask)."""
        return Snap(
            self.edge[idx],
            self.offset_m[idx],
            self.snap_m[idx],
            self.point_xy[idx],
            self.snapped_xy[idx],
        )


@dataclass(frozen=True)
class Reach:
    """Result of a multi-source run: per node, the distance to and index of the nearest source."""

    node_dist_m: np.ndarray  # (n,) metres, inf where unreached (or beyond the limit)
    node_source: np.ndarray  # (n,) index into ``sources``, -1 where unreached
    predecessors: np.ndarray | None  # (n,) previous node; >= n_nodes: a virtual source
    sources: Snap
    source_start_m: np.ndarray  # (k,) distance already walked at each source's snapped point
    limit_m: float


# -- building ----------------------------------------------------------------------------------


def build_walk_graph(
    edge_source_ids: np.ndarray,
    edge_target_ids: np.ndarray,
    edge_geoms_xy: np.ndarray,
    *,
    edge_length_m: np.ndarray | None = None,
    edge_ids: np.ndarray | None = None,
) -> WalkGraph:
    """Graph from edges (source id, target id, projected LineString oriented source -> target).

    ``edge_length_m`` defaults to the planar geometry lengths. Node positions are the edges'
    end vertices. Self-loops are kept as edges (they can be walked) but add nothing to the
    matrix; parallel edges keep the shortest in the matrix.
    """
    src = np.asarray(edge_source_ids, dtype=np.int64)
    dst = np.asarray(edge_target_ids, dtype=np.int64)
    geoms = np.asarray(edge_geoms_xy, dtype=object)
    m = len(src)
    if not (len(dst) == m == len(geoms)):
        raise ValueError("edge arrays differ in length")
    if m and (shapely.is_empty(geoms).any() or (shapely.get_type_id(geoms) != 1).any()):
        raise ValueError("every edge geometry must be a non-empty LineString")
    geom_len = shapely.length(geoms) if m else np.zeros(0)
    length = geom_len.copy() if edge_length_m is None else np.asarray(edge_length_m, float)
    if len(length) != m or (m and (~np.isfinite(length) | (length < 0)).any()):
        raise ValueError("edge_length_m must be finite, >= 0 and one per edge")
    ids = np.arange(m, dtype=np.int64) if edge_ids is None else np.asarray(edge_ids, np.int64)

    node_ids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    u, v = inverse[:m].astype(np.int64), inverse[m:].astype(np.int64)
    n = len(node_ids)
    node_xy = np.full((n, 2), np.nan)
    if m:
        first = shapely.get_coordinates(shapely.get_point(geoms, 0))
        last = shapely.get_coordinates(shapely.get_point(geoms, -1))
        node_xy[v] = last
        node_xy[u] = first

    # symmetric matrix, shortest of parallel edges, no self-loops
    keep = u != v
    rows = np.concatenate([u[keep], v[keep]])
    cols = np.concatenate([v[keep], u[keep]])
    eidx = np.concatenate([np.flatnonzero(keep), np.flatnonzero(keep)])
    w = np.maximum(length[eidx], _EPS_M)
    order = np.lexsort((w, cols, rows))
    rows, cols, eidx, w = rows[order], cols[order], eidx[order], w[order]
    first_of_pair = np.ones(len(rows), dtype=bool)
    first_of_pair[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, eidx, w = (
        rows[first_of_pair],
        cols[first_of_pair],
        eidx[first_of_pair],
        w[first_of_pair],
    )
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr)
    matrix = csr_matrix((w, cols.astype(np.int32), indptr.astype(np.int32)), shape=(n, n))
    matrix.has_sorted_indices = True

    # node -> incident edges (self-loops listed once)
    inc_nodes = np.concatenate([u, v[keep]])
    inc_edges = np.concatenate([np.arange(m), np.flatnonzero(keep)])
    order = np.argsort(inc_nodes, kind="stable")
    incident_edges = inc_edges[order].astype(np.int64)
    incident_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(incident_ptr, inc_nodes + 1, 1)
    incident_ptr = np.cumsum(incident_ptr)

    if n:
        _, labels = connected_components(matrix, directed=False)
        sizes = np.bincount(labels)
        main = int(np.argmax(sizes))
    else:
        labels, main = np.zeros(0, dtype=np.int32), 0
    snappable = np.flatnonzero(labels[u] == main) if m else np.zeros(0, np.int64)
    tree = shapely.STRtree(geoms[snappable])
    logger.debug(
        "walk graph: %d nodes, %d edges, main component %d nodes", n, m, (labels == main).sum()
    )
    return WalkGraph(
        node_ids=node_ids,
        node_xy=node_xy,
        edge_ids=ids,
        edge_u=u,
        edge_v=v,
        edge_length_m=length,
        edge_geoms=geoms,
        edge_geom_length=geom_len,
        matrix=matrix,
        pair_edge=eidx.astype(np.int64),
        incident_ptr=incident_ptr,
        incident_edges=incident_edges,
        component=labels,
        main_component=main,
        snappable_edges=snappable,
        tree=tree,
    )


def edges_of_nodes(graph: WalkGraph, nodes: np.ndarray) -> np.ndarray:
    """Unique indices of the edges incident to ``nodes`` (node indices)."""
    nodes = np.asarray(nodes, dtype=np.int64)
    if not len(nodes):
        return np.zeros(0, dtype=np.int64)
    starts, ends = graph.incident_ptr[nodes], graph.incident_ptr[nodes + 1]
    counts = ends - starts
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)
    return np.unique(graph.incident_edges[offsets])


# -- snapping ----------------------------------------------------------------------------------


def snap_points(graph: WalkGraph, xy: np.ndarray, *, max_snap_m: float = np.inf) -> Snap:
    """Snap projected points to the nearest edge of the largest component.

    Points farther than ``max_snap_m`` keep ``edge = -1`` but still report ``snap_m`` (their
    distance to the nearest edge), so callers can say how far off they are.
    """
    pts_xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    k = len(pts_xy)
    edge = np.full(k, -1, dtype=np.int64)
    offset = np.zeros(k)
    snap_m = np.full(k, np.inf)
    snapped = np.full((k, 2), np.nan)
    finite = np.isfinite(pts_xy).all(axis=1)
    if not k or not len(graph.snappable_edges) or not finite.any():
        return Snap(edge, offset, snap_m, pts_xy, snapped)
    where = np.flatnonzero(finite)
    pts = shapely.points(pts_xy[where])
    (inp, tree_idx), dist = graph.tree.query_nearest(pts, return_distance=True, all_matches=False)
    e = graph.snappable_edges[tree_idx]
    geoms = graph.edge_geoms[e]
    pos = shapely.line_locate_point(geoms, pts[inp])
    gl = graph.edge_geom_length[e]
    frac = np.divide(pos, gl, out=np.zeros_like(pos), where=gl > 0)
    rows = where[inp]
    snap_m[rows] = dist
    offset[rows] = np.clip(frac, 0.0, 1.0) * graph.edge_length_m[e]
    snapped[rows] = shapely.get_coordinates(shapely.line_interpolate_point(geoms, pos))
    near = dist <= max_snap_m
    edge[rows[near]] = e[near]
    return Snap(edge, offset, snap_m, pts_xy, snapped)


# -- distances ---------------------------------------------------------------------------------


def _augmented(graph: WalkGraph, sources: Snap, start_m: np.ndarray) -> csr_matrix:
    """The graph plus one virtual node per source, with edges to its edge's two ends."""
    n = graph.n_nodes
    k = len(sources)
    e = sources.edge
    off = sources.offset_m
    length = graph.edge_length_m[e]
    base = graph.matrix
    data = np.concatenate(
        [
            base.data,
            np.maximum(np.column_stack([start_m + off, start_m + length - off]).ravel(), _EPS_M),
        ]
    )
    indices = np.concatenate(
        [base.indices, np.column_stack([graph.edge_u[e], graph.edge_v[e]]).ravel().astype(np.int32)]
    )
    indptr = np.concatenate([base.indptr, base.indptr[-1] + 2 * np.arange(1, k + 1)]).astype(
        np.int32
    )
    return csr_matrix((data, indices, indptr), shape=(n + k, n + k))


def _start_m(sources: Snap, access: bool) -> np.ndarray:
    return sources.snap_m.copy() if access else np.zeros(len(sources))


def reach_from(
    graph: WalkGraph,
    sources: Snap,
    *,
    limit_m: float = np.inf,
    access: bool = True,
) -> Reach:
    """Multi-source Dijkstra (``min_only``): every node's distance to its nearest source.

    Sources with ``edge == -1`` are ignored. With ``access`` a source's access leg (its snap
    distance) counts as already walked. Nodes beyond ``limit_m`` are left unreached (inf).
    For one source and a few targets, ``distances_from_one_m`` is the cheaper question.
    """
    ok = np.flatnonzero(sources.ok)
    n = graph.n_nodes
    start = _start_m(sources, access)
    if not len(ok) or not n:
        return Reach(np.full(n, np.inf), np.full(n, -1), np.full(n, -9999), sources, start, limit_m)
    limit = np.inf if limit_m is None else float(limit_m)
    aug = _augmented(graph, sources.take(ok), start[ok])
    dist, pred, src = dijkstra(
        aug,
        directed=True,
        indices=np.arange(n, n + len(ok)),
        return_predecessors=True,
        limit=limit,
        min_only=True,
    )
    node_source = np.where(src[:n] >= n, ok[np.clip(src[:n] - n, 0, len(ok) - 1)], -1)
    # predecessors pointing at a virtual node: renumber to n + original source index
    p = pred[:n].astype(np.int64)
    virtual = p >= n
    p[virtual] = n + ok[p[virtual] - n]
    return Reach(dist[:n], node_source, p, sources, start, limit)


class _OneSourceSearch:
    """The graph plus ONE spare virtual node whose two edges are rewritten per search.

    Built once per graph (``WalkGraph.one_source_search``): a search from a point on an edge then costs one Dijkstra from the
    virtual node, instead of two from the edge's ends (they reach nearly the same nodes) or
    rebuilding the graph around a new virtual node. The rewrite and the search hold a lock.
    """

    def __init__(self, graph: WalkGraph) -> None:
        base = graph.matrix
        n = graph.n_nodes
        self.matrix = csr_matrix(
            (
                np.concatenate([base.data, [1.0, 1.0]]),
                np.concatenate([base.indices, [0, min(1, n - 1)]]).astype(np.int32),
                np.concatenate([base.indptr, [base.indptr[-1] + 2]]).astype(np.int32),
            ),
            shape=(n + 1, n + 1),
        )
        self.lock = threading.Lock()

    def node_dist_m(self, u: int, v: int, to_u: float, to_v: float, limit: float) -> np.ndarray:
        """Metres from the virtual node (``to_u`` from node ``u``, ``to_v`` from ``v``) to every
        node, inf beyond ``limit``; the last entry is the virtual node itself."""
        m = self.matrix
        with self.lock:
            m.indices[-2:] = (u, v)
            m.data[-2:] = (max(to_u, _EPS_M), max(to_v, _EPS_M))
            return dijkstra(m, directed=True, indices=m.shape[0] - 1, limit=limit, min_only=True)


def distances_from_one_m(
    graph: WalkGraph,
    source: Snap,
    targets: Snap,
    *,
    limit_m: float = np.inf,
    access: bool = True,
) -> np.ndarray:
    """Walking metres from the one point ``source`` to each of ``targets``.

    The same metres as ``distances_at(graph, reach_from(graph, source, ...), targets)``:
    via either end of the target's edge, or along the edge when source and target share it.
    With ``access`` both access legs (snap distances) count. Targets not snapped, or farther
    than ``limit_m``, get inf. The search is bounded by ``limit_m`` and reads only the
    targets' nodes, so its cost follows the limit, not the size of the network.
    """
    k = len(targets)
    best = np.full(k, np.inf)
    if len(source) != 1:
        raise ValueError(f"one source expected, got {len(source)}")
    ok = np.flatnonzero(targets.ok)
    if not source.ok[0] or not len(ok):
        return best
    limit = np.inf if limit_m is None else float(limit_m)
    start = float(source.snap_m[0]) if access else 0.0
    e0 = int(source.edge[0])
    off0 = float(source.offset_m[0])
    to_u = start + off0
    to_v = start + float(graph.edge_length_m[e0]) - off0
    if min(to_u, to_v) > limit:
        node_dist = None
    else:
        node_dist = graph.one_source_search.node_dist_m(
            int(graph.edge_u[e0]), int(graph.edge_v[e0]), to_u, to_v, limit
        )
    e = targets.edge[ok]
    t = targets.offset_m[ok]
    if node_dist is None:
        d = np.full(len(ok), np.inf)
    else:
        d = np.minimum(
            node_dist[graph.edge_u[e]] + t,
            node_dist[graph.edge_v[e]] + (graph.edge_length_m[e] - t),
        )
    same = e == e0
    if same.any():
        d[same] = np.minimum(d[same], start + np.abs(off0 - t[same]))
    d = np.where(d <= limit, d, np.inf)
    if access:
        d = d + targets.snap_m[ok]
    best[ok] = d
    return best


def per_source_node_distances(
    graph: WalkGraph, sources: Snap, *, limit_m: float, access: bool = True
) -> Iterator[tuple[int, np.ndarray]]:
    """For each snapped source separately: (source index, node distances within ``limit_m``).

    All sources run in batched Dijkstra calls (one per ``_BATCH_FLOATS`` rows), not one
    Python-level search per source.
    """
    ok = np.flatnonzero(sources.ok)
    n = graph.n_nodes
    if not len(ok) or not n:
        return
    start = _start_m(sources, access)
    aug = _augmented(graph, sources.take(ok), start[ok])
    batch = max(1, _BATCH_FLOATS // (n + len(ok)))
    for lo in range(0, len(ok), batch):
        idx = np.arange(lo, min(lo + batch, len(ok)))
        dist = dijkstra(aug, directed=True, indices=n + idx, limit=float(limit_m))
        dist = np.atleast_2d(dist)
        for row, i in enumerate(idx):
            yield int(ok[i]), dist[row, :n]


def distances_at(
    graph: WalkGraph, reach: Reach, targets: Snap, *, access: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Walking distance from the nearest source to each target, and that source's index.

    Best of: via the edge's u end, via its v end, and straight along the edge from a source on
    the same edge. Targets not snapped (``edge == -1``) or unreached get (inf, -1). Results
    beyond ``reach.limit_m`` are inf.
    """
    k = len(targets)
    best = np.full(k, np.inf)
    who = np.full(k, -1, dtype=np.int64)
    ok = np.flatnonzero(targets.ok)
    if not len(ok):
        return best, who
    e = targets.edge[ok]
    t = targets.offset_m[ok]
    length = graph.edge_length_m[e]
    du = reach.node_dist_m[graph.edge_u[e]] + t
    dv = reach.node_dist_m[graph.edge_v[e]] + (length - t)
    d = np.minimum(du, dv)
    w = np.where(du <= dv, reach.node_source[graph.edge_u[e]], reach.node_source[graph.edge_v[e]])
    # sources on the same edge as a target
    src_ok = np.flatnonzero(reach.sources.ok)
    if len(src_ok):
        s_edge = reach.sources.edge[src_ok]
        shared = np.isin(e, s_edge)
        if shared.any():
            order = np.argsort(s_edge, kind="stable")
            s_sorted = s_edge[order]
            for j in np.flatnonzero(shared):
                lo, hi = np.searchsorted(s_sorted, [e[j], e[j] + 1])
                cand = src_ok[order[lo:hi]]
                direct = reach.source_start_m[cand] + np.abs(reach.sources.offset_m[cand] - t[j])
                i = int(np.argmin(direct))
                if direct[i] < d[j]:
                    d[j], w[j] = direct[i], cand[i]
    d = np.where(d <= reach.limit_m, d, np.inf)
    if access:
        d = d + targets.snap_m[ok]
    best[ok] = d
    who[ok] = np.where(np.isfinite(d), w, -1)
    return best, who


def nearest_targets(
    graph: WalkGraph,
    origin: Snap,
    targets: Snap,
    k: int,
    *,
    start_limit_m: float = 1000.0,
    max_limit_m: float = np.inf,
    access: bool = True,
) -> tuple[np.ndarray, np.ndarray, Reach]:
    """The ``k`` targets nearest to the single ``origin`` by walking distance.

    Searches with a growing distance limit (×4 per round) so a dense network is not explored
    to its edges for a nearby answer. Returns (target indices, distances in metres, the reach
    of the final round, for routes), nearest first; fewer than ``k`` when fewer are reachable.
    """
    if len(origin) != 1:
        raise ValueError("nearest_targets takes exactly one origin")
    if not origin.ok[0] or not targets.ok.any() or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0), reach_from(graph, origin.take([]), access=access)
    limit = min(start_limit_m, max_limit_m)
    main_size = int((graph.component == graph.main_component).sum())
    while True:
        reach = reach_from(graph, origin, limit_m=limit, access=access)
        dist, _ = distances_at(graph, reach, targets, access=access)
        # a target is certain once its whole distance is within the limit: any other has
        # already walked more than the limit on the network alone
        found = np.flatnonzero(dist <= limit)
        exhausted = np.isfinite(reach.node_dist_m).sum() >= main_size
        if len(found) >= k or limit >= max_limit_m or exhausted:
            found = np.flatnonzero(np.isfinite(dist)) if exhausted else found
            break
        limit = min(limit * 4.0, max_limit_m)
        if limit > 1e6:
            limit = np.inf
    order = found[np.lexsort((found, dist[found]))][:k]
    return order, dist[order], reach


# -- routes ------------------------------------------------------------------------------------


def _edge_between(graph: WalkGraph, a: int, b: int) -> int:
    """Index of the (shortest) edge joining nodes a and b."""
    m = graph.matrix
    lo, hi = m.indptr[a], m.indptr[a + 1]
    j = lo + int(np.searchsorted(m.indices[lo:hi], b))
    if j >= hi or m.indices[j] != b:
        raise KeyError(f"no edge between nodes {a} and {b}")
    return int(graph.pair_edge[j])


def _edge_part(graph: WalkGraph, e: int, from_m: float, to_m: float) -> np.ndarray:
    """Coordinates of edge ``e`` between two metre offsets from u, in walking order."""
    geom = graph.edge_geoms[e]
    scale = graph.edge_geom_length[e] / graph.edge_length_m[e] if graph.edge_length_m[e] else 0.0
    a, b = sorted((from_m * scale, to_m * scale))
    part = substring(geom, a, b) if b > a else shapely.line_interpolate_point(geom, a)
    coords = shapely.get_coordinates(part)
    return coords[::-1] if from_m > to_m else coords


def route_to(graph: WalkGraph, reach: Reach, targets: Snap, j: int) -> LineString | None:
    """The walked line from the reach's nearest source to target ``j`` (both access legs).

    None when target ``j`` is not reached.
    """
    e = int(targets.edge[j])
    if e < 0:
        return None
    n = graph.n_nodes
    t = float(targets.offset_m[j])
    length = float(graph.edge_length_m[e])
    u, v = int(graph.edge_u[e]), int(graph.edge_v[e])
    du = reach.node_dist_m[u] + t
    dv = reach.node_dist_m[v] + (length - t)
    options = [(du, "u", -1), (dv, "v", -1)]
    for s in np.flatnonzero(reach.sources.ok & (reach.sources.edge == e)):
        direct = reach.source_start_m[s] + abs(reach.sources.offset_m[s] - t)
        options.append((direct, "direct", int(s)))
    best, how, s_direct = min(options, key=lambda o: o[0])
    if not np.isfinite(best) or best > reach.limit_m:
        return None
    pieces: list[np.ndarray] = []
    if how == "direct":
        s = s_direct
        pieces.append(reach.sources.point_xy[s][None, :])
        pieces.append(_edge_part(graph, e, float(reach.sources.offset_m[s]), t))
    else:
        end = u if how == "u" else v
        chain = [end]
        while reach.predecessors[chain[-1]] < n:
            chain.append(int(reach.predecessors[chain[-1]]))
            if len(chain) > n:
                raise RuntimeError("predecessor cycle")
        s = int(reach.predecessors[chain[-1]] - n)
        chain.reverse()  # source side first
        se = int(reach.sources.edge[s])
        s_off = float(reach.sources.offset_m[s])
        first = chain[0]
        pieces.append(reach.sources.point_xy[s][None, :])
        pieces.append(
            _edge_part(
                graph,
                se,
                s_off,
                0.0 if first == graph.edge_u[se] else float(graph.edge_length_m[se]),
            )
        )
        for a, b in pairwise(chain):
            ee = _edge_between(graph, a, b)
            pieces.append(
                _edge_part(graph, ee, 0.0, float(graph.edge_length_m[ee]))
                if graph.edge_u[ee] == a
                else _edge_part(graph, ee, float(graph.edge_length_m[ee]), 0.0)
            )
        pieces.append(_edge_part(graph, e, 0.0 if end == u else length, t))
    pieces.append(targets.point_xy[j][None, :])
    coords = np.vstack(pieces)
    keep = np.ones(len(coords), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(coords, axis=0)) > 1e-9, axis=1)
    coords = coords[keep]
    if len(coords) < 2:
        coords = np.vstack([coords, coords])
    return LineString(coords)
