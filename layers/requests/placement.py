"""Where an intake lands: the live grid covering its point, or its community's triage.

A point on a border shared by several grids goes to the lowest grid code; a point inside a
community but in no grid goes to that community's triage; a point outside every community is
refused with the reason that helps most (swapped lon/lat, out of range, outside).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import to_wgs84
from layers.errors import Unprocessable
from layers.grids.repo import community_at_point, grid_at_point_sql
from layers.requests.recipients import GRID_PEOPLE_SQL
from layers.requests.schemas import IntakeInput, lonlat_in_range

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    lon: float
    lat: float
    grid_id: int | None
    grid_code: str | None
    grid_name: str | None
    community_id: int
    community_code: str
    community_name: str
    grid_people: tuple[int, ...] = ()  # the grid's leader and accounts bound as its leader


# Statements of the intake path are built once (a text() construct parses its SQL for bind
# parameters every time it is made).
AT_POINT_SQL = "WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS p)"
# The live grid covering pt.p (lowest code on a border), its community and its leaders.
GRID_AT_POINT_SQL = grid_at_point_sql(
    "pt.p",
    "g.id, g.code, g.name, c.id AS cid, c.code AS ccode, c.name AS cname,"
    f" {GRID_PEOPLE_SQL} AS people",
    joins="JOIN areas c ON c.id = g.community_id, pt",
)
_PLACE_GRID_SQL = text(f"{AT_POINT_SQL} {GRID_AT_POINT_SQL}")
_BUILDING_POINT_SQL = text(
    "SELECT ST_X(rep_point) AS lon, ST_Y(rep_point) AS lat FROM buildings WHERE code = :c"
)


def grid_placement(lon: float, lat: float, row: Any) -> Placement:
    return Placement(
        lon, lat, row.id, row.code, row.name, row.cid, row.ccode, row.cname, tuple(row.people)
    )


def place(session: Session, lon: float, lat: float) -> Placement | None:
    """The live grid covering the point (lowest code on a border) or, failing that, the
    community; None outside every community."""
    row = session.execute(_PLACE_GRID_SQL, {"lon": lon, "lat": lat}).first()
    if row is not None:
        return grid_placement(lon, lat, row)
    row = community_at_point(session, lon, lat)
    if row is None:
        return None
    return Placement(lon, lat, None, None, None, row.id, row.code, row.name)


def intake_point(session: Session, intake: IntakeInput) -> tuple[float, float] | None:
    """WGS84 lon/lat of an intake: its building's point, or its coordinates converted; None
    when the coordinates are out of range (``locate`` says why)."""
    if intake.building_code is not None:
        row = session.execute(_BUILDING_POINT_SQL, {"c": intake.building_code}).first()
        if row is None:
            raise Unprocessable("unknown_building", code=intake.building_code)
        return row.lon, row.lat
    assert intake.lon is not None and intake.lat is not None
    if not lonlat_in_range(intake.lon, intake.lat):
        return None
    lon, lat = to_wgs84(intake.lon, intake.lat, intake.crs)
    return float(lon), float(lat)


def locate(session: Session, intake: IntakeInput, point: tuple[float, float] | None) -> Placement:
    """WGS84 placement of an intake at ``point`` (``intake_point``), diagnosing swapped
    lon/lat and outside points."""
    if point is not None:
        placed = place(session, *point)
        if placed is not None:
            return placed
        if intake.building_code is not None:
            raise Unprocessable("outside_jurisdiction", lon=point[0], lat=point[1])
    raw_lon, raw_lat = intake.lon, intake.lat
    assert raw_lon is not None and raw_lat is not None
    # Not placeable as given: would the swapped order land inside? Then say so.
    if lonlat_in_range(raw_lat, raw_lon):
        s_lon, s_lat = to_wgs84(raw_lat, raw_lon, intake.crs)
        if place(session, s_lon, s_lat) is not None:
            raise Unprocessable("swapped_coordinates", lon=raw_lon, lat=raw_lat)
    if not lonlat_in_range(raw_lon, raw_lat):
        raise Unprocessable("coordinates_out_of_range", lon=raw_lon, lat=raw_lat)
    raise Unprocessable("outside_jurisdiction", lon=raw_lon, lat=raw_lat)
