"""Edit operations on a community's grids (pure; all geometries in one UTM CRS, metres).

Each operation returns new geometries and never leaves slivers of its own making:

- ``split_grid``: cut a grid along a drawn line (ends extended by ``snap_m`` so a line that
  stops just short of the outline still cuts); pieces below ``min_area_m2`` rejoin a
  neighbouring piece.
- ``merge_grids``: union of adjacent grids (sharing at least ``min_shared_m`` of boundary);
  hairline gaps and pinholes between them are closed.
- ``move_boundary``: the two neighbours' union is re-cut along the new line, so their outer
  outline — and with it every other neighbour — is unchanged and the two still tile it.
- ``draw_grid``: a new polygon clipped to the community and to the free space around its
  neighbours (``clip``, gaps narrower than ``snap_m`` against them are filled), or carved out
  of them (``carve``, neighbours lose what it covers).

Bad input raises ``EditError`` with a stable ``code`` and parameters for the message.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split as split_geometry

from geo.codes import grid_sequence
from geo.validation import polygonal_part, repair

logger = logging.getLogger(__name__)

SNAP_M = 1.0
MIN_AREA_M2 = 1.0
MIN_SHARED_M = 5.0
_MAX_EXACT_ASSIGNMENT = 12


class EditError(ValueError):
    """An edit that cannot be applied; ``code`` is stable, ``params`` explain it."""

    def __init__(self, code: str, **params: Any) -> None:
        self.code = code
        self.params = params
        super().__init__(f"{code}: {params}")


def _require_valid(geom: BaseGeometry, what: str) -> MultiPolygon:
    if geom is None or geom.is_empty:
        raise EditError("empty_geometry", what=what)
    if not geom.is_valid:
        raise EditError(
            "invalid_geometry",
            what=what,
            reason=shapely.is_valid_reason(geom),
            repair=repair(geom),
        )
    poly = polygonal_part(geom)
    if poly.is_empty:
        raise EditError("empty_geometry", what=what)
    return poly


def _as_line(line: Any) -> LineString:
    if not isinstance(line, LineString) or line.is_empty or len(line.coords) < 2:
        raise EditError("invalid_line", reason="a line of at least two points is needed")
    if line.length <= 0:
        raise EditError("invalid_line", reason="the line has no length")
    return line


def extend_line(line: LineString, distance_m: float) -> LineString:
    """``line`` with both end segments prolonged by ``distance_m``."""
    coords = np.asarray(line.coords, dtype=float)[:, :2]
    if distance_m <= 0 or len(coords) < 2:
        return line

    def pushed(end: np.ndarray, before: np.ndarray) -> np.ndarray:
        d = end - before
        norm = float(np.hypot(*d))
        return end if norm == 0 else end + d / norm * distance_m

    first = pushed(coords[0], coords[1])
    last = pushed(coords[-1], coords[-2])
    return LineString(np.vstack([first, coords[1:-1], last]))


def _pieces(geom: MultiPolygon, line: LineString) -> list[Polygon]:
    out: list[Polygon] = []
    for part in geom.geoms:
        out.extend(p for p in split_geometry(part, line).geoms if isinstance(p, Polygon))
    return out


def _shared_length(a: BaseGeometry, b: BaseGeometry, tolerance_m: float) -> float:
    """Length of ``b``'s outline within ``tolerance_m`` of ``a``."""
    return float(shapely.intersection(b.boundary, a.buffer(tolerance_m)).length)


def _absorb_small(pieces: list[Polygon], owner: list[int], min_area_m2: float) -> list[int]:
    """Give every piece below ``min_area_m2`` to the owner of the piece it shares most with."""
    owner = list(owner)
    big = [i for i, p in enumerate(pieces) if p.area >= min_area_m2]
    for i, p in enumerate(pieces):
        if p.area >= min_area_m2 or not big:
            continue
        best = max(big, key=lambda j: (_shared_length(pieces[j], p, 1e-6), -j))
        owner[i] = owner[best]
    return owner


def _nw_first(geoms: list[BaseGeometry], ymax_m: float) -> list[BaseGeometry]:
    if len(geoms) < 2:
        return geoms
    xy = shapely.get_coordinates(shapely.point_on_surface(np.array(geoms, dtype=object)))
    seq = grid_sequence(xy, max(ymax_m, float(xy[:, 1].max())))
    return [geoms[i] for i in np.argsort(seq)]


def split_grid(
    grid_utm: BaseGeometry,
    line_utm: LineString,
    *,
    snap_m: float = SNAP_M,
    min_area_m2: float = MIN_AREA_M2,
) -> list[MultiPolygon]:
    """Cut ``grid_utm`` along ``line_utm``; the pieces, north-west first (≥ 2).

    A line crossing the grid several times gives several pieces. Raises ``EditError``
    ``line_does_not_split`` when the line leaves fewer than two pieces of ``min_area_m2``.
    """
    grid = _require_valid(grid_utm, "grid")
    line = extend_line(_as_line(line_utm), snap_m)
    pieces = _pieces(grid, line)
    owner = _absorb_small(pieces, list(range(len(pieces))), min_area_m2)
    groups: dict[int, list[Polygon]] = {}
    for piece, o in zip(pieces, owner, strict=True):
        groups.setdefault(o, []).append(piece)
    result = [polygonal_part(shapely.union_all(ps)) for ps in groups.values()]
    result = [r for r in result if r.area >= min_area_m2]
    if len(result) < 2:
        raise EditError("line_does_not_split", pieces=len(result))
    logger.debug("split a grid of %.0f m² into %d pieces", grid.area, len(result))
    return _nw_first(result, grid.bounds[3])


def _fill_pinholes(geom: BaseGeometry, max_hole_m2: float) -> MultiPolygon:
    polys = []
    for p in polygonal_part(geom).geoms:
        holes = [r for r in p.interiors if Polygon(r).area >= max_hole_m2]
        polys.append(Polygon(p.exterior, holes))
    return MultiPolygon(polys)


def merge_grids(
    grids_utm: Sequence[BaseGeometry],
    *,
    snap_m: float = SNAP_M,
    min_shared_m: float = MIN_SHARED_M,
    min_area_m2: float = MIN_AREA_M2,
) -> MultiPolygon:
    """One grid from ≥ 2 adjacent ones.

    Grids are adjacent when one's outline runs within ``snap_m`` of the other for at least
    ``min_shared_m``; all of them must be connected that way (``not_adjacent`` otherwise).
    Gaps narrower than ``snap_m`` between them and holes below ``min_area_m2`` are closed.
    """
    if len(grids_utm) < 2:
        raise EditError("merge_needs_two", count=len(grids_utm))
    geoms = [_require_valid(g, f"grid {i + 1}") for i, g in enumerate(grids_utm)]
    n = len(geoms)
    adjacent = {
        (i, j)
        for i, j in itertools.combinations(range(n), 2)
        if geoms[i].distance(geoms[j]) <= snap_m
        and _shared_length(geoms[i], geoms[j], snap_m) >= min_shared_m
    }
    reached, frontier = {0}, [0]
    while frontier:
        i = frontier.pop()
        for j in range(n):
            if j not in reached and ((i, j) in adjacent or (j, i) in adjacent):
                reached.add(j)
                frontier.append(j)
    if len(reached) < n:
        raise EditError("not_adjacent", apart=sorted(set(range(n)) - reached))
    merged = polygonal_part(shapely.union_all(geoms))
    before_parts = sum(len(g.geoms) for g in geoms)
    if len(merged.geoms) > 1 and len(merged.geoms) >= before_parts - (n - 1):
        # hairline gaps between the grids: close them without moving the outline
        half = snap_m / 2.0
        closed = merged.buffer(half, join_style="mitre").buffer(-half, join_style="mitre")
        merged = polygonal_part(shapely.union_all([closed, merged]))
    return _fill_pinholes(merged, min_area_m2)


def _best_assignment(ov_a: np.ndarray, ov_b: np.ndarray) -> list[int]:
    """0 (to a) or 1 (to b) per piece: maximal overlap kept, both sides non-empty."""
    n = len(ov_a)
    if n <= _MAX_EXACT_ASSIGNMENT:
        best, best_score = None, -np.inf
        for mask in range(1, (1 << n) - 1):
            sides = [(mask >> k) & 1 for k in range(n)]
            score = sum(ov_b[k] if s else ov_a[k] for k, s in enumerate(sides))
            if score > best_score:
                best, best_score = sides, score
        assert best is not None
        return best
    sides = [int(ov_b[k] > ov_a[k]) for k in range(n)]
    if all(sides) or not any(sides):
        k = int(np.argmax(ov_a - ov_b)) if all(sides) else int(np.argmax(ov_b - ov_a))
        sides[k] = 1 - sides[k]
    return sides


def move_boundary(
    grid_a_utm: BaseGeometry,
    grid_b_utm: BaseGeometry,
    new_line_utm: LineString,
    *,
    snap_m: float = SNAP_M,
    min_shared_m: float = MIN_SHARED_M,
    min_area_m2: float = MIN_AREA_M2,
) -> tuple[MultiPolygon, MultiPolygon]:
    """Redraw the boundary between neighbours ``a`` and ``b`` along ``new_line_utm``.

    The line must cross their union from outline to outline (ends within ``snap_m`` are
    extended). The union is cut along it and each piece goes to the grid it overlaps most
    (best overall assignment, each keeps at least one piece); pieces below ``min_area_m2``
    follow their larger neighbour. The union's outline is untouched, so the two still tile
    exactly what they tiled before and no other neighbour changes.
    """
    a = _require_valid(grid_a_utm, "grid a")
    b = _require_valid(grid_b_utm, "grid b")
    if a.distance(b) > snap_m or _shared_length(a, b, snap_m) < min_shared_m:
        raise EditError("not_adjacent", apart=[1])
    union = polygonal_part(shapely.union_all([a, b]))
    line = extend_line(_as_line(new_line_utm), snap_m)
    pieces = _pieces(union, line)
    if len([p for p in pieces if p.area >= min_area_m2]) < 2:
        raise EditError("line_does_not_split", pieces=len(pieces))
    arr = np.array(pieces, dtype=object)
    ov_a = shapely.area(shapely.intersection(arr, a))
    ov_b = shapely.area(shapely.intersection(arr, b))
    big = [i for i, p in enumerate(pieces) if p.area >= min_area_m2]
    sides_big = _best_assignment(ov_a[big], ov_b[big])
    owner = [0] * len(pieces)
    for i, s in zip(big, sides_big, strict=True):
        owner[i] = s
    owner = _absorb_small(pieces, owner, min_area_m2)
    new_a = polygonal_part(
        shapely.union_all([p for p, o in zip(pieces, owner, strict=True) if o == 0])
    )
    new_b = polygonal_part(
        shapely.union_all([p for p, o in zip(pieces, owner, strict=True) if o == 1])
    )
    if new_a.is_empty or new_b.is_empty:
        raise EditError("boundary_removes_grid")
    logger.debug(
        "moved boundary: a %.0f → %.0f m², b %.0f → %.0f m²", a.area, new_a.area, b.area, new_b.area
    )
    return new_a, new_b


def draw_grid(
    drawn_utm: BaseGeometry,
    neighbours_utm: Sequence[BaseGeometry],
    community_utm: BaseGeometry | None = None,
    *,
    mode: str = "clip",
    snap_m: float = SNAP_M,
    min_area_m2: float = MIN_AREA_M2,
) -> tuple[MultiPolygon, list[MultiPolygon]]:
    """A new grid from a drawn polygon, and the neighbours after it.

    ``clip``: the new grid is the drawn polygon (grown by ``snap_m`` so hairline gaps against
    neighbours close) intersected with the community minus the neighbours; neighbours are
    unchanged. ``carve``: the drawn polygon (inside the community) is taken out of the
    neighbours; leftover neighbour pieces below ``min_area_m2`` go to the new grid.
    Raises ``EditError`` (``invalid_geometry`` with the repair, ``empty_after_clip``).
    """
    if mode not in ("clip", "carve"):
        raise EditError("invalid_mode", mode=mode, allowed=["clip", "carve"])
    drawn = _require_valid(drawn_utm, "drawn polygon")
    neighbours = [polygonal_part(n) if n is not None else MultiPolygon() for n in neighbours_utm]
    community = repair(community_utm) if community_utm is not None else None
    taken = shapely.union_all([n for n in neighbours if not n.is_empty]) if neighbours else None
    if mode == "clip":
        core = drawn if community is None else shapely.intersection(drawn, community)
        universe = drawn.buffer(2 * snap_m, join_style="mitre")
        if community is not None:
            universe = shapely.intersection(universe, community)
        if taken is not None and not taken.is_empty:
            core = shapely.difference(core, taken)
            universe = shapely.difference(universe, taken)
        fill: list[Polygon] = []
        if snap_m > 0:
            free = shapely.difference(universe, drawn)
            half = snap_m / 2.0
            opened = free.buffer(-half, join_style="mitre").buffer(half, join_style="mitre")
            thin = polygonal_part(
                shapely.intersection(shapely.difference(free, opened), drawn.buffer(snap_m))
            )
            touching = polygonal_part(core).buffer(1e-6)
            fill = [p for p in thin.geoms if p.intersects(touching)]
        new = polygonal_part(shapely.union_all([core, *fill]))
        new = MultiPolygon([p for p in new.geoms if p.area >= min_area_m2])
        if new.is_empty:
            raise EditError("empty_after_clip")
        return new, neighbours
    core = drawn if community is None else polygonal_part(shapely.intersection(drawn, community))
    if core.is_empty:
        raise EditError("empty_after_clip")
    after: list[MultiPolygon] = []
    extra: list[Polygon] = []
    for n in neighbours:
        rest = polygonal_part(shapely.difference(n, core))
        keep = [p for p in rest.geoms if p.area >= min_area_m2]
        extra.extend(p for p in rest.geoms if p.area < min_area_m2)
        after.append(MultiPolygon(keep))
    new = polygonal_part(shapely.union_all([core, *extra]))
    return new, after
