"""The grids repository: what "live grid", "the grid at a point" and "in scope" mean in SQL.

Written once here and used by intake, the importers, tiles, layers, drafts, coverage, the
planner, the synthetic data and the benches. A grid row is live at generation N iff
generation_low <= N < coalesce(generation_high, infinity) (DESIGN §2); without an explicit
generation the current one is read from ``generations``. A point on a border shared by several
grids (or areas) goes to the lowest code.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from layers.areas.models import AREA_LEVELS
from layers.grids.models import Grid

logger = logging.getLogger(__name__)

CURRENT_GENERATION_SQL = "(SELECT coalesce(max(id), 0) FROM generations)"
# pg_advisory_xact_lock key: a publish holds it exclusively while it retires and opens grid
# rows and re-homes their requests; whatever puts a request on a grid row holds it shared.
PUBLISH_LOCK_KEY = 7_100_001


def live_sql(alias: str = "g", generation: str = CURRENT_GENERATION_SQL) -> str:
    """SQL predicate: row ``alias`` of ``grids`` is live at ``generation`` (an SQL expression,
    e.g. a bind parameter ``:cur``; the current generation by default). An empty ``alias``
    leaves the columns unqualified (``FROM grids`` without an alias)."""
    a = f"{alias}." if alias else ""
    return (
        f"{a}generation_low <= {generation} AND "
        f"({a}generation_high IS NULL OR {a}generation_high > {generation})"
    )


# The live grids now, over alias ``g``.
LIVE_GRIDS = live_sql("g")


def current_generation(session: Session) -> int:
    """The id of the current generation (0 when none was ever published): what "live" is
    measured against when a caller needs the number itself (a bind parameter, a new N+1)."""
    return int(session.scalar(text(f"SELECT {CURRENT_GENERATION_SQL}")))


def grid_at_point_sql(
    point: str,
    columns: str = "g.*",
    *,
    joins: str = "",
    generation: str = CURRENT_GENERATION_SQL,
) -> str:
    """SELECT of ``columns`` from the grid ``g`` live at ``generation`` covering ``point`` (an
    SQL geometry expression in SRID 4326), lowest code on a shared border; ``joins`` may add
    tables."""
    return (
        f"SELECT {columns} FROM grids g {joins}"
        f" WHERE ST_Covers(g.geom, {point}) AND {live_sql('g', generation)}"
        " ORDER BY g.code LIMIT 1"
    )


def subtree_sql(community_col: str, param: str = "scope_areas") -> str:
    """SQL predicate: ``community_col`` lies in the subtree of the areas ``:param`` (array)."""
    return (
        f"{community_col} IN (WITH RECURSIVE sub AS ("
        f" SELECT id FROM areas WHERE id = ANY(:{param})"
        " UNION SELECT a.id FROM areas a JOIN sub ON a.parent_id = sub.id)"
        " SELECT id FROM sub)"
    )


def live_grid_by_code(session: Session, code: str) -> Grid | None:
    """The live grid row with ``code``, or None."""
    return session.scalar(
        select(Grid).from_statement(
            text(f"SELECT g.* FROM grids g WHERE g.code = :c AND {LIVE_GRIDS} LIMIT 1")
        ),
        {"c": code},
    )


def area_at_point_sql(point: str, columns: str = "a.id", *, level: str = "community") -> str:
    """SELECT of ``columns`` from the area ``a`` of ``level`` covering ``point`` (an SQL
    geometry expression in SRID 4326), lowest code on a shared border, like grids."""
    if level not in AREA_LEVELS:
        raise ValueError(f"unknown area level {level!r}")
    return (
        f"SELECT {columns} FROM areas a WHERE a.level = '{level}'"
        f" AND ST_Covers(a.geom, {point}) ORDER BY a.code LIMIT 1"
    )


_COMMUNITY_AT_POINT_SQL = text(
    area_at_point_sql("ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)", "a.id, a.code, a.name")
)


def community_at_point(session: Session, lon: float, lat: float) -> Any | None:
    """(id, code, name) of the community covering WGS84 ``lon, lat`` (lowest code), or None."""
    return session.execute(_COMMUNITY_AT_POINT_SQL, {"lon": lon, "lat": lat}).first()
