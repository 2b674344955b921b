"""Pipeline rules kept as data (DESIGN §2: catalogues are data, not code).

- ``data/catalogues/volunteer_points.csv``: 正能量值 a volunteer earns per event
  (claim, resolve, rating_1 … rating_5);
- ``data/catalogues/escalation_levels.csv``: the deadline (calendar hours from the
  escalation) each owner level above the grid gets when a request is escalated to it.

The grid level's deadline is the request category's (``request_categories.csv``).
"""

from __future__ import annotations

import functools
import logging

from layers.catalogues import RequestCategory, request_categories
from layers.catalogues import catalogue_rows as _rows
from layers.requests.states import ESCALATION_ORDER, OwnerLevel

logger = logging.getLogger(__name__)


@functools.cache
def volunteer_points() -> dict[str, int]:
    """Points per event name (``claim``, ``resolve``, ``rating_<n>``)."""
    return {r["event"]: int(r["points"]) for r in _rows("volunteer_points.csv")}


def points_for(event: str) -> int:
    """Points for ``event``; 0 for events the rules do not mention."""
    return volunteer_points().get(event, 0)


@functools.cache
def escalation_deadline_hours() -> dict[str, int]:
    """Deadline hours per owner level above the grid (community, street, district)."""
    table = {r["owner_level"]: int(r["deadline_hours"]) for r in _rows("escalation_levels.csv")}
    missing = {lvl.value for lvl in ESCALATION_ORDER[1:]} - set(table)
    if missing:
        raise ValueError(f"escalation_levels.csv lacks levels {sorted(missing)}")
    return table


@functools.cache
def categories_by_code() -> dict[str, RequestCategory]:
    return {c.code: c for c in request_categories()}


def deadline_hours(category: str, owner_level: str) -> int:
    """Calendar hours a request of ``category`` gets at ``owner_level``."""
    if owner_level == OwnerLevel.GRID:
        return categories_by_code()[category].deadline_hours
    return escalation_deadline_hours()[owner_level]


def next_level(owner_level: str) -> OwnerLevel | None:
    """The owner level above ``owner_level``, or None at the district."""
    idx = ESCALATION_ORDER.index(OwnerLevel(owner_level))
    return ESCALATION_ORDER[idx + 1] if idx + 1 < len(ESCALATION_ORDER) else None
