"""Partition a community (社区) into grids (网格) of about 300–500 households.

Pure and deterministic; everything in UTM metres. The approach:

1. **Blocks** — street centrelines clipped to the community are noded with the community
   boundary and polygonized, so block edges lie on streets.
2. **Units** — buildings (clipped to the community, the ones whose representative point lies
   inside it) are clustered where they overlap, so an overlap never straddles two grids. Each
   unit goes to the block holding most of its area.
3. **Over-full blocks** (more households than the maximum) are bisected recursively along the
   principal axis of their buildings, at a position chosen between building centroids; the
   free space of the block is shared out by a Voronoi diagram of the buildings' outlines, so
   the cut follows the gaps between buildings.
4. **Region growing** — zones (blocks and block parts) are grown greedily from the north-west
   into groups that reach the minimum, adding the neighbour with the longest shared border
   that keeps the group ≤ maximum; leftovers merge into the neighbour with the longest shared
   border (keeping ≤ maximum when possible), and a local search moves border zones between
   neighbouring groups while that brings more groups into range. A group still out of range
   then takes (or gives) the buildings of a neighbour's border zone nearest to it, cut off
   between buildings as in step 3, when that puts both groups in range.
5. **Geometry** — a grid is the union of its zones minus buildings of other grids plus its own
   buildings, so no building is cut and the grids tile the community.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geo.codes import ROW_HEIGHT_M, grid_sequence

logger = logging.getLogger(__name__)

# Buildings overlapping by more than this share of the smaller one are kept together.
OVERLAP_CLUSTER_SHARE = 1e-4
# Spacing of the points sampled on building outlines for the Voronoi cut of a block.
VORONOI_SPACING_M = 2.5
# Zones closer than this are neighbours; shared borders are measured within it.
ADJACENCY_TOLERANCE_M = 0.05


# --------------------------------------------------------------------------------------------
# small geometry helpers


def _polygonal(geoms: Iterable[Any]) -> np.ndarray:
    """Valid polygonal geometries (lines and points dropped; empty where nothing is left)."""
    arr = np.asarray(list(geoms) if not isinstance(geoms, np.ndarray) else geoms, dtype=object)
    if arr.size == 0:
        return np.empty(0, dtype=object)
    arr = shapely.make_valid(arr)
    out = np.empty(arr.shape[0], dtype=object)
    for i, geom in enumerate(arr):
        if geom is None or geom.is_empty:
            out[i] = shapely.Polygon()
        elif geom.geom_type in ("Polygon", "MultiPolygon"):
            out[i] = geom
        else:
            parts = [
                p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")
            ]
            out[i] = shapely.union_all(parts) if parts else shapely.Polygon()
    return out


def _as_geometry_array(obj: Any) -> np.ndarray:
    if isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries):
        return np.asarray(obj.geometry.values, dtype=object)
    if isinstance(obj, BaseGeometry):
        return np.asarray(shapely.get_parts(obj), dtype=object)
    return np.asarray(list(obj), dtype=object)


def _crs_of(*objs: Any) -> Any:
    for obj in objs:
        crs = getattr(obj, "crs", None)
        if crs is not None:
            if crs.is_geographic:
                raise ValueError("inputs must be in a projected CRS (UTM metres), not degrees")
            return crs
    return None


def _nw_order(points_xy: np.ndarray, ymax_m: float) -> np.ndarray:
    """Indices in north-west-first order (rows of ROW_HEIGHT_M from the north, then x)."""
    if len(points_xy) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.floor((ymax_m - points_xy[:, 1]) / ROW_HEIGHT_M)
    return np.lexsort((np.arange(len(points_xy)), -points_xy[:, 1], points_xy[:, 0], rows))


def _rep_xy(geoms: np.ndarray) -> np.ndarray:
    if len(geoms) == 0:
        return np.zeros((0, 2))
    return shapely.get_coordinates(shapely.point_on_surface(geoms))


# --------------------------------------------------------------------------------------------
# blocks and units


def street_blocks(community_polygon_utm: BaseGeometry, streets_utm: Any) -> np.ndarray:
    """Faces of the community cut by the street centrelines (array of Polygons, NW first).

    The faces tile the community: the clipped streets and the community boundary are noded
    together and polygonized; dangling streets do not cut.
    """
    community = _polygonal([community_polygon_utm])[0]
    if community.is_empty:
        return np.empty(0, dtype=object)
    lines = _as_geometry_array(streets_utm)
    lines = lines[~shapely.is_empty(lines)] if len(lines) else lines
    clipped = shapely.intersection(lines, community) if len(lines) else lines
    pieces = [community.boundary, *[g for g in clipped if not g.is_empty]]
    linework = [
        p
        for p in shapely.get_parts(shapely.union_all(pieces))
        if p.geom_type in ("LineString", "LinearRing")
    ]
    faces = shapely.get_parts(shapely.polygonize(linework))
    if len(faces):
        # keep faces inside the community (holes of the community are faces too)
        inside = shapely.contains_properly(community, shapely.point_on_surface(faces))
        inside |= shapely.covers(community, shapely.point_on_surface(faces))
        faces = faces[inside & (shapely.area(faces) > 0)]
    faces = shapely.normalize(faces)
    order = _nw_order(_rep_xy(faces), community.bounds[3])
    return faces[order]


def _cluster_overlapping(geoms: np.ndarray) -> np.ndarray:
    """Cluster label per geometry: buildings overlapping by a non-negligible area share one."""
    n = len(geoms)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n:
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="intersects")
        keep = left < right
        left, right = left[keep], right[keep]
        if len(left):
            overlap = shapely.area(shapely.intersection(geoms[left], geoms[right]))
            smaller = np.minimum(shapely.area(geoms[left]), shapely.area(geoms[right]))
            for a, b in zip(
                left[overlap > OVERLAP_CLUSTER_SHARE * smaller],
                right[overlap > OVERLAP_CLUSTER_SHARE * smaller],
                strict=True,
            ):
                ra, rb = find(int(a)), find(int(b))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _largest_overlap(geoms: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the target holding most of each geometry's area (-1 when none)."""
    result = np.full(len(geoms), -1, dtype=np.int64)
    if not len(geoms) or not len(targets):
        return result
    tree = shapely.STRtree(targets)
    gi, ti = tree.query(geoms, predicate="intersects")
    if not len(gi):
        return result
    area = shapely.area(shapely.intersection(geoms[gi], targets[ti]))
    # sort by geometry, then area descending, then target index for determinism
    order = np.lexsort((ti, -area, gi))
    gi, ti, area = gi[order], ti[order], area[order]
    first = np.unique(gi, return_index=True)[1]
    result[gi[first]] = ti[first]
    return result


# --------------------------------------------------------------------------------------------
# splitting an over-full block between buildings


def _principal_axis(points_xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = weights + 1e-9
    mean = (points_xy * w[:, None]).sum(axis=0) / w.sum()
    d = points_xy - mean
    cov = (d * w[:, None]).T @ d / w.sum()
    vals, vecs = np.linalg.eigh(cov)
    axis = vecs[:, int(np.argmax(vals))]
    if axis[0] < -1e-12 or (abs(axis[0]) <= 1e-12 and axis[1] < 0):
        axis = -axis
    return axis


def _bisect_units(centroid_xy: np.ndarray, households: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split unit indices into ``parts`` groups by recursive bisection along principal axes."""
    idx = np.arange(len(households))
    if parts <= 1 or len(idx) <= 1:
        return [idx]
    axis = _principal_axis(centroid_xy, households.astype(float))
    proj = centroid_xy @ axis
    order = np.lexsort((idx, proj))
    cum = np.cumsum(households[order])
    left_parts = parts // 2
    want = cum[-1] * left_parts / parts
    # split after position k (1 ≤ k < n): left = order[:k]
    cand = np.arange(1, len(order))
    k = int(cand[np.argmin(np.abs(cum[cand - 1] - want) + 1e-9 * cand)])
    left, right = order[:k], order[k:]
    result: list[np.ndarray] = []
    for sub, sub_parts in ((left, left_parts), (right, parts - left_parts)):
        for piece in _bisect_units(centroid_xy[sub], households[sub], sub_parts):
            result.append(sub[piece])
    return result


def _dissolve_cells(cells: np.ndarray) -> BaseGeometry:
    """Union of Voronoi cells (a polygon coverage), robust to GEOS precision trouble."""
    try:
        merged = shapely.coverage_union_all(cells)
        if merged.is_valid:
            return merged
    except shapely.errors.GEOSException:
        logger.debug("coverage union failed; falling back to snapped union of %d cells", len(cells))
    try:
        return shapely.union_all(cells, grid_size=1e-3)
    except shapely.errors.GEOSException:
        return shapely.union_all(shapely.buffer(cells, 1e-4), grid_size=1e-3)


def _voronoi_labels(
    block: BaseGeometry, unit_geoms: np.ndarray, labels: np.ndarray, n_labels: int
) -> list[BaseGeometry]:
    """Share a block between labelled buildings: Voronoi cells of outline points, by label."""
    coords_list, label_list = [], []
    for geom, label in zip(unit_geoms, labels, strict=True):
        pts = shapely.get_coordinates(shapely.segmentize(geom.boundary, VORONOI_SPACING_M))
        coords_list.append(pts)
        label_list.append(np.full(len(pts), label))
    coords = np.round(np.vstack(coords_list), 2)
    point_labels = np.concatenate(label_list)
    coords, first = np.unique(coords, axis=0, return_index=True)
    point_labels = point_labels[first]
    if len(coords) < 2 or len(np.unique(point_labels)) < 2:
        return [block if lab == point_labels[0] else shapely.Polygon() for lab in range(n_labels)]
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(coords), extend_to=block)
    )
    cells = _polygonal(cells)
    cells = cells[~shapely.is_empty(cells)]
    # label each cell by the (first) outline point it contains
    cell_idx, point_idx = shapely.STRtree(shapely.points(coords)).query(
        cells, predicate="intersects"
    )
    cell_label = np.full(len(cells), -1, dtype=np.int64)
    order = np.lexsort((point_idx, cell_idx))
    cell_idx, point_idx = cell_idx[order], point_idx[order]
    firsts = np.unique(cell_idx, return_index=True)[1]
    cell_label[cell_idx[firsts]] = point_labels[point_idx[firsts]]
    # pieces tile the block exactly: each takes its cells minus what earlier pieces took,
    # the last one takes the rest
    pieces: list[BaseGeometry] = []
    taken: BaseGeometry = shapely.Polygon()
    present = [lab for lab in range(n_labels) if (cell_label == lab).any()]
    for lab in range(n_labels):
        if lab not in present:
            pieces.append(shapely.Polygon())
            continue
        if lab == present[-1]:
            region = shapely.difference(block, taken)
        else:
            region = _polygonal([_dissolve_cells(cells[cell_label == lab])])[0]
            region = _polygonal([shapely.intersection(region, block)])[0]
            region = _polygonal([shapely.difference(region, taken)])[0]
            taken = _polygonal([shapely.union_all([taken, region])])[0]
        pieces.append(_polygonal([region])[0])
    return pieces


# --------------------------------------------------------------------------------------------
# zones, adjacency and region growing


@dataclass
class _Zone:
    geom: BaseGeometry
    households: int
    units: list[int] = field(default_factory=list)


def _adjacency(geoms: np.ndarray) -> list[dict[int, float]]:
    """Shared border length between zones (within ADJACENCY_TOLERANCE_M)."""
    n = len(geoms)
    adj: list[dict[int, float]] = [{} for _ in range(n)]
    if n < 2:
        return adj
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="dwithin", distance=ADJACENCY_TOLERANCE_M)
    keep = a < b
    a, b = a[keep], b[keep]
    if not len(a):
        return adj
    buffered = shapely.buffer(geoms, ADJACENCY_TOLERANCE_M)
    length = shapely.length(shapely.intersection(shapely.boundary(geoms[a]), buffered[b]))
    for i, j, ln in zip(a.tolist(), b.tolist(), length.tolist(), strict=True):
        ln = max(ln, 1e-6)  # touching at a point still connects, weakly
        adj[i][j] = ln
        adj[j][i] = ln
    return adj


def _penalty(h: int, lo: int, hi: int) -> int:
    if h <= 0:
        return 0
    return max(lo - h, 0) + max(h - hi, 0)


class _Groups:
    """Assignment of zones to groups with per-group households and zone sets."""

    def __init__(self, zone_h: np.ndarray, adj: list[dict[int, float]]):
        self.zone_h = zone_h
        self.adj = adj
        self.group_of = np.full(len(zone_h), -1, dtype=np.int64)
        self.members: dict[int, list[int]] = {}
        self.h: dict[int, int] = {}

    def new(self, zone: int) -> int:
        gid = len(self.members)
        while gid in self.members:
            gid += 1
        self.members[gid] = []
        self.h[gid] = 0
        self.add(gid, zone)
        return gid

    def add(self, gid: int, zone: int) -> None:
        self.group_of[zone] = gid
        self.members[gid].append(zone)
        self.h[gid] += int(self.zone_h[zone])

    def remove(self, gid: int, zone: int) -> None:
        self.members[gid].remove(zone)
        self.h[gid] -= int(self.zone_h[zone])
        self.group_of[zone] = -1

    def merge(self, into: int, other: int) -> None:
        for z in sorted(self.members[other]):
            self.group_of[z] = into
            self.members[into].append(z)
        self.h[into] += self.h[other]
        del self.members[other]
        del self.h[other]

    def neighbour_groups(self, gid: int) -> dict[int, float]:
        border: dict[int, float] = {}
        for z in self.members[gid]:
            for nb, ln in self.adj[z].items():
                g = int(self.group_of[nb])
                if g != gid and g >= 0:
                    border[g] = border.get(g, 0.0) + ln
        return border

    def connected_without(self, gid: int, zone: int) -> bool:
        rest = [z for z in self.members[gid] if z != zone]
        if not rest:
            return False
        rest_set = set(rest)
        seen = {rest[0]}
        stack = [rest[0]]
        while stack:
            z = stack.pop()
            for nb in self.adj[z]:
                if nb in rest_set and nb not in seen:
                    seen.add(nb)
                    stack.append(nb)
        return len(seen) == len(rest_set)


def _grow(zone_h: np.ndarray, adj: list[dict[int, float]], order: np.ndarray, lo: int, hi: int):
    groups = _Groups(zone_h, adj)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    # 1. greedy growth from the north-west, seeds are zones with households
    for seed in order.tolist():
        if groups.group_of[seed] >= 0 or zone_h[seed] <= 0:
            continue
        gid = groups.new(seed)
        while groups.h[gid] < lo:
            border: dict[int, float] = {}
            for z in groups.members[gid]:
                for nb, ln in adj[z].items():
                    if groups.group_of[nb] < 0:
                        border[nb] = border.get(nb, 0.0) + ln
            fits = [nb for nb in border if groups.h[gid] + zone_h[nb] <= hi]
            if not fits:
                break
            best = max(fits, key=lambda nb: (border[nb], -rank[nb]))
            groups.add(gid, best)
    # 2. zones without a group (households 0, or unreachable): join the neighbour group
    #    with the longest shared border, repeatedly; isolated ones become their own group.
    pending = [z for z in order.tolist() if groups.group_of[z] < 0]
    while pending:
        progressed = False
        rest = []
        for z in pending:
            border: dict[int, float] = {}
            for nb, ln in adj[z].items():
                g = int(groups.group_of[nb])
                if g >= 0:
                    border[g] = border.get(g, 0.0) + ln
            if border:
                fits = [g for g in border if groups.h[g] + zone_h[z] <= hi] or list(border)
                best = max(fits, key=lambda g: (border[g], -g))
                groups.add(best, z)
                progressed = True
            else:
                rest.append(z)
        if not progressed:
            groups.new(rest[0])
            rest = rest[1:]
        pending = rest
    # 3. merge groups below the minimum into a neighbour, keeping ≤ maximum when possible
    changed = True
    while changed:
        changed = False
        small = sorted(
            (g for g in groups.members if groups.h[g] < lo), key=lambda g: (groups.h[g], g)
        )
        for g in small:
            if g not in groups.members or groups.h[g] >= lo:
                continue
            border = groups.neighbour_groups(g)
            if not border:
                continue
            fits = [o for o in border if groups.h[o] + groups.h[g] <= hi]
            if fits:
                best = max(fits, key=lambda o: (border[o], -o))
            elif groups.h[g] == 0 or all(groups.h[o] < lo for o in border):
                best = max(border, key=lambda o: (border[o], -o))
            else:
                continue
            groups.merge(best, g)
            changed = True
    # 4. local search: move border zones between neighbouring groups while penalty drops
    _local_search(groups, lo, hi)
    # 5. groups left without households (emptied by the search) join their longest border
    for g in sorted(groups.members):
        if g in groups.members and groups.h[g] == 0:
            border = groups.neighbour_groups(g)
            if border:
                groups.merge(max(border, key=lambda o: (border[o], -o)), g)
    return groups


def _local_search(groups: _Groups, lo: int, hi: int, max_rounds: int = 50) -> None:
    zone_h = groups.zone_h
    for _ in range(max_rounds):
        improved = False
        bad = sorted(
            (g for g in groups.members if _penalty(groups.h[g], lo, hi) > 0),
            key=lambda g: (-_penalty(groups.h[g], lo, hi), g),
        )
        for g in bad:
            if g not in groups.members:
                continue
            best_move = None
            best_gain = 0
            for z_in in sorted(groups.members[g]):
                for nb in sorted(groups.adj[z_in]):
                    o = int(groups.group_of[nb])
                    if o == g or o < 0:
                        continue
                    # candidate: move zone nb from o to g (g too small) or z_in from g to o
                    for src, dst, z in ((o, g, nb), (g, o, z_in)):
                        hz = int(zone_h[z])
                        if hz == 0 and src == o:
                            continue
                        before = _penalty(groups.h[src], lo, hi) + _penalty(groups.h[dst], lo, hi)
                        after = _penalty(groups.h[src] - hz, lo, hi) + _penalty(
                            groups.h[dst] + hz, lo, hi
                        )
                        gain = before - after
                        if gain > best_gain and groups.connected_without(src, z):
                            best_gain = gain
                            best_move = (src, dst, z)
            if best_move is not None:
                src, dst, z = best_move
                groups.remove(src, z)
                groups.add(dst, z)
                improved = True
        if not improved:
            return


def _split_zone_towards(
    zone: _Zone,
    receiver_geom: BaseGeometry,
    unit_geom: np.ndarray,
    unit_h: np.ndarray,
    x_low: int,
    x_high: int,
) -> tuple[_Zone, _Zone] | None:
    """Cut from ``zone`` the buildings nearest ``receiver_geom`` worth x_low..x_high households.

    Returns (part for the receiver, part kept) or None when no prefix fits or nothing is left.
    """
    units = np.array(sorted(zone.units), dtype=np.int64)
    if len(units) < 2:
        return None
    dist = shapely.distance(unit_geom[units], receiver_geom)
    order = np.lexsort((units, dist))
    cum = np.cumsum(unit_h[units[order]])
    total = int(cum[-1])
    fits = np.flatnonzero((cum >= x_low) & (cum <= x_high) & (cum < total))
    if not len(fits):
        return None
    k = int(fits[0]) + 1
    moved, kept = units[order[:k]], units[order[k:]]
    labels = np.concatenate([np.zeros(len(moved), np.int64), np.ones(len(kept), np.int64)])
    both = np.concatenate([moved, kept])
    regions = _voronoi_labels(zone.geom, unit_geom[both], labels, 2)
    if regions[0].is_empty or regions[1].is_empty:
        return None
    return (
        _Zone(regions[0], int(unit_h[moved].sum()), moved.tolist()),
        _Zone(regions[1], int(unit_h[kept].sum()), kept.tolist()),
    )


def _rebalance(
    zones: list[_Zone],
    groups: _Groups,
    unit_geom: np.ndarray,
    unit_h: np.ndarray,
    lo: int,
    hi: int,
    max_fixes: int = 200,
) -> tuple[list[_Zone], _Groups]:
    """Bring out-of-range groups into range by cutting a neighbour's border zone.

    For a group below the minimum (above the maximum), the buildings of a border zone nearest
    the receiving group move across a new cut between buildings, when both groups then end up
    in range. Each fix strictly increases the number of groups in range.
    """
    for _ in range(max_fixes):
        fixed = False
        bad = sorted(
            (g for g in groups.members if _penalty(groups.h[g], lo, hi) > 0),
            key=lambda g: (-_penalty(groups.h[g], lo, hi), g),
        )
        for g in bad:
            border = groups.neighbour_groups(g)
            for o in sorted(border, key=lambda o: (-border[o], o)):
                if groups.h[g] < lo:
                    donor, receiver = o, g
                else:
                    donor, receiver = g, o
                hd, hr = groups.h[donor], groups.h[receiver]
                x_low = max(lo - hr, hd - hi, 1)
                x_high = min(hi - hr, hd - lo)
                if x_low > x_high:
                    continue
                receiver_zones = groups.members[receiver]
                receiver_geom = shapely.union_all([zones[z].geom for z in receiver_zones])
                candidates: dict[int, float] = {}
                for z in receiver_zones:
                    for nb, ln in groups.adj[z].items():
                        if groups.group_of[nb] == donor:
                            candidates[nb] = candidates.get(nb, 0.0) + ln
                for z in sorted(candidates, key=lambda z: (-candidates[z], z)):
                    if x_low <= zones[z].households <= x_high and groups.connected_without(
                        donor, z
                    ):
                        groups.remove(donor, z)
                        groups.add(receiver, z)
                        fixed = True
                        break
                    split = _split_zone_towards(
                        zones[z], receiver_geom, unit_geom, unit_h, x_low, x_high
                    )
                    if split is None:
                        continue
                    give, keep = split
                    groups.remove(donor, z)
                    zones[z] = keep
                    zones.append(give)
                    zone_h = np.array([zn.households for zn in zones], dtype=np.int64)
                    groups.zone_h = zone_h
                    groups.group_of = np.append(groups.group_of, -1)
                    groups.adj = _adjacency(np.array([zn.geom for zn in zones], dtype=object))
                    groups.add(donor, z)
                    groups.add(receiver, len(zones) - 1)
                    fixed = True
                    break
                if fixed:
                    break
            if fixed:
                break
        if not fixed:
            break
    return zones, groups


# --------------------------------------------------------------------------------------------
# public API


def partition_community(
    community_polygon_utm: BaseGeometry,
    buildings_utm: Any,
    streets_utm: Any,
    *,
    households: Sequence[int] | np.ndarray | None = None,
    households_min: int = 300,
    households_max: int = 500,
    households_target: int | None = None,
    street_distance_m: float = 15.0,
) -> gpd.GeoDataFrame:
    """Partition a community into grids of ``households_min``–``households_max`` households.

    ``buildings_utm``: GeoDataFrame (column ``households`` unless ``households`` is given) or
    a sequence of footprint polygons; only buildings whose representative point lies in the
    community are used, clipped to it. ``streets_utm``: GeoDataFrame / GeoSeries / sequence of
    centrelines. All in the same UTM CRS.

    Returns a GeoDataFrame (one row per grid, in north-west-first order, CRS of the inputs)
    with ``geometry``, ``households``, ``building_count``, ``buildings`` (tuple of input row
    positions), ``area_m2``, ``in_range`` and ``boundary_on_street_share`` (share of the grid's
    boundary not on the community outline lying within ``street_distance_m`` of a street; NaN
    when it has none). Same input → same output (no randomness).
    """
    if not 0 < households_min <= households_max:
        raise ValueError("need 0 < households_min <= households_max")
    target = households_target or (households_min + households_max) // 2
    crs = _crs_of(buildings_utm, streets_utm)
    community = _polygonal([community_polygon_utm])[0]
    if community.is_empty:
        raise ValueError("community polygon is empty")
    community = shapely.normalize(community)
    ymax = community.bounds[3]

    all_geoms = _as_geometry_array(buildings_utm)
    if households is None:
        if not isinstance(buildings_utm, gpd.GeoDataFrame) or "households" not in buildings_utm:
            raise ValueError("pass households= or a GeoDataFrame with a 'households' column")
        households = buildings_utm["households"].to_numpy()
    all_h = np.nan_to_num(np.asarray(households, dtype=float), nan=0.0).astype(np.int64)
    if len(all_h) != len(all_geoms):
        raise ValueError("households must align with buildings")

    # --- buildings of this community, clipped, in a canonical order
    geoms = _polygonal(all_geoms)
    nonempty = ~shapely.is_empty(geoms)
    inside = np.zeros(len(geoms), dtype=bool)
    if nonempty.any():
        inside[nonempty] = shapely.covers(community, shapely.point_on_surface(geoms[nonempty]))
    b_index = np.flatnonzero(inside)
    b_geom = _polygonal(shapely.intersection(geoms[b_index], community))
    keep = shapely.area(b_geom) > 0
    b_index, b_geom = b_index[keep], b_geom[keep]
    b_xy = _rep_xy(b_geom)
    canon = np.lexsort((b_index, b_xy[:, 0], -b_xy[:, 1])) if len(b_index) else b_index
    b_index, b_geom = b_index[canon], b_geom[canon]
    b_h = all_h[b_index]

    # --- units: clusters of overlapping buildings
    label = _cluster_overlapping(b_geom)
    unit_ids, b_unit = np.unique(label, return_inverse=True)
    n_units = len(unit_ids)
    unit_geom = np.array(
        [shapely.union_all(b_geom[b_unit == u]) for u in range(n_units)], dtype=object
    )
    unit_h = np.bincount(b_unit, weights=b_h, minlength=n_units).astype(np.int64)
    unit_xy = shapely.get_coordinates(shapely.centroid(unit_geom)) if n_units else np.zeros((0, 2))

    # --- blocks and zones
    blocks = street_blocks(community, streets_utm)
    if not len(blocks):
        blocks = np.array([community], dtype=object)
    unit_block = _largest_overlap(unit_geom, blocks)
    unit_block[unit_block < 0] = 0
    zones: list[_Zone] = []
    n_split = 0
    for bi, block in enumerate(blocks):
        members = np.flatnonzero(unit_block == bi)
        h = int(unit_h[members].sum())
        if h <= households_max or len(members) < 2:
            zones.append(_Zone(block, h, members.tolist()))
            continue
        parts = max(math.ceil(h / households_max), round(h / target))
        pieces = _bisect_units(unit_xy[members], unit_h[members], parts)
        labels = np.empty(len(members), dtype=np.int64)
        for k, piece in enumerate(pieces):
            labels[piece] = k
        regions = _voronoi_labels(block, unit_geom[members], labels, len(pieces))
        for k, piece in enumerate(pieces):
            zones.append(
                _Zone(regions[k], int(unit_h[members[piece]].sum()), members[piece].tolist())
            )
        n_split += 1
    zone_geom = np.array([z.geom for z in zones], dtype=object)
    zone_h = np.array([z.households for z in zones], dtype=np.int64)
    adj = _adjacency(zone_geom)
    order = _nw_order(_rep_xy(zone_geom), ymax)
    groups = _grow(zone_h, adj, order, households_min, households_max)
    zones, groups = _rebalance(zones, groups, unit_geom, unit_h, households_min, households_max)
    zone_geom = np.array([z.geom for z in zones], dtype=object)

    # --- grid geometries: zones minus other grids' units plus own units
    group_ids = sorted(groups.members)
    unit_zone = np.empty(n_units, dtype=np.int64)
    for zi, zone in enumerate(zones):
        unit_zone[zone.units] = zi
    unit_group = groups.group_of[unit_zone] if n_units else np.zeros(0, dtype=np.int64)
    unit_tree = shapely.STRtree(unit_geom) if n_units else None
    rows = []
    for g in group_ids:
        base = shapely.union_all(zone_geom[sorted(groups.members[g])])
        own = np.flatnonzero(unit_group == g)
        if unit_tree is not None:
            near = unit_tree.query(base, predicate="intersects")
            foreign = near[unit_group[near] != g]
            if len(foreign):
                base = shapely.difference(base, shapely.union_all(unit_geom[np.sort(foreign)]))
            if len(own):
                base = shapely.union_all([base, *unit_geom[own]])
        geom = shapely.normalize(_polygonal([base])[0])
        own_buildings = np.flatnonzero(np.isin(b_unit, own))
        rows.append(
            {
                "geometry": geom,
                "households": int(b_h[own_buildings].sum()),
                "building_count": len(own_buildings),
                "buildings": tuple(sorted(int(i) for i in b_index[own_buildings])),
            }
        )
    grids = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    grids["area_m2"] = grids.geometry.area
    grids["in_range"] = grids["households"].between(households_min, households_max)
    grids["boundary_on_street_share"] = _per_grid_street_share(
        grids.geometry.to_numpy(), community, streets_utm, street_distance_m
    )
    grids = order_by_sequence(grids, community).drop(columns="sequence")
    logger.info(
        "partitioned community into %d grids from %d blocks (%d split), %d in range",
        len(grids),
        len(blocks),
        n_split,
        int(grids["in_range"].sum()),
    )
    return grids


def _internal_lines(grid_geoms: np.ndarray, community: BaseGeometry) -> BaseGeometry:
    """Grid boundaries that are not on the community's outer boundary."""
    lines = shapely.union_all(shapely.boundary(grid_geoms))
    outer = shapely.buffer(community.boundary, 0.5)
    return shapely.difference(lines, outer)


def _street_zone(streets_utm: Any, distance_m: float) -> BaseGeometry:
    lines = _as_geometry_array(streets_utm)
    if not len(lines):
        return shapely.Polygon()
    return shapely.union_all(shapely.buffer(lines, distance_m))


def _per_grid_street_share(
    grid_geoms: np.ndarray, community: BaseGeometry, streets_utm: Any, distance_m: float
) -> np.ndarray:
    outer = shapely.buffer(community.boundary, 0.5)
    near = _street_zone(streets_utm, distance_m)
    internal = shapely.difference(shapely.boundary(grid_geoms), outer)
    total = shapely.length(internal)
    on = shapely.length(shapely.intersection(internal, near))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, on / np.where(total > 0, total, 1.0), np.nan)


def boundary_street_share(
    grids: Any, community_polygon_utm: BaseGeometry, streets_utm: Any, distance_m: float = 15.0
) -> tuple[float, float]:
    """Share of internal grid boundary within ``distance_m`` of a street, and its length (m).

    Internal boundary = grid boundaries not on the community's outer boundary (0.5 m
    tolerance), each shared edge counted once. Share is 1.0 when there is none.
    """
    geoms = _as_geometry_array(grids)
    community = _polygonal([community_polygon_utm])[0]
    internal = _internal_lines(geoms, community)
    total = float(internal.length)
    if total <= 0:
        return 1.0, 0.0
    on = float(shapely.intersection(internal, _street_zone(streets_utm, distance_m)).length)
    return on / total, total


def building_shares(grids: Any, buildings: Any) -> np.ndarray:
    """For each building, the largest share of its area inside a single grid (0–1).

    Vectorised with an STRtree; a building in no grid gets 0, a zero-area one 1.
    """
    g = _as_geometry_array(grids)
    b = _polygonal(_as_geometry_array(buildings))
    area = shapely.area(b)
    share = np.zeros(len(b))
    if len(b) and len(g):
        tree = shapely.STRtree(g)
        bi, gi = tree.query(b, predicate="intersects")
        if len(bi):
            inter = shapely.area(shapely.intersection(b[bi], g[gi]))
            np.maximum.at(share, bi, inter / np.where(area[bi] > 0, area[bi], 1.0))
    share[area <= 0] = 1.0
    return np.minimum(share, 1.0)


def order_by_sequence(grids: gpd.GeoDataFrame, community_polygon_utm: BaseGeometry) -> Any:
    """Grids sorted by their DESIGN §2 sequence inside the community, with a ``sequence`` column.

    Assign codes afterwards with ``geo.codes.grid_code(district, street, community, seq)``.
    """
    out = grids.copy()
    if len(out) == 0:
        out["sequence"] = np.zeros(0, dtype=np.int64)
        return out
    ymax = shapely.bounds(community_polygon_utm)[3]
    seq = grid_sequence(_rep_xy(out.geometry.to_numpy()), ymax)
    out["sequence"] = seq
    return out.sort_values("sequence", kind="stable").reset_index(drop=True)


def split_along_roads(
    outline_utm: BaseGeometry,
    major_road_lines_utm: Any,
    n_min: int = 3,
    n_max: int = 6,
    min_share: float = 0.25,
) -> list[BaseGeometry]:
    """Split a district outline into ``n_min``–``n_max`` communities along major roads.

    The outline is cut by the road centrelines into faces; the smallest face is merged into
    the neighbour with the longest shared border while there are more than ``n_max`` faces,
    or a face is smaller than ``min_share`` × the mean face area and more than ``n_min`` are
    left. Deterministic. Returns polygons in north-west-first order; raises ValueError when
    the roads cut the outline into fewer than ``n_min`` faces.
    """
    if not 1 <= n_min <= n_max:
        raise ValueError("need 1 <= n_min <= n_max")
    faces = list(street_blocks(outline_utm, major_road_lines_utm))
    if len(faces) < n_min:
        raise ValueError(f"roads cut the outline into {len(faces)} parts, fewer than {n_min}")
    while len(faces) > n_min:
        areas = np.array([f.area for f in faces])
        smallest = int(np.lexsort((np.arange(len(faces)), areas))[0])
        if len(faces) <= n_max and areas[smallest] >= min_share * areas.mean():
            break
        geoms = np.array(faces, dtype=object)
        adj = _adjacency(geoms)[smallest]
        if not adj:
            # isolated piece: merge with the nearest face
            dist = shapely.distance(geoms[smallest], geoms)
            dist[smallest] = np.inf
            other = int(np.argmin(dist))
        else:
            other = max(adj, key=lambda j: (adj[j], -j))
        merged = _polygonal([shapely.union_all([faces[smallest], faces[other]])])[0]
        faces[other] = merged
        del faces[smallest]
    geoms = shapely.normalize(np.array(faces, dtype=object))
    order = _nw_order(_rep_xy(geoms), shapely.bounds(outline_utm)[3])
    return [geoms[i] for i in order]
