"""What the staff pages read beyond the pipeline API: CSV exports, heat points, scope outline.

Flask-free, keyword-only, taking ``session=``. Scope always comes from the caller's grant
through ``service.scope_sql`` (the same clause the metrics and list endpoints use), so an
export never shows more than the API would.

CSV files are UTF-8 with a byte-order mark (Excel then reads Chinese correctly) and every text
cell that a spreadsheet would run as a formula (starting with = + - @, tab or CR) is prefixed
with a single quote (OWASP "CSV injection"). Numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import from_wgs84
from layers.auth.permissions import Grant
from layers.grids.repo import LIVE_GRIDS, subtree_sql
from layers.requests.access import Actor, scope_sql
from layers.requests.workflow import Status

logger = logging.getLogger(__name__)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
METRIC_COLUMNS = (
    "code",
    "name",
    "received",
    "closed",
    "closure_rate",
    "resolved_on_time",
    "on_time_rate",
    "mean_rating",
    "rated",
    "open_backlog",
    "overdue",
    "was_overdue",
    "grid_on_time_rate",
    "community_on_time_rate",
    "street_on_time_rate",
    "district_on_time_rate",
)
MAX_HEAT_POINTS = 50_000
_NOT_RECEIVED = [Status.REJECTED.value, Status.DUPLICATE.value]


def csv_cell(value: Any) -> Any:
    """One CSV cell: numbers as they are, None empty, formula-looking text quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    s = str(value)
    return "'" + s if s.startswith(FORMULA_PREFIXES) else s


def to_csv(*, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A CSV document (CRLF lines, UTF-8 with BOM) with every cell passed through csv_cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def metrics_csv(*, rows: Sequence[dict[str, Any]], headers: dict[str, str]) -> bytes:
    """The metrics table as CSV; ``headers`` names each column of METRIC_COLUMNS."""
    return to_csv(
        header=[headers.get(c, c) for c in METRIC_COLUMNS],
        rows=([r.get(c) for c in METRIC_COLUMNS] for r in rows),
    )


@dataclass(frozen=True)
class HeatPoints:
    """Request locations (lat, lon in the display CRS) received in a period, newest first."""

    points: list[tuple[float, float]]
    truncated: bool
    limit: int


def request_points(
    *,
    session: Session,
    actor: Actor,
    period_from: datetime,
    period_to: datetime,
    display_crs: str = "wgs84",
    limit: int = MAX_HEAT_POINTS,
) -> HeatPoints:
    """Locations of requests received in [from, to) in scope, for a heat map (no text, no
    personal data). Rejected and duplicate requests are left out, as in the metrics."""
    staff, _own, params = scope_sql(session, actor)
    params.update({"pfrom": period_from, "pto": period_to, "lim": limit + 1, "nr": _NOT_RECEIVED})
    rows = session.execute(
        text(
            "SELECT ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat FROM requests r"
            " LEFT JOIN grids g ON g.id = r.grid_id"
            " WHERE r.created_at >= :pfrom AND r.created_at < :pto"
            f" AND r.status <> ALL(:nr) AND ({staff}) ORDER BY r.id DESC LIMIT :lim"
        ),
        params,
    ).all()
    truncated = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return HeatPoints(points=[], truncated=False, limit=limit)
    lon = np.array([r.lon for r in rows], dtype=float)
    lat = np.array([r.lat for r in rows], dtype=float)
    if display_crs != "wgs84":
        lon, lat = from_wgs84(lon, lat, display_crs)
    points = [(round(float(y), 6), round(float(x), 6)) for x, y in zip(lon, lat, strict=True)]
    return HeatPoints(points=points, truncated=truncated, limit=limit)


@dataclass(frozen=True)
class ScopeOutline:
    """What a staff page needs to frame its subtree: bounds, areas and live grids in it."""

    bounds: tuple[tuple[float, float], tuple[float, float]] | None
    areas: list[dict[str, Any]] = field(default_factory=list)
    grids: list[dict[str, Any]] = field(default_factory=list)


def scope_outline(*, session: Session, grant: Grant) -> ScopeOutline:
    """Areas (streets, communities) and live grids inside the grant's subtrees (everything
    for ``grant.everything``), with the bounds of the whole (south, west), (north, east)."""
    if grant.everything:
        area_where, params = "TRUE", {}
    elif grant.area_ids:
        area_where = subtree_sql("a.id", "roots")
        params = {"roots": sorted(grant.area_ids)}
    else:
        return ScopeOutline(bounds=None)
    areas = [
        dict(r)
        for r in session.execute(
            text(
                "SELECT a.code, a.name, a.name_en, a.level, p.code AS parent_code"
                f" FROM areas a LEFT JOIN areas p ON p.id = a.parent_id WHERE {area_where}"
                " ORDER BY a.code"
            ),
            params,
        ).mappings()
    ]
    grids = [
        dict(r)
        for r in session.execute(
            text(
                "SELECT g.code, g.name, c.code AS community_code FROM grids g"
                " JOIN areas c ON c.id = g.community_id"
                f" WHERE {LIVE_GRIDS} AND g.community_id IN (SELECT a.id FROM areas a"
                f" WHERE {area_where}) ORDER BY g.code"
            ),
            params,
        ).mappings()
    ]
    ext = session.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
            f" (SELECT ST_Extent(a.geom) AS e FROM areas a WHERE {area_where}) x"
        ),
        params,
    ).one()
    bounds = None if ext[0] is None else ((ext[1], ext[0]), (ext[3], ext[2]))
    return ScopeOutline(bounds=bounds, areas=areas, grids=grids)
