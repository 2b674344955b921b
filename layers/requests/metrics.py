"""Pipeline metrics per grid, community or street over a period (DESIGN §3).

Over requests *received* in [from, to) — created in the period, excluding those that ended
rejected or duplicate:

- 结案率 closure_rate = closed ÷ received;
- 按期结案率 on_time_rate = resolved by the first deadline ÷ received, where a request
  counts when it is currently resolved / rated / closed and its (latest) resolution time is
  not after ``first_deadline_at`` (set at intake, never moved);
- 层级按期率 ``<level>_on_time_rate`` per owning level = resolved by that level while it
  owned the request, by that level's deadline ÷ requests that level owned. A level owned a
  request when it owns it now or lies below the owner on the escalation path (the grid only
  when the request had a grid); a resolved request keeps the deadline and the owner level it
  was resolved under, so ``resolved_at <= deadline_at`` is that level's verdict;
- mean_rating over received requests with a rating (the latest one);
- open_backlog = received requests still open (submitted … in_progress) now;
- overdue = open ones whose current level deadline has passed at ``now``;
- was_overdue = received ones that missed some level's deadline (overdue now, or a deadline
  passed before it was met: ``requests.was_overdue``), so an escalation for lateness does
  not hide it.

Requests in no grid (community triage) count at community and street level only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import BadRequest
from layers.requests.access import scope_sql
from layers.requests.workflow import ESCALATION_ORDER, OPEN, Status

logger = logging.getLogger(__name__)

LEVELS = ("grid", "community", "street")
OWNER_LEVELS = tuple(lvl.value for lvl in ESCALATION_ORDER)
_NOT_RECEIVED = (Status.REJECTED.value, Status.DUPLICATE.value)
_RESOLVED_OR_LATER = (Status.RESOLVED.value, Status.RATED.value, Status.CLOSED.value)

_GROUP = {
    "grid": ("g.code", "g.name", "r.grid_id IS NOT NULL"),
    "community": ("c.code", "c.name", "TRUE"),
    "street": ("s.code", "s.name", "TRUE"),
}


def compute_metrics(
    *,
    session: Session,
    level: str,
    period_from: datetime,
    period_to: datetime,
    now: datetime,
    scope_clause: str = "TRUE",
    scope_params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per unit at ``level`` with at least one request received in the period.

    ``scope_clause`` restricts the requests (aliases r = requests, g = grids).
    """
    if level not in _GROUP:
        raise BadRequest("invalid_level", level=level, available=", ".join(LEVELS))
    if period_from >= period_to:
        raise BadRequest("invalid_time", field="from/to", value="from must be before to")
    key, name, extra = _GROUP[level]
    sql = f"""
        SELECT {key} AS code, {name} AS name,
               count(*) AS received,
               count(*) FILTER (WHERE r.status = 'closed') AS closed,
               count(*) FILTER (WHERE r.status = ANY(:done)
                                AND r.resolved_at <= r.first_deadline_at) AS on_time,
               avg(r.rating)::float AS mean_rating,
               count(r.rating) AS rated,
               count(*) FILTER (WHERE r.status = ANY(:open)) AS open_backlog,
               count(*) FILTER (WHERE r.status = ANY(:open) AND r.deadline_at < :now) AS overdue,
               count(*) FILTER (WHERE r.was_overdue
                                OR (r.status = ANY(:open) AND r.deadline_at < :now))
                   AS was_overdue,
               {_level_columns()}
        FROM requests r
        LEFT JOIN grids g ON g.id = r.grid_id
        JOIN areas c ON c.id = r.community_id
        JOIN areas s ON s.id = c.parent_id
        WHERE r.created_at >= :pfrom AND r.created_at < :pto
          AND r.status <> ALL(:not_received) AND {extra} AND ({scope_clause})
        GROUP BY {key}, {name}
        ORDER BY {key}
    """
    params = {
        "done": list(_RESOLVED_OR_LATER),
        "open": sorted(s.value for s in OPEN),
        "not_received": list(_NOT_RECEIVED),
        "now": now,
        "pfrom": period_from,
        "pto": period_to,
        **(scope_params or {}),
    }
    rows = session.execute(text(sql), params).mappings().all()
    out = []
    for r in rows:
        received = r["received"]
        out.append(
            {
                "code": r["code"],
                "name": r["name"],
                "received": received,
                "closed": r["closed"],
                "closure_rate": round(r["closed"] / received, 4) if received else None,
                "resolved_on_time": r["on_time"],
                "on_time_rate": round(r["on_time"] / received, 4) if received else None,
                "mean_rating": round(r["mean_rating"], 3) if r["mean_rating"] is not None else None,
                "rated": r["rated"],
                "open_backlog": r["open_backlog"],
                "overdue": r["overdue"],
                "was_overdue": r["was_overdue"],
                **{
                    f"{lvl}_on_time_rate": (
                        round(r[f"{lvl}_met"] / r[f"{lvl}_owned"], 4) if r[f"{lvl}_owned"] else None
                    )
                    for lvl in OWNER_LEVELS
                },
            }
        )
    return out


def _level_columns() -> str:
    """Per owning level: how many requests it owned and how many it resolved in time."""
    order = "ARRAY[" + ", ".join(f"'{lvl}'" for lvl in OWNER_LEVELS) + "]"
    cols = []
    for i, lvl in enumerate(OWNER_LEVELS, start=1):
        had = "r.grid_id IS NOT NULL AND " if lvl == "grid" else ""
        cols.append(
            f"count(*) FILTER (WHERE {had}array_position({order}, r.owner_level) >= {i})"
            f" AS {lvl}_owned"
        )
        cols.append(
            f"count(*) FILTER (WHERE r.status = ANY(:done) AND r.owner_level = '{lvl}'"
            f" AND r.resolved_at <= r.deadline_at) AS {lvl}_met"
        )
    return ",\n               ".join(cols)


def scoped_metrics(
    *,
    session: Session,
    actor: Any,
    level: str,
    period_from: datetime,
    period_to: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """DESIGN §3 metrics rows restricted to the actor's staff scope (a service ``Actor``)."""
    staff, _own, params = scope_sql(session, actor)
    return compute_metrics(
        session=session,
        level=level,
        period_from=period_from,
        period_to=period_to,
        now=now,
        scope_clause=staff,
        scope_params=params,
    )
