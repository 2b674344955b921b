"""Coverage (the planner's question): which homes have each required facility within reach.

For every required facility of ``data/catalogues/life_circle_requirements.csv`` (category ×
tier), each home gets its walking distance to the nearest active venue of that category: one
multi-source Dijkstra per category over the cached walking graph, access legs included (home
to its path, path to the venue). Homes are residential buildings or buildings with
households. The figures per grid / community / street are the shares of homes and of
households whose distance is within the tier's budget; the *gaps* are the homes that are not.

Straight lines are used, and marked ``straight``, only where the network cannot answer: a
venue that does not snap to the network (its circle is ``method=buffer``) reaches homes by
straight-line distance, and a home farther than the snap limit from any path is measured in a
straight line to every venue. Figures are computed from the current rows every time (no
stored copy to drift), so a venue change is reflected in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
from scipy.spatial import cKDTree
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import utm_crs_for_lonlat
from geo.walk import distances_at, reach_from
from layers.bbox import BBox
from layers.circles.graph_cache import LoadedGraph, get_graph
from layers.circles.service import active_venues, requirements
from layers.config import Settings
from layers.errors import BadRequest
from layers.grids.repo import LIVE_GRIDS, grid_at_point_sql

logger = logging.getLogger(__name__)

LEVELS = ("grid", "community", "street")


@dataclass(frozen=True)
class Homes:
    """Residential buildings with the units they fall in (arrays aligned by index)."""

    ids: np.ndarray
    codes: list[str]
    households: np.ndarray
    lonlat: np.ndarray  # (k, 2)
    unit: dict[str, list[str | None]]  # level -> code per home
    unit_names: dict[str, dict[str, str]]  # level -> code -> name


@dataclass(frozen=True)
class CategoryDistances:
    """Each home's distance to the nearest venue of one category."""

    category: str
    distance_m: np.ndarray  # inf where no venue is reachable at all
    method: np.ndarray  # "walk" | "straight" | "" (no venue)
    venue_id: np.ndarray  # nearest venue id, -1 when none
    network_version: int | None


def load_homes(session: Session, *, bbox: BBox | None = None) -> Homes:
    """Residential buildings with their live grid, community and street (by representative point)."""
    where = "(b.residential OR b.households > 0)"
    params: dict[str, Any] = {}
    if bbox is not None:
        where += " AND b.rep_point && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        params.update(zip(("x0", "y0", "x1", "y1"), bbox, strict=True))
    rows = session.execute(
        text(
            "SELECT b.id, b.code, b.households, ST_X(b.rep_point), ST_Y(b.rep_point), "
            f" ({grid_at_point_sql('b.rep_point', 'g.code')}),"
            " (SELECT a.code FROM areas a WHERE a.level = 'community' "
            "  AND ST_Covers(a.geom, b.rep_point) ORDER BY a.code LIMIT 1),"
            " (SELECT a.code FROM areas a WHERE a.level = 'street' "
            "  AND ST_Covers(a.geom, b.rep_point) ORDER BY a.code LIMIT 1) "
            f"FROM buildings b WHERE {where} AND NOT ST_IsEmpty(b.rep_point) ORDER BY b.id"
        ),
        params,
    ).all()
    names: dict[str, dict[str, str]] = {level: {} for level in LEVELS}
    for code, name in session.execute(
        text("SELECT g.code, g.name FROM grids g WHERE " + LIVE_GRIDS)
    ).all():
        names["grid"][code] = name
    for level, code, name in session.execute(
        text("SELECT level, code, name FROM areas WHERE level IN ('community', 'street')")
    ).all():
        names[level][code] = name
    return Homes(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        codes=[r[1] for r in rows],
        households=np.array([r[2] for r in rows], dtype=np.int64),
        lonlat=np.array([(r[3], r[4]) for r in rows], dtype=np.float64).reshape(-1, 2),
        unit={
            "grid": [r[5] for r in rows],
            "community": [r[6] for r in rows],
            "street": [r[7] for r in rows],
        },
        unit_names=names,
    )


def venue_categories_present(session: Session) -> set[str]:
    """Categories with at least one active, located venue."""
    return set(
        session.scalars(
            text("SELECT DISTINCT category FROM venues WHERE active AND NOT ST_IsEmpty(geom)")
        )
    )


def _straight_m(loaded: LoadedGraph | None, a_lonlat: np.ndarray, b_lonlat: np.ndarray):
    """(min distance, argmin) from each of a to the points b, in metres (UTM)."""
    if loaded is not None:
        a_xy, b_xy = loaded.xy(a_lonlat), loaded.xy(b_lonlat)
    else:
        crs = utm_crs_for_lonlat(
            np.r_[a_lonlat[:, 0], b_lonlat[:, 0]], np.r_[a_lonlat[:, 1], b_lonlat[:, 1]]
        )
        tr = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        a_xy = np.column_stack(tr.transform(a_lonlat[:, 0], a_lonlat[:, 1]))
        b_xy = np.column_stack(tr.transform(b_lonlat[:, 0], b_lonlat[:, 1]))
    d, i = cKDTree(b_xy).query(a_xy)
    return np.asarray(d, dtype=float), np.asarray(i, dtype=np.int64)


def _homes_key(homes: Homes) -> tuple[str, str]:
    h = hashlib.blake2b(homes.ids.tobytes(), digest_size=16)
    h.update(homes.lonlat.tobytes())
    return ("homes", h.hexdigest())


def category_distances(
    session: Session, homes: Homes, category: str, *, settings: Settings | None = None
) -> CategoryDistances:
    """Each home's walking (or, where the network cannot answer, straight) distance."""
    settings = settings or Settings()
    k = len(homes.ids)
    dist = np.full(k, np.inf)
    method = np.full(k, "", dtype=object)
    venue = np.full(k, -1, dtype=np.int64)
    v_ids, v_lonlat = active_venues(session, category)
    loaded = get_graph(session)
    if not k or not len(v_ids):
        return CategoryDistances(category, dist, method, venue, loaded and loaded.version)
    limit = settings.walk_snap_limit_m
    if loaded is None:
        d, i = _straight_m(None, homes.lonlat, v_lonlat)
        return CategoryDistances(category, d, np.full(k, "straight", dtype=object), v_ids[i], None)
    home_snap = loaded.snap_lonlat(homes.lonlat, max_snap_m=limit, key=_homes_key(homes))
    v_snap = loaded.snap_lonlat(v_lonlat, max_snap_m=limit)
    if v_snap.ok.any():
        reach = reach_from(loaded.graph, v_snap)
        d, who = distances_at(loaded.graph, reach, home_snap)
        found = np.isfinite(d)
        dist[found], method[found], venue[found] = d[found], "walk", v_ids[who[found]]
    # straight lines where the network cannot answer
    off_venues = ~v_snap.ok
    if off_venues.any():
        d, i = _straight_m(loaded, homes.lonlat, v_lonlat[off_venues])
        better = d < dist
        dist[better], method[better], venue[better] = (
            d[better],
            "straight",
            v_ids[off_venues][i[better]],
        )
    off_homes = ~home_snap.ok
    if off_homes.any():
        d, i = _straight_m(loaded, homes.lonlat[off_homes], v_lonlat)
        rows = np.flatnonzero(off_homes)
        dist[rows], method[rows], venue[rows] = d, "straight", v_ids[i]
    return CategoryDistances(category, dist, method, venue, loaded.version)


def coverage(
    session: Session,
    *,
    level: str = "grid",
    category: str | None = None,
    tier: str | None = None,
    settings: Settings | None = None,
    homes: Homes | None = None,
) -> list[dict[str, Any]]:
    """Coverage rows per unit of ``level`` for each required (category, tier).

    Each row: level, code, name, category, tier, budget_m, buildings, buildings_covered,
    buildings_share, households, households_covered, households_share. Homes outside every
    unit of the level are reported under code None.
    """
    if level not in LEVELS:
        raise BadRequest("invalid_level", level=level, available=", ".join(LEVELS))
    reqs = requirements(category, tier)
    homes = homes if homes is not None else load_homes(session)
    units = np.array([u if u is not None else "" for u in homes.unit[level]], dtype=object)
    unit_codes = sorted(set(units.tolist()))
    out: list[dict[str, Any]] = []
    by_category: dict[str, CategoryDistances] = {}
    for cat, tr, budget_m in reqs:
        if cat not in by_category:
            by_category[cat] = category_distances(session, homes, cat, settings=settings)
        covered = by_category[cat].distance_m <= budget_m
        for code in unit_codes:
            sel = units == code
            n, hh = int(sel.sum()), int(homes.households[sel].sum())
            nc, hhc = int((sel & covered).sum()), int(homes.households[sel & covered].sum())
            out.append(
                {
                    "level": level,
                    "code": code or None,
                    "name": homes.unit_names[level].get(code),
                    "category": cat,
                    "tier": tr,
                    "budget_m": budget_m,
                    "buildings": n,
                    "buildings_covered": nc,
                    "buildings_share": round(nc / n, 4) if n else None,
                    "households": hh,
                    "households_covered": hhc,
                    "households_share": round(hhc / hh, 4) if hh else None,
                }
            )
    return out


def gaps(
    session: Session,
    *,
    category: str,
    tier: str,
    bbox: BBox | None = None,
    limit: int = 1000,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Homes without ``category`` within ``tier``, as an RFC 7946 FeatureCollection.

    Each feature is the building footprint with its code, households, grid code and distance
    to the nearest such venue (metres; null when none exists), its method and that venue's id;
    farthest first.
    """
    if not category:
        raise BadRequest("missing_field", field="category")
    if not tier:
        raise BadRequest("missing_field", field="tier")
    [(cat, tr, budget_m)] = requirements(category, tier)
    homes = load_homes(session, bbox=bbox)
    d = category_distances(session, homes, cat, settings=settings)
    rows = np.flatnonzero(~(d.distance_m <= budget_m))
    order = rows[
        np.argsort(
            -np.where(np.isfinite(d.distance_m[rows]), d.distance_m[rows], 1e18), kind="stable"
        )
    ]
    page = order[:limit]
    geoms = {}
    if len(page):
        geoms = dict(
            session.execute(
                text("SELECT id, ST_AsGeoJSON(geom, 7) FROM buildings WHERE id = ANY(:ids)"),
                {"ids": [int(i) for i in homes.ids[page]]},
            ).all()
        )
    features = []
    for i in page:
        dist = d.distance_m[i]
        features.append(
            {
                "type": "Feature",
                "id": int(homes.ids[i]),
                "geometry": json.loads(geoms[int(homes.ids[i])]),
                "properties": {
                    "code": homes.codes[i],
                    "households": int(homes.households[i]),
                    "grid_code": homes.unit["grid"][i],
                    "category": cat,
                    "tier": tr,
                    "budget_m": budget_m,
                    "distance_m": round(float(dist), 1) if np.isfinite(dist) else None,
                    "distance_method": d.method[i] or None,
                    "nearest_venue_id": int(d.venue_id[i]) if d.venue_id[i] >= 0 else None,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": len(rows),
        "numberReturned": len(features),
        "network_version": d.network_version,
    }
