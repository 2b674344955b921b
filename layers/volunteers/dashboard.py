"""What a volunteer's phone page shows: points, load, offers nearest first, own work, history."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import Forbidden
from layers.requests.access import OFFER_LIVE_SQL
from layers.requests.workflow import OPEN

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 20


def volunteer_dashboard(*, session: Session, user_id: int) -> dict[str, Any]:
    """The signed-in volunteer's profile, open offers (nearest first), own work and history.

    An offer is listed while it gives access (``layers.requests.access``): not once someone
    claimed the request, it closed or it left its level."""
    me = (
        session.execute(
            text(
                "SELECT v.id, v.name, v.points, v.active_load, v.load_limit, v.skills,"
                " ST_X(v.geom) AS lon, ST_Y(v.geom) AS lat, c.name AS community"
                " FROM volunteers v LEFT JOIN areas c ON c.id = v.community_id"
                " WHERE v.user_id = :u AND v.active"
            ),
            {"u": user_id},
        )
        .mappings()
        .first()
    )
    if me is None:
        raise Forbidden("not_a_volunteer")
    rows = (
        session.execute(
            text(
                """
            SELECT r.id, r.number, r.category, r.text, r.status, r.deadline_at,
                   r.created_at, r.deadline_at < now() AS overdue,
                   (r.was_overdue OR r.deadline_at < now()) AS was_overdue,
                   ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat, g.name AS grid_name,
                   o.distance_m, o.distance_method, (r.assignee_id = :v) AS mine
            FROM requests r
            LEFT JOIN request_offers o ON o.request_id = r.id AND o.volunteer_id = :v
            LEFT JOIN grids g ON g.id = r.grid_id
            WHERE r.status = ANY(:open)
              AND ((OFFER_LIVE AND o.volunteer_id IS NOT NULL) OR r.assignee_id = :v)
            ORDER BY (r.assignee_id = :v) DESC, o.distance_m NULLS LAST, r.id
            """.replace("OFFER_LIVE", OFFER_LIVE_SQL)
            ),
            {"v": me["id"], "open": sorted(s.value for s in OPEN)},
        )
        .mappings()
        .all()
    )
    history = (
        session.execute(
            text(
                """
            SELECT r.id, r.number, r.category, r.status, r.rating, r.resolved_at
            FROM requests r WHERE r.assignee_id = :v AND r.resolved_at IS NOT NULL
            ORDER BY r.resolved_at DESC LIMIT :n
            """
            ),
            {"v": me["id"], "n": HISTORY_LIMIT},
        )
        .mappings()
        .all()
    )
    return {
        "volunteer": dict(me),
        "offers": [dict(r) for r in rows if not r["mine"]],
        "mine": [dict(r) for r in rows if r["mine"]],
        "history": [dict(r) for r in history],
    }
