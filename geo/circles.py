"""Service circles (一刻钟服务圈): the network reachable from a venue within a walking budget.

A circle is built from the *reached edge pieces*: every edge whose ends are within the budget
is taken whole; an edge reached only partly is cut so that its included length equals
``budget − distance to its reached end``; the venue's own edge is taken around the venue's
position. The polygon is the union of those pieces buffered by ``width_m`` (default 50 m).

Speed: buffering all pieces as one MultiLineString in a single GEOS buffer is *slower* on
real pedestrian networks (measured 30-70x slower than the naive way on Helsinki's dense
sidewalks: GEOS nodes all overlapping offset curves at once). Instead the pieces are merged
into chains, simplified by 1 m, buffered with a modest ``quad_segs`` and unioned in one
cascaded union: about 2x faster than buffering every edge at the default 8 segments and
unioning (``naive_circle_polygon``, kept as the reference). The polygon still contains every
piece and reaches no farther than ``width_m`` + ``simplify_m`` from them (the arcs are chords
inside the true round buffer).

Where a venue does not snap to the network, ``straight_circle`` gives a plain disc of radius
``budget_m`` and the caller marks it ``method="buffer"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.ops import substring

from geo.walk import Snap, WalkGraph, edges_of_nodes, per_source_node_distances

logger = logging.getLogger(__name__)

DEFAULT_WIDTH_M = 50.0
DEFAULT_QUAD_SEGS = 2
DEFAULT_SIMPLIFY_M = 1.0
#: pieces shorter than this are dropped (a node reached exactly at the budget)
_MIN_PIECE_M = 1e-6


@dataclass(frozen=True)
class Pieces:
    """Reached parts of edges: ``[start_m, end_m]`` metres from each edge's u end."""

    edge: np.ndarray
    start_m: np.ndarray
    end_m: np.ndarray

    def __len__(self) -> int:
        return len(self.edge)

    @property
    def length_m(self) -> np.ndarray:
        return self.end_m - self.start_m


@dataclass(frozen=True)
class Circle:
    """One source's circle; ``method`` is ``network`` or ``buffer`` (straight-line fallback)."""

    source: int
    method: str
    geometry: Polygon | MultiPolygon
    pieces: Pieces | None
    reached_nodes: np.ndarray  # node indices within the budget (empty for ``buffer``)


def reached_pieces(
    graph: WalkGraph,
    node_dist_m: np.ndarray,
    budget_m: float,
    *,
    source_edge: int = -1,
    source_offset_m: float = 0.0,
    source_start_m: float = 0.0,
) -> Pieces:
    """Edge pieces within ``budget_m`` given the nodes' distances from one source.

    ``source_edge`` / ``source_offset_m`` / ``source_start_m`` describe the source's snapped
    position and the distance already walked there (its access leg), so its own edge is
    covered around it even when neither end is reached.
    """
    reached = np.flatnonzero(node_dist_m <= budget_m)
    edges = edges_of_nodes(graph, reached)
    if source_edge >= 0:
        edges = np.union1d(edges, [source_edge])
    if not len(edges):
        return Pieces(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    length = graph.edge_length_m[edges]
    du = node_dist_m[graph.edge_u[edges]]
    dv = node_dist_m[graph.edge_v[edges]]
    a_u = np.clip(budget_m - du, 0.0, length)  # reached from u: [0, a_u]
    a_v = np.clip(budget_m - dv, 0.0, length)  # reached from v: [L - a_v, L]
    a_u = np.where(np.isfinite(du), a_u, 0.0)
    a_v = np.where(np.isfinite(dv), a_v, 0.0)
    intervals: list[tuple[int, float, float]] = []
    full = a_u + a_v >= length
    for i in np.flatnonzero(~full & (edges == source_edge)):
        # the source's own edge: up to three intervals, merged
        r = budget_m - source_start_m
        spans = [(0.0, a_u[i]), (length[i] - a_v[i], length[i])]
        if r > 0:
            spans.append((max(0.0, source_offset_m - r), min(length[i], source_offset_m + r)))
        for lo, hi in _merge(spans):
            intervals.append((int(edges[i]), lo, hi))
    rest = ~full & (edges != source_edge)
    merged = (
        np.repeat(edges[full], 1),
        np.zeros(full.sum()),
        length[full],
    )
    e_list = [merged[0], edges[rest], edges[rest]]
    s_list = [merged[1], np.zeros(rest.sum()), length[rest] - a_v[rest]]
    t_list = [merged[2], a_u[rest], length[rest]]
    if intervals:
        arr = np.array(intervals, dtype=float)
        e_list.append(arr[:, 0].astype(np.int64))
        s_list.append(arr[:, 1])
        t_list.append(arr[:, 2])
    edge = np.concatenate(e_list).astype(np.int64)
    start = np.concatenate(s_list)
    end = np.concatenate(t_list)
    keep = end - start > _MIN_PIECE_M
    # a whole zero-length edge between reached nodes is still "reached"
    keep |= (end >= start) & (graph.edge_length_m[edge] <= _MIN_PIECE_M) & (start == 0)
    return Pieces(edge[keep], start[keep], end[keep])


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(s for s in spans if s[1] > s[0]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def pieces_lines(graph: WalkGraph, pieces: Pieces) -> np.ndarray:
    """The pieces as projected LineStrings (whole edges reuse the edge geometry)."""
    e = pieces.edge
    length = graph.edge_length_m[e]
    whole = (pieces.start_m <= 0.0) & (pieces.end_m >= length)
    out = graph.edge_geoms[e].copy()
    scale = np.divide(graph.edge_geom_length[e], length, out=np.ones(len(e)), where=length > 0)
    for i in np.flatnonzero(~whole):
        part = substring(out[i], pieces.start_m[i] * scale[i], pieces.end_m[i] * scale[i])
        out[i] = part if part.geom_type == "LineString" else shapely.LineString([part, part])
    return out


def circle_polygon(
    lines: np.ndarray,
    *,
    width_m: float = DEFAULT_WIDTH_M,
    quad_segs: int = DEFAULT_QUAD_SEGS,
    simplify_m: float = DEFAULT_SIMPLIFY_M,
) -> Polygon | MultiPolygon:
    """Union of ``lines`` buffered by ``width_m``.

    Pieces are first merged into chains at degree-2 nodes and simplified by ``simplify_m``
    (fewer, longer lines with fewer vertices), then each chain is buffered with ``quad_segs``
    segments per quarter circle and the buffers are unioned in one cascaded union.
    """
    if width_m <= 0:
        raise ValueError("width_m must be > 0")
    if simplify_m < 0 or simplify_m >= width_m:
        raise ValueError("simplify_m must be in [0, width_m)")
    if not len(lines):
        return Polygon()
    merged = shapely.line_merge(shapely.multilinestrings(list(lines)))
    chains = shapely.get_parts(merged)
    if simplify_m > 0:
        chains = shapely.simplify(chains, simplify_m)
    return shapely.union_all(shapely.buffer(chains, width_m, quad_segs=quad_segs))


def naive_circle_polygon(lines: np.ndarray, *, width_m: float = DEFAULT_WIDTH_M) -> Polygon:
    """The slow reference: buffer every piece (default 8 segments) and union them all."""
    if not len(lines):
        return Polygon()
    return shapely.unary_union(shapely.buffer(np.asarray(lines, dtype=object), width_m))


def straight_circle(
    point_xy: tuple[float, float] | np.ndarray, radius_m: float, *, quad_segs: int = 16
) -> Polygon:
    """The straight-line fallback: a disc of ``radius_m`` around the point."""
    if radius_m <= 0:
        raise ValueError("radius_m must be > 0")
    x, y = np.asarray(point_xy, dtype=float)
    return shapely.Point(x, y).buffer(radius_m, quad_segs=quad_segs)


def service_circles(
    graph: WalkGraph,
    sources: Snap,
    budget_m: float,
    *,
    width_m: float = DEFAULT_WIDTH_M,
    quad_segs: int = DEFAULT_QUAD_SEGS,
    access: bool = True,
) -> list[Circle]:
    """One circle per source, in source order.

    Snapped sources get ``method="network"`` (all of them reached in batched Dijkstra runs
    limited to the budget); sources that did not snap (``edge == -1``), or whose access leg
    alone exceeds the budget, get the straight-line disc and ``method="buffer"``.
    """
    if not budget_m > 0:
        raise ValueError("budget_m must be > 0")
    circles: dict[int, Circle] = {}
    start = sources.snap_m if access else np.zeros(len(sources))
    for i, dist in per_source_node_distances(graph, sources, limit_m=budget_m, access=access):
        if start[i] >= budget_m:
            continue
        pieces = reached_pieces(
            graph,
            dist,
            budget_m,
            source_edge=int(sources.edge[i]),
            source_offset_m=float(sources.offset_m[i]),
            source_start_m=float(start[i]),
        )
        if not len(pieces):
            continue
        geom = circle_polygon(pieces_lines(graph, pieces), width_m=width_m, quad_segs=quad_segs)
        circles[i] = Circle(i, "network", geom, pieces, np.flatnonzero(dist <= budget_m))
    out = []
    for i in range(len(sources)):
        if i in circles:
            out.append(circles[i])
        else:
            disc = straight_circle(sources.point_xy[i], budget_m)
            out.append(Circle(i, "buffer", disc, None, np.zeros(0, np.int64)))
    return out
