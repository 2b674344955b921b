"""The volunteer offer (接单候选): the nearest suitable volunteers for a request.

Suitable = active, the category among their skills, available now by their weekly schedule
(read in the configured zone) and below their load limit. Ranked by distance, ties (to the
metre) by lower load, then id. Distance comes from ONE function, ``distance_to_volunteers``:
walking metres along the network when the walking graph exists (``distance_method`` "walk"),
straight-line metres in the request's UTM zone otherwise ("straight_line").

The search is exact and small: candidates come from the (category, geom) KNN index of
``volunteer_skill_points`` (who can take work now, by skill; kept by triggers) in growing
batches; walking is never shorter than the straight
line, so once ``k`` candidates lie within a walking bound that no unread candidate can beat,
the answer is final. A district of 100k volunteers reads a few dozen rows per offer.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from geo.crs import from_wgs84, utm_epsg_for_lonlat
from layers.volunteers.service import available_at

logger = logging.getLogger(__name__)

DEFAULT_K = 5
DEFAULT_MAX_RADIUS_M = 5000.0
#: first batch of nearest skill holders read per offer; each further batch is 4× larger
FIRST_BATCH = 48
STRAIGHT_LINE = "straight_line"
WALK = "walk"
#: a meridian degree is ≥ 110,574 m, a parallel degree 111,320 m × cos(lat)
_M_PER_DEG_LAT_MIN = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0
#: two candidates within this many metres of each other could round to the same metre
_ROUNDING_MARGIN_M = 2.0


# The nearest suitable skill holders of ``:category`` around (``:lon``, ``:lat``), ``n`` of
# them, as one JSON array of [id, name, lon, lat, availability text, active_load, lon/lat
# distance], and the network version: columns the intake reads in its first round trip.
#
# ``n`` is written into the text, not bound: PostgreSQL plans a prepared statement with a
# bound LIMIT as if it returned a tenth of the table, so it never settles on a generic plan
# and plans every execution again (~0.4 ms per intake, measured); with a literal it reuses
# the plan. The few batch sizes in use give a few statement texts.
def candidate_columns_sql(n: int) -> str:
    """The candidate columns, reading the ``n`` nearest skill holders (``n`` a literal)."""
    return (
        "(SELECT max(id) FROM network_versions) AS network_version,"
        " (SELECT coalesce(json_agg(json_build_array(c.id, c.name, c.lon, c.lat,"
        " c.availability, c.active_load, c.deg) ORDER BY c.deg), '[]') FROM (SELECT"
        " s.volunteer_id AS id, s.name, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,"
        " s.availability::text AS availability, s.active_load,"
        " s.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS deg"
        " FROM volunteer_skill_points s WHERE s.category = :category"
        " ORDER BY s.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
        f" LIMIT {int(n)}) c) AS candidates"
    )


@functools.lru_cache(maxsize=16)
def _candidates_sql(n: int) -> TextClause:
    return text(f"SELECT {candidate_columns_sql(n)}")


class Candidate(NamedTuple):
    id: int
    name: str
    lon: float
    lat: float
    availability: str | None
    active_load: int
    deg: float


@dataclass(frozen=True)
class CandidateBatch:
    """One read of ``candidate_columns_sql(n)``."""

    candidates: list[Candidate]
    n: int
    network_version: int | None

    @classmethod
    def from_row(cls, row: Any, n: int) -> CandidateBatch:
        return cls([Candidate(*c) for c in row.candidates], n, row.network_version)


def first_batch_size(k: int) -> int:
    """How many skill holders the first read takes for an offer of ``k``."""
    return max(FIRST_BATCH, 8 * k)


@dataclass(frozen=True)
class RankedVolunteer:
    volunteer_id: int
    name: str
    rank: int
    distance_m: float
    active_load: int


def straight_metres(
    lonlat: tuple[float, float],
    lon: Sequence[float] | np.ndarray,
    lat: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Straight-line metres from ``lonlat`` to each point, in the UTM zone of ``lonlat``."""
    if not len(lon):
        return np.zeros(0)
    epsg = f"EPSG:{utm_epsg_for_lonlat(lonlat[0], lonlat[1])}"
    x, y = from_wgs84(np.r_[lonlat[0], lon], np.r_[lonlat[1], lat], epsg)
    return np.hypot(x[1:] - x[0], y[1:] - y[0])


def distance_to_volunteers(
    *,
    session: Session,
    lonlat: tuple[float, float],
    targets_lonlat: Sequence[tuple[int, float, float]],
    limit_m: float = DEFAULT_MAX_RADIUS_M,
    network_version: int | None = None,
) -> tuple[dict[int, float], str]:
    """Metres from ``lonlat`` to each ``(volunteer_id, lon, lat)`` and the method used.

    Walking metres along the network when the walking graph exists and every point lies near
    a path (``walk``; a volunteer farther than ``limit_m`` on foot gets ``inf``); straight-line
    metres in the UTM zone of ``lonlat`` otherwise (``straight_line``).
    """
    if not targets_lonlat:
        return {}, STRAIGHT_LINE
    ids = [t[0] for t in targets_lonlat]
    lon = np.array([t[1] for t in targets_lonlat], dtype=np.float64)
    lat = np.array([t[2] for t in targets_lonlat], dtype=np.float64)
    from layers.circles.service import walking_distances_m

    walked = walking_distances_m(
        session,
        lonlat,
        np.column_stack([lon, lat]),
        limit_m=limit_m,
        memo_targets=True,
        network_version=network_version,
    )
    if walked is not None:
        return dict(zip(ids, walked[0].tolist(), strict=True)), WALK
    return dict(zip(ids, straight_metres(lonlat, lon, lat).tolist(), strict=True)), STRAIGHT_LINE


@functools.lru_cache(maxsize=4096)
def _available_in_minute(schedule: str | None, minute: datetime, tz: str) -> bool:
    """``available_at`` of a schedule (JSON text) in a whole minute: schedules repeat across
    volunteers and offers, and their windows are in minutes, so each distinct one is parsed
    and evaluated once per minute."""
    return available_at(json.loads(schedule) if schedule is not None else None, minute, tz)


def rank_volunteers(
    *,
    session: Session,
    lonlat: tuple[float, float],
    category: str,
    now: datetime,
    tz: str,
    k: int = DEFAULT_K,
    max_radius_m: float = DEFAULT_MAX_RADIUS_M,
    first: CandidateBatch | None = None,
) -> tuple[list[RankedVolunteer], str]:
    """Top ``k`` suitable volunteers within ``max_radius_m`` of ``lonlat``, and the method.

    ``first``: the first batch when the caller already read it (intake does, in its first
    round trip).

    Reads skill holders nearest first in batches. After each batch, ``bound_m`` = the least
    straight-line metres any unread candidate can have (capped at ``max_radius_m``); distances
    are computed up to it. Once ``k`` candidates lie within ``bound_m - 2`` the ranking is
    final: every unread candidate is farther than ``bound_m`` even in a straight line, so it
    cannot enter the top ``k`` or tie one of them to the metre.
    """
    minute = now.replace(second=0, microsecond=0)
    lon, lat = lonlat
    # Metres per degree of ``ST_Distance`` in lon/lat, a lower bound within max_radius_m of
    # the point (0.1° of latitude margin, 0.5 % for UTM's scale factor).
    m_per_deg = 0.995 * min(
        _M_PER_DEG_LAT_MIN,
        _M_PER_DEG_LON_EQUATOR * math.cos(math.radians(min(abs(lat) + 0.1, 89.9))),
    )
    batch = first
    n = batch.n if batch is not None else first_batch_size(k)
    while True:
        if batch is None:
            row = session.execute(
                _candidates_sql(n), {"category": category, "lon": lon, "lat": lat}
            ).one()
            batch = CandidateBatch.from_row(row, n)
        rows = batch.candidates
        exhausted = len(rows) < n
        bound_m = max_radius_m
        if not exhausted:
            bound_m = min(bound_m, rows[-1].deg * m_per_deg)
        candidates = [r for r in rows if _available_in_minute(r.availability, minute, tz)]
        distances, method = distance_to_volunteers(
            session=session,
            lonlat=lonlat,
            targets_lonlat=[(r.id, r.lon, r.lat) for r in candidates],
            limit_m=bound_m,
            network_version=batch.network_version,
        )
        sure = sum(1 for d in distances.values() if d <= bound_m - _ROUNDING_MARGIN_M)
        if exhausted or bound_m >= max_radius_m or sure >= k:
            break
        n *= 4
        batch = None
    within = [r for r in candidates if distances[r.id] <= bound_m]
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


def warm_caches(*, session: Session, max_snap_m: float | None = None) -> int:
    """Build this worker's walking graph and snap every offerable volunteer's home, so the
    first offers after a start do not pay for it; returns the distinct home points snapped
    (0 without a network). Called as a server worker starts, before it takes requests."""
    from layers.circles.graph_cache import get_graph
    from layers.config import Settings

    loaded = get_graph(session)
    if loaded is None:
        return 0
    rows = session.execute(
        text("SELECT DISTINCT ST_X(geom), ST_Y(geom) FROM volunteer_skill_points")
    ).all()
    if rows:
        limit = Settings().walk_snap_limit_m if max_snap_m is None else max_snap_m
        loaded.snap_points_memo(np.array([(r[0], r[1]) for r in rows]), max_snap_m=limit)
    logger.info(
        "offer caches warm: graph v%s, %d volunteer home points snapped", loaded.version, len(rows)
    )
    return len(rows)


def offer_count(session: Session, request_id: int) -> int:
    """How many volunteers a request stands offered to now (the ticket page says that a
    volunteer is awaited, never who)."""
    return int(
        session.scalar(
            text("SELECT count(*) FROM request_offers WHERE request_id = :r"), {"r": request_id}
        )
        or 0
    )
