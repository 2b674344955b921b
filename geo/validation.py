"""Validate a community's grids before they are published (pure; metric work in UTM).

``validate_grids`` takes a community outline and its (draft) grids in lon/lat, projects
everything to the local UTM zone and returns ``Finding`` s. Each finding has a stable
``code``, a ``severity`` (``blocking`` prevents publishing, ``warning`` does not), message
parameters and a lon/lat geometry to show on the map:

- ``invalid_geometry`` (blocking): the reason GEOS gives, where, and as geometry the repair
  ``make_valid`` would give (all later checks use that repair);
- ``empty_geometry`` (blocking): a grid with no area;
- ``no_grids`` (blocking): the community has no grid at all;
- ``overlap`` (blocking): two grids overlap (area m²);
- ``gap`` (blocking): part of the community in no grid (area m²);
- ``outside_community`` (blocking): part of a grid outside its community (area m², and the
  other communities it reaches, when they are given);
- ``code_missing`` / ``code_duplicate`` / ``code_malformed`` (blocking): DESIGN §2 codes,
  including the community prefix;
- ``building_cut`` (warning): a building split between grids;
- ``households_out_of_range`` (warning): households per grid outside the planning range;
- ``non_contiguous`` (warning): a grid made of several separate parts.

Pieces smaller than ``ValidationRules.min_area_m2`` are float noise of shared edges and are
ignored (a gap that small cannot hold a request's point in practice).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geo.assign import GridIndex
from geo.codes import parse_grid_code
from geo.crs import utm_crs_for_lonlat

logger = logging.getLogger(__name__)

BLOCKING = "blocking"
WARNING = "warning"

#: finding code -> severity (stable; clients and the publish check rely on it)
SEVERITY: dict[str, str] = {
    "no_grids": BLOCKING,
    "empty_geometry": BLOCKING,
    "invalid_geometry": BLOCKING,
    "overlap": BLOCKING,
    "gap": BLOCKING,
    "outside_community": BLOCKING,
    "code_missing": BLOCKING,
    "code_duplicate": BLOCKING,
    "code_malformed": BLOCKING,
    "building_cut": WARNING,
    "households_out_of_range": WARNING,
    "non_contiguous": WARNING,
}

_LOCATION_RE = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)\s*\]")


@dataclass(frozen=True)
class ValidationRules:
    """Planning range and tolerances."""

    households_min: int = 300
    households_max: int = 500
    min_area_m2: float = 1.0  # overlaps, gaps, outside parts below this are float noise
    building_cut_min_m2: float = 1.0  # a building is cut when ≥ 2 grids hold this much of it


@dataclass(frozen=True)
class Finding:
    """One problem: stable code, severity, message parameters, lon/lat geometry, grid keys."""

    code: str
    severity: str
    params: dict[str, Any]
    geometry_lonlat: BaseGeometry | None
    grids: tuple[Any, ...] = field(default_factory=tuple)

    @property
    def blocking(self) -> bool:
        return self.severity == BLOCKING


def _finding(code: str, params: dict[str, Any], geom: Any, grids: Sequence[Any] = ()) -> Finding:
    return Finding(code, SEVERITY[code], params, geom, tuple(grids))


def polygonal_part(geom: Any) -> MultiPolygon:
    """The polygonal part of ``geom`` as a MultiPolygon (empty when there is none)."""
    if geom is None:
        return MultiPolygon()
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon) and not part.is_empty:
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(p for p in part.geoms if not p.is_empty)
        elif part.geom_type == "GeometryCollection":
            polys.extend(polygonal_part(part).geoms)
    return MultiPolygon(polys)


def repair(geom: Any) -> MultiPolygon:
    """What ``make_valid`` gives for ``geom``, keeping only its polygonal part."""
    if geom is None or geom.is_empty:
        return MultiPolygon()
    return polygonal_part(geom if geom.is_valid else shapely.make_valid(geom))


class UtmProjector:
    """lon/lat <-> UTM for one community (always_xy)."""

    def __init__(self, lonlat_geom: BaseGeometry, utm_crs: pyproj.CRS | None = None) -> None:
        if utm_crs is None:
            c = lonlat_geom.centroid
            utm_crs = utm_crs_for_lonlat(c.x, c.y)
        self.crs = utm_crs
        fwd = pyproj.Transformer.from_crs("EPSG:4326", utm_crs, always_xy=True)
        inv = pyproj.Transformer.from_crs(utm_crs, "EPSG:4326", always_xy=True)
        self._fwd = lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1]))
        self._inv = lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1]))

    def to_utm(self, geom: Any) -> Any:
        return None if geom is None else shapely.transform(geom, self._fwd)

    def to_lonlat(self, geom: Any) -> Any:
        return None if geom is None else shapely.transform(geom, self._inv)


def _label(codes: Sequence[Any], keys: Sequence[Any], i: int) -> str:
    code = codes[i]
    return str(code) if code not in (None, "") else f"#{keys[i]}"


def households_per_grid(
    grid_geoms_lonlat: Sequence[BaseGeometry],
    grid_codes: Sequence[Any],
    rep_points_lonlat: Sequence[BaseGeometry] | np.ndarray,
    households: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Households of each grid: buildings go to the grid covering their representative point
    (PostGIS ``ST_Covers`` semantics, lowest code on a shared border — DESIGN §2)."""
    return building_grid_index(grid_geoms_lonlat, grid_codes, rep_points_lonlat, households)[1]


def building_grid_index(
    grid_geoms_lonlat: Sequence[BaseGeometry],
    grid_codes: Sequence[Any],
    rep_points_lonlat: Sequence[BaseGeometry] | np.ndarray,
    households: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(grid position of each building or −1, households per grid)."""
    n = len(grid_geoms_lonlat)
    pts = np.asarray(rep_points_lonlat, dtype=object)
    h = np.asarray(households, dtype=np.int64)
    if n == 0 or len(pts) == 0:
        return np.full(len(pts), -1, dtype=np.intp), np.zeros(n, dtype=np.int64)
    geoms = np.array(
        [g if g is not None and not g.is_empty else None for g in grid_geoms_lonlat], dtype=object
    )
    # Missing codes sort after every real code ("~" > digits), stably by position.
    keys = np.array(
        [str(c) if c not in (None, "") else f"~{i:09d}" for i, c in enumerate(grid_codes)]
    )
    xy = shapely.get_coordinates(pts)
    where = GridIndex(geoms, keys).assign(xy[:, 0], xy[:, 1])
    hit = where >= 0
    per_grid = np.bincount(where[hit], weights=h[hit], minlength=n).astype(np.int64)
    return where, per_grid


def _check_codes(
    codes: Sequence[Any], keys: Sequence[Any], geoms_lonlat: Sequence[Any], community_code: Any
) -> list[Finding]:
    out: list[Finding] = []
    counts = Counter(str(c) for c in codes if c not in (None, ""))
    for i, code in enumerate(codes):
        if code in (None, ""):
            out.append(
                _finding("code_missing", {"grid": f"#{keys[i]}"}, geoms_lonlat[i], [keys[i]])
            )
            continue
        code = str(code)
        try:
            parts = parse_grid_code(code)
        except ValueError as exc:
            reason = str(exc)
        else:
            reason = None
            if community_code and parts["community_code"] != community_code:
                reason = f"does not start with the community code {community_code}"
        if reason is not None:
            out.append(
                _finding(
                    "code_malformed", {"code": code, "reason": reason}, geoms_lonlat[i], [keys[i]]
                )
            )
    for code, n in sorted(counts.items()):
        if n > 1:
            idx = [i for i, c in enumerate(codes) if c not in (None, "") and str(c) == code]
            geom = shapely.union_all([geoms_lonlat[i] for i in idx if geoms_lonlat[i] is not None])
            out.append(
                _finding("code_duplicate", {"code": code, "count": n}, geom, [keys[i] for i in idx])
            )
    return out


def validate_grids(
    grid_geoms_lonlat: Sequence[BaseGeometry | None],
    grid_codes: Sequence[str | None],
    community_lonlat: BaseGeometry,
    *,
    community_code: str | None = None,
    grid_keys: Sequence[Any] | None = None,
    building_geoms_lonlat: Sequence[BaseGeometry] | None = None,
    building_rep_points_lonlat: Sequence[BaseGeometry] | None = None,
    building_households: Sequence[int] | None = None,
    building_codes: Sequence[str] | None = None,
    other_communities_lonlat: Mapping[str, BaseGeometry] | None = None,
    rules: ValidationRules = ValidationRules(),
    utm_crs: pyproj.CRS | None = None,
) -> list[Finding]:
    """Every finding for one community's grids, blocking ones first.

    ``grid_keys`` identify the grids in findings (default: positions). Buildings (footprints,
    representative points, households, codes) are optional; without them the building and
    household checks are skipped. ``other_communities_lonlat`` (code → outline) names the
    communities a grid reaches into.
    """
    n = len(grid_geoms_lonlat)
    keys = list(grid_keys) if grid_keys is not None else list(range(n))
    codes = list(grid_codes)
    if len(codes) != n or len(keys) != n:
        raise ValueError("grid_geoms_lonlat, grid_codes and grid_keys must align")
    proj = UtmProjector(community_lonlat, utm_crs)
    community = repair(proj.to_utm(community_lonlat))
    findings: list[Finding] = []
    if n == 0:
        findings.append(_finding("no_grids", {}, community_lonlat))
        return findings

    # --- geometry validity; everything after works on the repairs
    fixed_lonlat: list[Any] = []
    for i, g in enumerate(grid_geoms_lonlat):
        label = _label(codes, keys, i)
        if g is None or g.is_empty or repair(g).is_empty:
            findings.append(_finding("empty_geometry", {"grid": label}, None, [keys[i]]))
            fixed_lonlat.append(None)
            continue
        if not g.is_valid:
            reason = shapely.is_valid_reason(g)
            fixed = repair(g)
            params = {
                "grid": label,
                "reason": reason,
                "location": _lonlat_location(reason),
                "repaired_area_m2": round(float(proj.to_utm(fixed).area), 1),
            }
            findings.append(_finding("invalid_geometry", params, fixed, [keys[i]]))
            fixed_lonlat.append(fixed)
        else:
            fixed_lonlat.append(polygonal_part(g))
    usable = [i for i in range(n) if fixed_lonlat[i] is not None]
    utm = {i: proj.to_utm(fixed_lonlat[i]) for i in usable}
    min_a = rules.min_area_m2

    # --- overlaps between grids. The areas add up to the union's unless grids overlap (the
    # excess is at least any one pair's overlap), so the pairwise intersections are only
    # computed when that excess reaches min_area_m2.
    covered = shapely.union_all([utm[i] for i in usable]) if usable else Polygon()
    excess = sum(float(utm[i].area) for i in usable) - float(covered.area)
    if len(usable) > 1 and excess >= min_a:
        arr = np.array([utm[i] for i in usable], dtype=object)
        tree = shapely.STRtree(arr)
        left, right = tree.query(arr, predicate="intersects")
        pairs = [(a, b) for a, b in zip(left, right, strict=True) if a < b]
        for a, b in pairs:
            inter = polygonal_part(shapely.intersection(arr[a], arr[b]))
            if inter.area >= min_a:
                ia, ib = usable[a], usable[b]
                findings.append(
                    _finding(
                        "overlap",
                        {
                            "grids": [_label(codes, keys, ia), _label(codes, keys, ib)],
                            "area_m2": round(float(inter.area), 1),
                        },
                        proj.to_lonlat(inter),
                        [keys[ia], keys[ib]],
                    )
                )

    # --- gaps inside the community
    if not community.is_empty:
        gaps = polygonal_part(shapely.difference(community, covered))
        for part in gaps.geoms:
            if part.area >= min_a:
                findings.append(
                    _finding("gap", {"area_m2": round(float(part.area), 1)}, proj.to_lonlat(part))
                )

    # --- parts outside the community
    others: dict[str, Any] | None = None  # projected only when a grid does stick out
    # one overlay for all grids first: per grid only when something sticks out (usually not)
    shapely.prepare(community)
    spill = Polygon()
    if not community.is_empty and not community.covers(covered):
        spill = polygonal_part(shapely.difference(covered, community))
    for i in usable:
        if spill.area < min_a or community.covers(utm[i]):
            continue
        outside = polygonal_part(shapely.difference(utm[i], community))
        if outside.area < min_a:
            continue
        if others is None:
            others = {
                code: repair(proj.to_utm(g)) for code, g in (other_communities_lonlat or {}).items()
            }
        reached = sorted(
            code
            for code, other in others.items()
            if polygonal_part(shapely.intersection(outside, other)).area >= min_a
        )
        findings.append(
            _finding(
                "outside_community",
                {
                    "grid": _label(codes, keys, i),
                    "area_m2": round(float(outside.area), 1),
                    "other_communities": reached,
                },
                proj.to_lonlat(outside),
                [keys[i]],
            )
        )

    # --- codes
    findings.extend(_check_codes(codes, keys, grid_geoms_lonlat, community_code))

    # --- contiguity
    for i in usable:
        parts = [p for p in utm[i].geoms if p.area > 0]
        if len(parts) > 1:
            findings.append(
                _finding(
                    "non_contiguous",
                    {"grid": _label(codes, keys, i), "parts": len(parts)},
                    fixed_lonlat[i],
                    [keys[i]],
                )
            )

    # --- buildings: cut by a boundary, households per grid
    if building_geoms_lonlat is not None and len(building_geoms_lonlat) and usable:
        findings.extend(
            _building_cuts(
                utm,
                usable,
                codes,
                keys,
                proj,
                building_geoms_lonlat,
                building_codes,
                rules,
                grids_lonlat=fixed_lonlat,
            )
        )
    if building_rep_points_lonlat is not None and building_households is not None:
        per_grid = households_per_grid(
            [fixed_lonlat[i] for i in range(n)],
            codes,
            building_rep_points_lonlat,
            building_households,
        )
        for i in usable:
            h = int(per_grid[i])
            if not rules.households_min <= h <= rules.households_max:
                findings.append(
                    _finding(
                        "households_out_of_range",
                        {
                            "grid": _label(codes, keys, i),
                            "households": h,
                            "min": rules.households_min,
                            "max": rules.households_max,
                        },
                        fixed_lonlat[i],
                        [keys[i]],
                    )
                )
    findings.sort(key=lambda f: (f.severity != BLOCKING, list(SEVERITY).index(f.code)))
    logger.debug("validated %d grids: %d findings", n, len(findings))
    return findings


def _lonlat_location(reason: str) -> list[float] | None:
    """The ``[x y]`` GEOS puts in a validity reason (input coordinates: lon/lat here)."""
    m = _LOCATION_RE.search(reason)
    return [float(m.group(1)), float(m.group(2))] if m else None


def _building_cuts(
    utm: dict[int, Any],
    usable: list[int],
    codes: Sequence[Any],
    keys: Sequence[Any],
    proj: UtmProjector,
    building_geoms_lonlat: Sequence[BaseGeometry],
    building_codes: Sequence[str] | None,
    rules: ValidationRules,
    *,
    grids_lonlat: Sequence[Any],
) -> list[Finding]:
    b_lonlat = np.asarray(building_geoms_lonlat, dtype=object)
    # Candidates first, in lon/lat: only a building touching two grids can be cut, so only
    # those are projected and intersected (a difference of the intersects predicate between
    # lon/lat and UTM is sub-millimetre, far below building_cut_min_m2).
    g_lonlat = np.array([grids_lonlat[i] for i in usable], dtype=object)
    present = ~(shapely.is_missing(b_lonlat) | shapely.is_empty(b_lonlat))
    pos = np.flatnonzero(present)
    if not len(pos):
        return []
    # the few grids are the prepared side, the many small buildings sit in the tree
    _, qb = shapely.STRtree(b_lonlat[pos]).query(g_lonlat, predicate="intersects")
    counts = np.bincount(qb, minlength=len(pos)) if len(qb) else np.zeros(len(pos), int)
    cand = pos[counts >= 2]
    if not len(cand):
        return []
    b_utm = np.full(len(b_lonlat), None, dtype=object)
    b_utm[cand] = _repair_array(_transform_array(b_lonlat[cand], proj))
    g_arr = np.array([utm[i] for i in usable], dtype=object)
    qi, gi = shapely.STRtree(g_arr).query(b_utm[cand], predicate="intersects")
    bi = cand[qi]
    if not len(bi):
        return []
    areas = shapely.area(polygonal_part_array(shapely.intersection(b_utm[bi], g_arr[gi])))
    out: list[Finding] = []
    big = areas >= rules.building_cut_min_m2
    for b in np.unique(bi[big]):
        sel = np.flatnonzero((bi == b) & big)
        if len(sel) < 2:
            continue
        total = float(b_utm[b].area) or 1.0
        order = sel[np.argsort(-areas[sel], kind="stable")]
        grids_idx = [usable[int(gi[k])] for k in order]
        out.append(
            _finding(
                "building_cut",
                {
                    "building": str(building_codes[b]) if building_codes is not None else int(b),
                    "grids": [_label(codes, keys, i) for i in grids_idx],
                    "shares": [round(float(areas[k]) / total, 3) for k in order],
                },
                b_lonlat[b],
                [keys[i] for i in grids_idx],
            )
        )
    return out


def polygonal_part_array(geoms: np.ndarray) -> np.ndarray:
    """``polygonal_part`` of each geometry of an array (intersections may hold lines).

    Polygons and MultiPolygons are kept as they are (same area); only the rest is rebuilt."""
    out = np.asarray(geoms, dtype=object).copy()
    types = shapely.get_type_id(out)
    for k in np.flatnonzero((types != 3) & (types != 6)):
        out[k] = polygonal_part(out[k])
    return out


def _transform_array(geoms_lonlat: np.ndarray, proj: UtmProjector) -> np.ndarray:
    """Many lon/lat geometries to UTM in one coordinate transformation."""
    return shapely.transform(np.asarray(geoms_lonlat, dtype=object), proj._fwd)


def _repair_array(geoms: np.ndarray) -> np.ndarray:
    """``repair`` of each geometry, touching only the invalid or non-polygonal ones."""
    out = np.asarray(geoms, dtype=object).copy()
    types = shapely.get_type_id(out)
    bad = ~shapely.is_valid(out) | ((types != 3) & (types != 6))
    for k in np.flatnonzero(bad):
        out[k] = repair(out[k])
    return out


def blocking(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that prevent publishing."""
    return [f for f in findings if f.blocking]
