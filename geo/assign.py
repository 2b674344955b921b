"""Bulk assignment of points to grids with the semantics of PostGIS ``ST_Covers(grid, point)``.

A point belongs to the grid that covers it (interior or boundary). A point covered by several
grids (on a shared border, or where bad data overlaps) goes to the grid with the lowest code.
Everything is computed on lon/lat doubles exactly as stored (EPSG:4326, no reprojection).

Agreement with PostGIS is exact, not approximate. PostGIS (3.x) answers ``ST_Covers(polygon,
point)`` with its own winding-number point-in-polygon test in plain double arithmetic
(``point_in_multipolygon``; a point whose side determinant is exactly 0.0 inside a segment's
box is on the boundary). GEOS, used here for speed, decides with exact predicates. The two can
only differ for points within ~1e-18 degree of a boundary, so:

1. candidates are found per grid by bounding box (points bucketed once);
2. a prepared GEOS test against the grid grown by ``_BAND_DEG`` rejects points that are
   certainly outside; one against the grid shrunk by ``_BAND_DEG`` accepts points that are
   certainly inside;
3. the few points left in that thin band (in practice: points on or next to a border) are
   decided by ``postgis_covers_xy``, a vectorised replica of the PostGIS arithmetic.

Grids are visited in ascending code order and a point stops at its first covering grid, which
is therefore the lowest covering code; no multi-hit resolution is needed afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

logger = logging.getLogger(__name__)

# Width of the "cannot decide with GEOS alone" band around every grid boundary, in degrees
# (1e-9 degree is about 0.1 mm). Float error of the PostGIS determinant is ~1e-18 degree.
_BAND_DEG = 1e-9
# Upper bound of (points x segments) cells per block in postgis_covers_xy.
_BLOCK_CELLS = 2_000_000
# Upper bound of the number of point buckets (memory: 8 bytes each).
_MAX_BUCKETS = 1 << 20


def _ring_segments(ring: BaseGeometry) -> np.ndarray:
    """(n, 4) array x1, y1, x2, y2 of a ring's consecutive vertex pairs."""
    xy = shapely.get_coordinates(ring)
    if len(xy) < 2:
        return np.empty((0, 4))
    return np.column_stack([xy[:-1], xy[1:]])


def _ring_status(seg: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """PostGIS ``point_in_ring``: 1 inside, 0 on the ring, -1 outside (per point).

    Same operations in the same order as PostGIS, so IEEE doubles give the same bits.
    Zero-length segments are skipped, as PostGIS does.
    """
    status = np.full(px.shape, -1, dtype=np.int8)
    seg = seg[~((seg[:, 0] == seg[:, 2]) & (seg[:, 1] == seg[:, 3]))]
    if len(seg) == 0 or len(px) == 0:
        return status
    block = max(1, _BLOCK_CELLS // len(seg))
    x1, y1, x2, y2 = (seg[:, i][None, :] for i in range(4))
    for start in range(0, len(px), block):
        qx = px[start : start + block, None]
        qy = py[start : start + block, None]
        # determineSide(seg1, seg2, point)
        side = (x2 - x1) * (qy - y1) - (qx - x1) * (y2 - y1)
        on = (
            (side == 0.0)
            & (np.minimum(x1, x2) <= qx)
            & (qx <= np.maximum(x1, x2))
            & (np.minimum(y1, y2) <= qy)
            & (qy <= np.maximum(y1, y2))
        ).any(axis=1)
        up = ((y1 <= qy) & (qy < y2) & (side > 0.0)).sum(axis=1)
        down = ((y2 <= qy) & (qy < y1) & (side < 0.0)).sum(axis=1)
        out = np.where(up - down != 0, 1, -1).astype(np.int8)
        out[on] = 0
        status[start : start + block] = out
    return status


def postgis_covers_xy(geom: BaseGeometry | None, x: Any, y: Any) -> np.ndarray:
    """``ST_Covers(geom, ST_Point(x, y))`` for a (Multi)Polygon, replicating PostGIS 3.x.

    Follows ``point_in_multipolygon`` (lwgeom_functions_analytic.c): parts in order; a point on
    an exterior ring is covered; inside an exterior ring the first hole that is not "outside"
    decides (inside a hole: not covered by this part, on a hole ring: covered). Vectorised over
    the points; meant for few points (cost is points x segments). Non-finite points and empty
    geometries give False.
    """
    px = np.asarray(x, dtype=np.float64).ravel()
    py = np.asarray(y, dtype=np.float64).ravel()
    covered = np.zeros(px.shape, dtype=bool)
    if geom is None or shapely.is_empty(geom) or len(px) == 0:
        return covered
    if shapely.get_type_id(geom) not in (3, 6):
        raise TypeError(f"postgis_covers_xy needs a (Multi)Polygon, got {geom.geom_type}")
    finite = np.isfinite(px) & np.isfinite(py)
    undecided = finite.copy()
    for part in shapely.get_parts(geom):
        idx = np.nonzero(undecided)[0]
        if len(idx) == 0 or part.is_empty:
            continue
        qx, qy = px[idx], py[idx]
        ext = _ring_status(_ring_segments(part.exterior), qx, qy)
        decided_here = ext == 0
        covered_here = ext == 0
        inside = ext == 1
        hole_open = inside.copy()  # inside the exterior, no hole has decided yet
        for hole in part.interiors:
            if not hole_open.any():
                break
            h_idx = np.nonzero(hole_open)[0]
            h_status = _ring_status(_ring_segments(hole), qx[h_idx], qy[h_idx])
            on_hole = h_idx[h_status == 0]
            in_hole = h_idx[h_status == 1]
            covered_here[on_hole] = True
            decided_here[on_hole] = True
            hole_open[on_hole] = False
            hole_open[in_hole] = False  # this part says "outside"; later parts may still cover
        covered_here |= hole_open
        decided_here |= hole_open
        covered[idx[covered_here]] = True
        undecided[idx[decided_here]] = False
    return covered


class GridIndex:
    """Grids prepared for repeated bulk assignment (build once per grid generation).

    ``grid_geoms``: shapely (Multi)Polygons in lon/lat (EPSG:4326), as stored.
    ``grid_codes``: their codes; "lowest" is numpy order of the array (numeric for ints,
    lexicographic for strings — identical for the fixed-width 15-digit codes). Equal codes
    are broken by position.
    """

    def __init__(self, grid_geoms: Sequence[BaseGeometry] | np.ndarray, grid_codes: Any) -> None:
        geoms = np.asarray(grid_geoms, dtype=object).ravel()
        codes = np.asarray(grid_codes).ravel()
        if geoms.shape != codes.shape:
            raise ValueError(f"{len(geoms)} grid geometries but {len(codes)} codes")
        self.n_grids = len(geoms)
        self.geoms = geoms
        self.codes = codes
        self.order = np.argsort(codes, kind="stable") if self.n_grids else np.empty(0, np.intp)
        usable = np.array(
            [g is not None and not shapely.is_empty(g) for g in geoms], dtype=bool
        ).reshape(-1)
        for g in geoms[usable]:
            if shapely.get_type_id(g) not in (3, 6):
                raise TypeError(f"grid geometries must be (Multi)Polygons, got {g.geom_type}")
        self.usable = usable
        self.bounds = np.full((self.n_grids, 4), np.nan)
        if usable.any():
            self.bounds[usable] = shapely.bounds(geoms[usable].astype(object))
        valid = np.zeros(self.n_grids, dtype=bool)
        if usable.any():
            valid[usable] = shapely.is_valid(geoms[usable])
        # Invalid grids are decided entirely by the PostGIS replica (GEOS may disagree there).
        self.exact_only = usable & ~valid
        self.outer = np.full(self.n_grids, None, dtype=object)
        self.inner = np.full(self.n_grids, None, dtype=object)
        fast = usable & valid
        if fast.any():
            src = geoms[fast]
            self.outer[fast] = shapely.buffer(src, _BAND_DEG, join_style="mitre", mitre_limit=2.0)
            self.inner[fast] = shapely.buffer(src, -_BAND_DEG, join_style="mitre", mitre_limit=2.0)
            shapely.prepare(self.outer[fast])
            shapely.prepare(self.inner[fast])
        if self.exact_only.any():
            logger.warning(
                "%d invalid grid geometries: assigned with the exact (slower) PostGIS replica",
                int(self.exact_only.sum()),
            )
        if usable.any():
            b = self.bounds[usable]
            self.extent = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
            widths = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            self.bucket_deg = float(max(np.median(widths) / 2.0, 1e-9))
        else:
            self.extent = None
            self.bucket_deg = 1.0

    def assign(self, points_lon: Any, points_lat: Any) -> np.ndarray:
        """Index into the grid arrays of the lowest-code grid covering each point, −1 if none."""
        lon = np.asarray(points_lon, dtype=np.float64).ravel()
        lat = np.asarray(points_lat, dtype=np.float64).ravel()
        if lon.shape != lat.shape:
            raise ValueError(f"lon and lat shapes differ: {lon.shape} vs {lat.shape}")
        result = np.full(len(lon), -1, dtype=np.intp)
        if len(lon) == 0 or self.extent is None:
            return result
        xmin, ymin, xmax, ymax = self.extent
        inside_extent = (lon >= xmin) & (lon <= xmax) & (lat >= ymin) & (lat <= ymax)
        live = np.nonzero(inside_extent)[0]  # NaN fails every comparison
        if len(live) == 0:
            return result
        x = lon[live]
        y = lat[live]

        # Bucket the points once on a regular lon/lat lattice (counting sort).
        bucket_deg = self.bucket_deg
        n_buckets = ((xmax - xmin) / bucket_deg + 1) * ((ymax - ymin) / bucket_deg + 1)
        if n_buckets > _MAX_BUCKETS:  # very wide extent vs. small grids: coarser buckets
            bucket_deg *= float(np.sqrt(n_buckets / _MAX_BUCKETS))
        nbx = int(min(max(np.ceil((xmax - xmin) / bucket_deg), 1), 4096))
        nby = int(min(max(np.ceil((ymax - ymin) / bucket_deg), 1), 4096))
        cw = (xmax - xmin) / nbx or 1.0
        ch = (ymax - ymin) / nby or 1.0
        bx = np.minimum(((x - xmin) / cw).astype(np.intp), nbx - 1)
        by = np.minimum(((y - ymin) / ch).astype(np.intp), nby - 1)
        bucket = by * nbx + bx
        sorted_pts = np.argsort(bucket, kind="stable")
        starts = np.zeros(nbx * nby + 1, dtype=np.intp)
        np.cumsum(np.bincount(bucket, minlength=nbx * nby), out=starts[1:])

        done = np.zeros(len(x), dtype=bool)
        local = np.full(len(x), -1, dtype=np.intp)
        n_band = 0
        for g in self.order:
            if not self.usable[g]:
                continue
            gx0, gy0, gx1, gy1 = self.bounds[g]
            ix0 = max(int((gx0 - xmin) / cw), 0)
            ix1 = min(int((gx1 - xmin) / cw), nbx - 1)
            iy0 = max(int((gy0 - ymin) / ch), 0)
            iy1 = min(int((gy1 - ymin) / ch), nby - 1)
            slices = [
                sorted_pts[starts[row * nbx + ix0] : starts[row * nbx + ix1 + 1]]
                for row in range(iy0, iy1 + 1)
            ]
            cand = slices[0] if len(slices) == 1 else np.concatenate(slices)
            cand = cand[~done[cand]]
            if len(cand) == 0:
                continue
            cx = x[cand]
            cy = y[cand]
            keep = (cx >= gx0) & (cx <= gx1) & (cy >= gy0) & (cy <= gy1)
            cand, cx, cy = cand[keep], cx[keep], cy[keep]
            if len(cand) == 0:
                continue
            if self.exact_only[g]:
                hit = cand[postgis_covers_xy(self.geoms[g], cx, cy)]
            else:
                near = shapely.intersects_xy(self.outer[g], cx, cy)
                cand, cx, cy = cand[near], cx[near], cy[near]
                if len(cand) == 0:
                    continue
                sure = shapely.contains_xy(self.inner[g], cx, cy)
                band = ~sure
                hit = cand[sure]
                if band.any():
                    n_band += int(band.sum())
                    exact = postgis_covers_xy(self.geoms[g], cx[band], cy[band])
                    hit = np.concatenate([hit, cand[band][exact]])
            local[hit] = g
            done[hit] = True
        result[live] = local
        logger.debug(
            "assigned %d of %d points to %d grids (%d band tests)",
            int(done.sum()),
            len(lon),
            self.n_grids,
            n_band,
        )
        return result


def assign_points_to_grids(
    points_lon: Any,
    points_lat: Any,
    grid_geoms: Sequence[BaseGeometry] | np.ndarray,
    grid_codes: Any,
) -> np.ndarray:
    """For each point, the index (into grid_geoms / grid_codes) of the lowest-code grid that
    covers it as PostGIS ``ST_Covers(grid, point)`` would; −1 where no grid covers it.

    For repeated calls against the same grids build a ``GridIndex`` once and call ``assign``.
    """
    return GridIndex(grid_geoms, grid_codes).assign(points_lon, points_lat)
