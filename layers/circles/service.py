"""一刻钟服务圈: build venues' service circles, keep them current, answer "what is nearest".

- ``build_circles`` computes the circles of every required (category, tier) of the life-circle
  catalogue over the cached walking graph (all venues of a category in batched Dijkstra runs)
  and stores them in ``service_circles`` with budget, unit, method and network version.
  Venues that do not snap to the network get a straight-line disc with ``method=buffer``.
- ``requirements`` reads the catalogue's required (category, tier, budget) rows and
  ``active_venues`` the venues that get circles; coverage measures against both.
- ``rebuild_venue_circles`` recomputes one venue's circles after it was added, moved or
  closed (``layers.venues.service`` makes those changes and reports the coverage touched).
- ``nearest`` answers the resident: the k nearest venues of a category by walking distance,
  each with metres, minutes at the configured speed and the route; optionally the caller's own
  15-minute circle.
- ``walking_distances_m`` is what the pipeline's volunteer offer calls.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.circles import service_circles
from geo.crs import to_wgs84
from geo.walk import distances_at, distances_from_one_m, nearest_targets, reach_from, route_to
from layers.catalogues import life_circle_requirements, venue_categories
from layers.circles.graph_cache import LoadedGraph, get_graph
from layers.config import Settings
from layers.errors import BadRequest, ServiceUnavailable, Unprocessable

logger = logging.getLogger(__name__)

UNITS = ("m", "min")
DEFAULT_CIRCLE_TIER = "15min"
MAX_K = 20


# -- validation ---------------------------------------------------------------------------------


def check_category(category: str | None) -> str:
    known = sorted(c.code for c in venue_categories())
    if not category or category not in known:
        raise BadRequest(
            "unknown_venue_category", category=category or "", available=", ".join(known)
        )
    return category


def requirements(
    category: str | None = None, tier: str | None = None
) -> list[tuple[str, str, float]]:
    """(category, tier, budget_m) rows of the catalogue, validated against ``category`` / ``tier``."""
    rows = [(r.category_code, r.tier, float(r.budget_m)) for r in life_circle_requirements()]
    if category is not None:
        known = {c.code for c in venue_categories()}
        if category not in known:
            raise BadRequest(
                "unknown_venue_category", category=category, available=", ".join(sorted(known))
            )
        rows = [r for r in rows if r[0] == category]
    if tier is not None:
        tiers = sorted({r[1] for r in rows}, key=_tier_minutes)
        if tier not in tiers:
            raise BadRequest(
                "unknown_tier", category=category or "*", tier=tier, available=", ".join(tiers)
            )
        rows = [r for r in rows if r[1] == tier]
    return rows


def _tier_minutes(tier: str) -> float:
    digits = "".join(ch for ch in tier if ch.isdigit() or ch == ".")
    return float(digits) if digits else float("inf")


def budget_m_for(budget: float, unit: str, *, settings: Settings | None = None) -> float:
    """A budget in metres from metres or minutes × walking speed; 400 ``invalid_budget``."""
    settings = settings or Settings()
    if unit not in UNITS:
        raise BadRequest("invalid_field", field="unit", reason=f"one of {', '.join(UNITS)}")
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise BadRequest(
            "invalid_budget", budget=budget, unit=unit, cap_m=settings.circle_budget_cap_m
        ) from None
    metres = value * settings.walk_speed_m_per_s * 60.0 if unit == "min" else value
    if not math.isfinite(metres) or metres <= 0 or metres > settings.circle_budget_cap_m:
        raise BadRequest(
            "invalid_budget", budget=budget, unit=unit, cap_m=settings.circle_budget_cap_m
        )
    return metres


def point_lonlat(
    lon: Any, lat: Any, crs: str = "wgs84", *, what: str = "point"
) -> tuple[float, float]:
    """Validated WGS84 (lon, lat) from a point given in ``crs``."""
    if lon is None or lat is None or lon == "" or lat == "":
        raise BadRequest("missing_field", field="lon" if lon in (None, "") else "lat")
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise BadRequest("invalid_coordinates", field=what, reason="not numbers") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise BadRequest("invalid_coordinates", field=what, reason="must be finite")
    try:
        wlon, wlat = to_wgs84(x, y, crs)
    except ValueError:
        raise BadRequest(
            "unknown_crs", crs=crs, available="wgs84, gcj02, bd09, EPSG:<code>"
        ) from None
    wlon, wlat = float(wlon), float(wlat)
    if not (-180 <= wlon <= 180 and -90 <= wlat <= 90 and math.isfinite(wlon + wlat)):
        raise BadRequest("coordinates_out_of_range", lon=x, lat=y)
    return wlon, wlat


def _require_graph(session: Session) -> LoadedGraph:
    loaded = get_graph(session)
    if loaded is None:
        raise ServiceUnavailable("no_walking_network")
    return loaded


# -- building and storing circles --------------------------------------------------------------


def _multipolygon_lonlat(loaded: LoadedGraph, geom) -> MultiPolygon:
    out = loaded.geom_to_lonlat(geom)
    if not out.is_valid:
        out = shapely.make_valid(out)
    polys = [p for p in shapely.get_parts(out) if isinstance(p, Polygon) and not p.is_empty]
    if not polys:
        parts = shapely.get_parts(out)
        polys = [g for p in parts for g in getattr(p, "geoms", [p]) if isinstance(g, Polygon)]
    return MultiPolygon(polys)


def _circle_rows(
    loaded: LoadedGraph,
    category: str,
    tier: str,
    budget_m: float,
    unit: str,
    width_m: float,
    v_ids: np.ndarray,
    v_lonlat: np.ndarray,
    snap_limit_m: float,
) -> list[dict[str, Any]]:
    snap = loaded.snap_lonlat(v_lonlat, max_snap_m=snap_limit_m)
    circles = service_circles(loaded.graph, snap, budget_m, width_m=width_m)
    rows = []
    for c in circles:
        geom = _multipolygon_lonlat(loaded, c.geometry)
        rows.append(
            {
                "venue_id": int(v_ids[c.source]),
                "category": category,
                "tier": tier,
                "budget_m": float(budget_m),
                "budget_unit": unit,
                "buffer_m": float(width_m if c.method == "network" else 0.0),
                "method": c.method,
                "network_version": loaded.version if c.method == "network" else None,
                "geom": shapely.to_wkb(shapely.set_srid(geom, 4326), hex=True, include_srid=True),
            }
        )
    return rows


_INSERT = text(
    "INSERT INTO service_circles (venue_id, category, tier, budget_m, budget_unit, buffer_m,"
    " method, network_version, geom) VALUES (:venue_id, :category, :tier, :budget_m,"
    " :budget_unit, :buffer_m, :method, :network_version,"
    " ST_Multi(ST_GeomFromEWKB(decode(:geom, 'hex'))))"
)


def _tier_budget_m(tier: str, catalogue_m: float, unit: str, settings: Settings) -> float:
    if unit == "m":
        return catalogue_m
    return budget_m_for(_tier_minutes(tier), "min", settings=settings)


def _rebuild(
    session: Session,
    *,
    category: str | None,
    tier: str | None,
    unit: str,
    settings: Settings,
    venue_ids: list[int] | None = None,
) -> dict[str, Any]:
    loaded = get_graph(session)
    summary: dict[str, Any] = {"circles": 0, "network": 0, "buffer": 0, "by_tier": {}}
    for cat, tr, catalogue_m in requirements(category, tier):
        budget_m = _tier_budget_m(tr, catalogue_m, unit, settings)
        params: dict[str, Any] = {"c": cat, "t": tr}
        only = ""
        if venue_ids is not None:
            only = " AND venue_id = ANY(:ids)"
            params["ids"] = venue_ids
        session.execute(
            text(f"DELETE FROM service_circles WHERE category = :c AND tier = :t{only}"), params
        )
        v_ids, v_lonlat = active_venues(session, cat)
        if venue_ids is not None:
            keep = np.isin(v_ids, venue_ids)
            v_ids, v_lonlat = v_ids[keep], v_lonlat[keep]
        if not len(v_ids):
            continue
        if loaded is None:
            rows = _buffer_rows(session, cat, tr, budget_m, unit, v_ids, v_lonlat)
        else:
            rows = _circle_rows(
                loaded,
                cat,
                tr,
                budget_m,
                unit,
                settings.circle_width_m,
                v_ids,
                v_lonlat,
                settings.walk_snap_limit_m,
            )
        session.execute(_INSERT, rows)
        for r in rows:
            summary[r["method"]] += 1
        summary["circles"] += len(rows)
        summary["by_tier"][f"{cat}/{tr}"] = len(rows)
    summary["network_version"] = loaded.version if loaded else None
    return summary


def active_venues(session: Session, category: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, lon/lat) of the active, located venues of ``category``."""
    rows = session.execute(
        text(
            "SELECT id, ST_X(geom), ST_Y(geom) FROM venues WHERE active AND category = :c "
            "AND NOT ST_IsEmpty(geom) ORDER BY id"
        ),
        {"c": category},
    ).all()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, np.array([(r[1], r[2]) for r in rows], dtype=np.float64).reshape(-1, 2)


def _buffer_rows(session, cat, tr, budget_m, unit, v_ids, v_lonlat) -> list[dict[str, Any]]:
    """No network at all: straight-line discs (computed in PostGIS geography, metres)."""
    rows = []
    for vid in v_ids:
        geom = session.execute(
            text(
                "SELECT encode(ST_AsEWKB(ST_Multi(ST_Buffer(geom::geography, :r)::geometry)),"
                " 'hex') FROM venues WHERE id = :id"
            ),
            {"r": budget_m, "id": int(vid)},
        ).scalar_one()
        rows.append(
            {
                "venue_id": int(vid),
                "category": cat,
                "tier": tr,
                "budget_m": float(budget_m),
                "budget_unit": unit,
                "buffer_m": 0.0,
                "method": "buffer",
                "network_version": None,
                "geom": geom,
            }
        )
    return rows


def build_circles(
    session: Session,
    *,
    category: str | None = None,
    tier: str | None = None,
    unit: str = "m",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """(Re)build the stored circles of every required (category, tier), or the selected ones.

    ``unit="m"`` uses the catalogue's metres (15 min ≈ 1000 m); ``unit="min"`` uses the tier's
    minutes × the walking speed. Commits.
    """
    settings = settings or Settings()
    if unit not in UNITS:
        raise BadRequest("invalid_field", field="unit", reason=f"one of {', '.join(UNITS)}")
    if category is not None:
        check_category(category)
    summary = _rebuild(session, category=category, tier=tier, unit=unit, settings=settings)
    session.commit()
    logger.info("service circles built: %s", summary)
    return summary


# -- incremental venue changes -----------------------------------------------------------------


def rebuild_venue_circles(
    session: Session, venue_id: int, category: str, *, settings: Settings | None = None
) -> None:
    """Recompute one venue's circles of every required tier (catalogue metres) after it was
    added, moved or closed; a closed venue's circles are dropped. Does not commit."""
    settings = settings or Settings()
    if requirements(category):
        _rebuild(
            session, category=category, tier=None, unit="m", settings=settings, venue_ids=[venue_id]
        )


# -- the resident's question -------------------------------------------------------------------


def _venues_snap(session: Session, loaded: LoadedGraph, category: str, limit_m: float):
    rows = session.execute(
        text(
            "SELECT id, name, address, opening_hours, ST_X(geom), ST_Y(geom) FROM venues"
            " WHERE active AND category = :c AND NOT ST_IsEmpty(geom) ORDER BY id"
        ),
        {"c": category},
    ).all()
    lonlat = np.array([(r[4], r[5]) for r in rows], dtype=np.float64).reshape(-1, 2)
    h = hashlib.blake2b(np.array([r[0] for r in rows], np.int64).tobytes(), digest_size=16)
    h.update(lonlat.tobytes())
    snap = loaded.snap_lonlat(lonlat, max_snap_m=limit_m, key=("venues", category, h.hexdigest()))
    return rows, snap


def _line_geojson(loaded: LoadedGraph, line) -> dict[str, Any]:
    coords = np.round(shapely.get_coordinates(loaded.geom_to_lonlat(line)), 7)
    return {"type": "LineString", "coordinates": coords.tolist()}


def nearest(
    session: Session,
    *,
    lon: Any,
    lat: Any,
    category: str | None,
    crs: str = "wgs84",
    k: Any = 5,
    circle: bool = False,
    minutes: Any = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """The k nearest active venues of ``category`` by walking distance from (lon, lat).

    Raises 422 ``too_far_from_network`` (with the snap distance) when the point is farther
    than the snap limit from every path. With ``circle`` the caller's own circle is added: the
    15-minute tier of the catalogue (1000 m), or ``minutes`` × the walking speed.
    """
    settings = settings or Settings()
    check_category(category)
    try:
        k_int = int(k)
    except (TypeError, ValueError):
        raise BadRequest("invalid_field", field="k", reason=f"an integer 1–{MAX_K}") from None
    if not 1 <= k_int <= MAX_K:
        raise BadRequest("invalid_field", field="k", reason=f"an integer 1–{MAX_K}")
    if minutes is not None and minutes != "":
        circle_m, circle_unit, circle_budget = (
            budget_m_for(minutes, "min", settings=settings),
            "min",
            float(minutes),
        )
    else:
        circle_m = float(dict(((t, b) for _c, t, b in requirements()))[DEFAULT_CIRCLE_TIER])
        circle_unit, circle_budget = "m", circle_m
    wlon, wlat = point_lonlat(lon, lat, crs)
    loaded = _require_graph(session)
    limit = settings.walk_snap_limit_m
    origin = loaded.snap_lonlat(np.array([[wlon, wlat]]), max_snap_m=limit)
    if not origin.ok[0]:
        raise Unprocessable(
            "too_far_from_network", snap_m=round(float(origin.snap_m[0]), 1), limit_m=limit
        )
    rows, snap = _venues_snap(session, loaded, category, limit)
    idx, dist, reach = nearest_targets(loaded.graph, origin, snap, k_int)
    speed_m_per_min = settings.walk_speed_m_per_s * 60.0
    venues = []
    for j, d in zip(idx, dist, strict=True):
        r = rows[int(j)]
        line = route_to(loaded.graph, reach, snap, int(j))
        venues.append(
            {
                "id": r[0],
                "name": r[1],
                "category": category,
                "address": r[2],
                "opening_hours": r[3],
                "lon": r[4],
                "lat": r[5],
                "distance_m": round(float(d), 1),
                "minutes": round(float(d) / speed_m_per_min, 1),
                "distance_method": "walk",
                "route": _line_geojson(loaded, line) if line is not None else None,
            }
        )
    out: dict[str, Any] = {
        "origin": {"lon": wlon, "lat": wlat, "snap_m": round(float(origin.snap_m[0]), 1)},
        "category": category,
        "k": k_int,
        "speed_m_per_min": speed_m_per_min,
        "network_version": loaded.version,
        "venues": venues,
        "unreachable_venues": int((~snap.ok).sum()),
    }
    if circle:
        [c] = service_circles(loaded.graph, origin, circle_m, width_m=settings.circle_width_m)
        geom = _multipolygon_lonlat(loaded, c.geometry)
        out["circle"] = {
            "type": "Feature",
            "geometry": mapping(shapely.set_precision(geom, 1e-7)),
            "properties": {
                "tier": DEFAULT_CIRCLE_TIER if circle_unit == "m" else None,
                "budget": circle_budget,
                "budget_unit": circle_unit,
                "budget_m": round(circle_m, 1),
                "buffer_m": settings.circle_width_m,
                "method": c.method,
                "network_version": loaded.version,
            },
        }
    return out


# -- the pipeline's volunteer offer ------------------------------------------------------------


def walking_distances_m(
    session: Session,
    from_lonlat: tuple[float, float],
    to_lonlats: Any,
    *,
    settings: Settings | None = None,
    limit_m: float = float("inf"),
    memo_targets: bool = False,
    network_version: int | None = None,
) -> tuple[np.ndarray, str] | None:
    """Walking metres from one WGS84 point to each of ``to_lonlats`` ((k, 2) lon/lat).

    The search stops at ``limit_m``; targets beyond it come back as ``inf``. With
    ``memo_targets`` (points asked for again and again, e.g. volunteer homes) each target's
    snap is memoised for the graph's version; ``network_version`` is the current version
    when the caller already read it.

    Returns ``(metres, "walk")`` when a walking graph exists and every point snaps within the
    snap limit (access legs included); otherwise None, and the caller falls back to
    straight-line metres (``distance_method="straight"``).
    """
    settings = settings or Settings()
    targets = np.asarray(to_lonlats, dtype=np.float64).reshape(-1, 2)
    origin = np.asarray(from_lonlat, dtype=np.float64).reshape(1, 2)
    if not np.isfinite(origin).all() or not np.isfinite(targets).all():
        return None
    loaded = get_graph(session, network_version)
    if loaded is None:
        return None
    limit = settings.walk_snap_limit_m
    o = loaded.snap_lonlat(origin, max_snap_m=limit)
    if not len(targets):
        return (np.zeros(0), "walk") if o.ok[0] else None
    if memo_targets:
        t = loaded.snap_points_memo(targets, max_snap_m=limit)
    else:
        t = loaded.snap_lonlat(targets, max_snap_m=limit)
    if not o.ok[0] or not t.ok.all():
        return None
    dist = distances_from_one_m(loaded.graph, o, t, limit_m=limit_m)
    if not np.isfinite(limit_m) and not np.isfinite(dist).all():
        return None  # unlimited search yet unreachable: another component
    return dist, "walk"


def walking_routes(
    session: Session,
    from_lonlat: tuple[float, float],
    to_lonlats: Any,
    *,
    settings: Settings | None = None,
    limit_m: float = 5000.0,
) -> list[dict[str, Any] | None]:
    """Walking routes (GeoJSON LineString and metres) from one point to each target.

    One search from the origin serves every target; a target off the network or beyond
    ``limit_m`` gets None (the caller draws a straight line and says so).
    """
    settings = settings or Settings()
    targets = np.asarray(to_lonlats, dtype=np.float64).reshape(-1, 2)
    loaded = get_graph(session)
    if loaded is None or not len(targets):
        return [None] * len(targets)
    limit = settings.walk_snap_limit_m
    origin = loaded.snap_lonlat(np.asarray([from_lonlat], dtype=np.float64), max_snap_m=limit)
    if not origin.ok[0]:
        return [None] * len(targets)
    snap = loaded.snap_lonlat(targets, max_snap_m=limit)
    reach = reach_from(loaded.graph, origin, limit_m=limit_m)
    dist, _ = distances_at(loaded.graph, reach, snap)
    out: list[dict[str, Any] | None] = []
    for j in range(len(targets)):
        line = route_to(loaded.graph, reach, snap, j) if snap.ok[j] else None
        if line is None or not np.isfinite(dist[j]):
            out.append(None)
            continue
        out.append(
            {"geometry": _line_geojson(loaded, line), "distance_m": round(float(dist[j]), 1)}
        )
    return out
