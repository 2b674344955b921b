"""The volunteer offer (接单候选): the nearest suitable volunteers for a request.

Suitable = active, the category among their skills, available now by their weekly schedule
(read in the configured zone) and below their load limit. Ranked by distance, ties (to the
metre) by lower load, then id. Distance comes from ONE function, ``distance_to_volunteers``,
which today answers straight-line metres in the request's UTM zone (``distance_method``
"straight_line"); the service-circle work swaps in walking distance behind it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import from_wgs84, utm_epsg_for_lonlat
from layers.volunteers.service import available_at

logger = logging.getLogger(__name__)

DEFAULT_K = 5
DEFAULT_MAX_RADIUS_M = 5000.0
# Nearest candidates (by index order) fetched before the exact filter and distance.
CANDIDATE_LIMIT = 400
STRAIGHT_LINE = "straight_line"
WALK = "walk"
_M_PER_DEG_LAT = 111_320.0
# First walking bound for the nearest k: factor × the k-th straight-line metres + margin.
EARLY_STOP_FACTOR = 1.6
EARLY_STOP_MARGIN_M = 300.0


@dataclass(frozen=True)
class RankedVolunteer:
    volunteer_id: int
    name: str
    rank: int
    distance_m: float
    active_load: int


def distance_to_volunteers(
    *,
    session: Session,
    lonlat: tuple[float, float],
    targets_lonlat: Sequence[tuple[int, float, float]],
    max_radius_m: float = 5000.0,
    nearest_k: int | None = None,
) -> tuple[dict[int, float], str]:
    """Metres from ``lonlat`` to each ``(volunteer_id, lon, lat)`` and the method used.

    Walking metres along the network when the walking graph exists and every point lies near
    a path (``walk``; a volunteer farther than ``max_radius_m`` on foot gets ``inf``);
    straight-line metres in the UTM zone of ``lonlat`` otherwise (``straight_line``).

    With ``nearest_k`` only the ``nearest_k`` nearest need exact metres: the walking search
    first stops at a bound guessed from the straight-line metres. Everyone within the bound on
    foot comes back exact; the others are farther (``inf`` or an overestimate). When at least
    ``nearest_k`` lie within ``bound - 2`` m, everyone beyond the bound rounds to a larger
    metre than the ``nearest_k``-th, so the nearest ``nearest_k``, their metres and their
    order (ties to the metre included) are those of the full search; otherwise the search is
    redone up to ``max_radius_m``.
    """
    if not targets_lonlat:
        return {}, STRAIGHT_LINE
    epsg = f"EPSG:{utm_epsg_for_lonlat(lonlat[0], lonlat[1])}"
    ids = [t[0] for t in targets_lonlat]
    lon_a = np.array([lonlat[0]] + [t[1] for t in targets_lonlat])
    lat_a = np.array([lonlat[1]] + [t[2] for t in targets_lonlat])
    x_utm, y_utm = from_wgs84(lon_a, lat_a, epsg)
    d_m = np.hypot(x_utm[1:] - x_utm[0], y_utm[1:] - y_utm[0])
    from layers.circles.service import walking_distances_m

    targets = np.column_stack([lon_a[1:], lat_a[1:]])
    walked = None
    if nearest_k is not None and len(d_m) >= nearest_k:
        bound_m = EARLY_STOP_FACTOR * float(np.partition(d_m, nearest_k - 1)[nearest_k - 1])
        bound_m += EARLY_STOP_MARGIN_M
        if bound_m < max_radius_m:
            walked = walking_distances_m(session, lonlat, targets, limit_m=bound_m)
            if walked is not None and (walked[0] <= bound_m - 2.0).sum() < nearest_k:
                walked = None  # not enough volunteers surely inside: search the full radius
    if walked is None:
        walked = walking_distances_m(session, lonlat, targets, limit_m=max_radius_m)
    if walked is not None:
        return {vid: float(d) for vid, d in zip(ids, walked[0], strict=True)}, WALK
    return {vid: float(d) for vid, d in zip(ids, d_m, strict=True)}, STRAIGHT_LINE


def rank_volunteers(
    *,
    session: Session,
    lonlat: tuple[float, float],
    category: str,
    now: datetime,
    tz: str,
    k: int = DEFAULT_K,
    max_radius_m: float = DEFAULT_MAX_RADIUS_M,
    exclude_ids: frozenset[int] = frozenset(),
) -> tuple[list[RankedVolunteer], str]:
    """Top ``k`` suitable volunteers within ``max_radius_m`` of ``lonlat``, and the method."""
    lon, lat = lonlat
    dlat = max_radius_m / _M_PER_DEG_LAT
    dlon = max_radius_m / (_M_PER_DEG_LAT * max(math.cos(math.radians(lat)), 0.05))
    rows = session.execute(
        text(
            "SELECT id, name, ST_X(geom) AS lon, ST_Y(geom) AS lat,"
            " availability::text AS availability, active_load"
            " FROM volunteers"
            " WHERE active AND :category = ANY(skills) AND active_load < load_limit"
            " AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
            " ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
            " LIMIT :n"
        ),
        {
            "category": category,
            "x0": lon - dlon,
            "y0": lat - dlat,
            "x1": lon + dlon,
            "y1": lat + dlat,
            "lon": lon,
            "lat": lat,
            "n": CANDIDATE_LIMIT,
        },
    ).all()
    # Weekly schedules repeat a lot among hundreds of candidates: parse and evaluate each
    # distinct one once (same JSON text, same answer; errors surface at the same row).
    available: dict[str | None, bool] = {}

    def is_available(schedule: str | None) -> bool:
        if schedule not in available:
            parsed = json.loads(schedule) if schedule is not None else None
            available[schedule] = available_at(parsed, now, tz)
        return available[schedule]

    candidates = [r for r in rows if r.id not in exclude_ids and is_available(r.availability)]
    distances, method = distance_to_volunteers(
        session=session,
        lonlat=lonlat,
        targets_lonlat=[(r.id, r.lon, r.lat) for r in candidates],
        max_radius_m=max_radius_m,
        nearest_k=k,
    )
    within = [r for r in candidates if distances[r.id] <= max_radius_m]
    within.sort(key=lambda r: (round(distances[r.id]), r.active_load, r.id))
    ranked = [
        RankedVolunteer(
            volunteer_id=r.id,
            name=r.name,
            rank=i + 1,
            distance_m=round(distances[r.id], 1),
            active_load=r.active_load,
        )
        for i, r in enumerate(within[:k])
    ]
    return ranked, method
