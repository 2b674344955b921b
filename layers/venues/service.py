"""Venue changes: add, move or close one venue, keep its service circles current and report
the coverage figures the change touched, all in one transaction.

A venue change sits above both layers it touches: the circles layer recomputes the venue's
circles and the coverage layer measures homes before and after (coverage itself builds on
circles' walking graph and requirements, so neither may call the other back).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.circles.service import (
    check_category,
    point_lonlat,
    rebuild_venue_circles,
    requirements,
)
from layers.config import Settings
from layers.coverage.service import LEVELS, coverage, load_homes
from layers.errors import NotFound, Unprocessable


def _coverage_rows(session: Session, category: str, settings: Settings) -> dict[tuple, dict]:
    if not requirements(category):
        return {}
    homes = load_homes(session)
    out = {}
    for level in LEVELS:
        for row in coverage(
            session, level=level, category=category, settings=settings, homes=homes
        ):
            out[(row["level"], row["code"], row["tier"])] = row
    return out


def _touched(before: dict[tuple, dict], after: dict[tuple, dict]) -> list[dict[str, Any]]:
    keys = ("buildings_covered", "households_covered", "buildings", "households")
    return [
        row
        for key, row in sorted(after.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
        if key not in before or any(before[key][k] != row[k] for k in keys)
    ]


def _venue_change(session: Session, category: str, settings: Settings, apply) -> dict[str, Any]:
    """Run ``apply`` (which writes the venue and returns its id), rebuild that venue's circles
    and diff the category's coverage figures before / after; commits once at the end."""
    before = _coverage_rows(session, category, settings)
    venue_id = apply()
    rebuild_venue_circles(session, venue_id, category, settings=settings)
    touched = _touched(before, _coverage_rows(session, category, settings))
    circles = [
        dict(r._mapping)
        for r in session.execute(
            text(
                "SELECT tier, budget_m, budget_unit, method, network_version FROM service_circles"
                " WHERE venue_id = :v ORDER BY budget_m"
            ),
            {"v": venue_id},
        )
    ]
    session.commit()
    return {"venue_id": venue_id, "circles": circles, "coverage_touched": touched}


def _venue_row(session: Session, venue_id: int) -> Any:
    row = session.execute(
        text("SELECT id, category, active FROM venues WHERE id = :id"), {"id": venue_id}
    ).first()
    if row is None:
        raise NotFound("unknown_venue", id=venue_id)
    return row


def add_venue(
    session: Session,
    *,
    category: str,
    lon: Any,
    lat: Any,
    crs: str = "wgs84",
    name: str | None = None,
    settings: Settings | None = None,
    **attrs: Any,
) -> dict[str, Any]:
    """Insert a venue, build its circles and report the coverage it changes (one transaction)."""
    settings = settings or Settings()
    check_category(category)
    if lon is None or lat is None:
        raise Unprocessable("venue_without_location", venue=name or "(new)")
    wlon, wlat = point_lonlat(lon, lat, crs, what="venue")
    allowed = {"opening_hours", "capacity", "shared", "address", "osm_id"}
    extra = {k: v for k, v in attrs.items() if k in allowed}

    def apply() -> int:
        cols = ", ".join(["category", "name", "geom", *extra])
        vals = ", ".join(
            [":category", ":name", "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"]
            + [f":{k}" for k in extra]
        )
        return session.execute(
            text(f"INSERT INTO venues ({cols}) VALUES ({vals}) RETURNING id"),
            {"category": category, "name": name, "lon": wlon, "lat": wlat, **extra},
        ).scalar_one()

    return _venue_change(session, category, settings, apply)


def move_venue(
    session: Session,
    venue_id: int,
    *,
    lon: Any,
    lat: Any,
    crs: str = "wgs84",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Move a venue, recompute its circles and the coverage it touches (one transaction)."""
    settings = settings or Settings()
    row = _venue_row(session, venue_id)
    if lon is None or lat is None:
        raise Unprocessable("venue_without_location", venue=venue_id)
    wlon, wlat = point_lonlat(lon, lat, crs, what="venue")

    def apply() -> int:
        session.execute(
            text(
                "UPDATE venues SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) WHERE id = :id"
            ),
            {"lon": wlon, "lat": wlat, "id": venue_id},
        )
        return venue_id

    return _venue_change(session, row.category, settings, apply)


def close_venue(
    session: Session, venue_id: int, *, settings: Settings | None = None
) -> dict[str, Any]:
    """Close a venue (inactive), drop its circles and report the coverage lost (one transaction)."""
    settings = settings or Settings()
    row = _venue_row(session, venue_id)

    def apply() -> int:
        session.execute(text("UPDATE venues SET active = false WHERE id = :id"), {"id": venue_id})
        return venue_id

    return _venue_change(session, row.category, settings, apply)
