"""Volunteer self-registration (双报到) and weekly availability.

A volunteer registers with a home (or base) point, which decides the home community by
point-in-polygon; skills are request-category codes; availability is a weekly schedule read
in the configured zone (default Asia/Shanghai):

    {"mon": ["08:00-12:00", "14:00-18:00"], "sat": ["20:00-02:00"], ...}

Keys are ``mon`` … ``sun``; a window whose end is not after its start runs past midnight
into the next day; ``24:00`` is a valid end. An empty schedule ``{}`` means "no schedule
given: available at any time".
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from geo.crs import to_wgs84
from layers.auth.models import RoleBinding
from layers.catalogues import request_category_codes
from layers.errors import BadRequest, Conflict, Unprocessable
from layers.grids.repo import community_at_point
from layers.volunteers.models import Volunteer

logger = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
MAX_LOAD_LIMIT = 50
CRS_CHOICES = ("wgs84", "gcj02", "bd09")


def _window_minutes(window: str) -> tuple[int, int]:
    m = _WINDOW_RE.match(window.strip()) if isinstance(window, str) else None
    if m is None:
        raise BadRequest("invalid_availability", reason=f"bad window {window!r} (HH:MM-HH:MM)")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    if end > 24 * 60:
        raise BadRequest("invalid_availability", reason=f"bad window {window!r}")
    return start, end


def validate_availability(raw: Any) -> dict[str, list[str]]:
    """A normalised weekly schedule, or 400 ``invalid_availability``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("invalid_availability", reason="must be an object keyed mon … sun")
    out: dict[str, list[str]] = {}
    for day, windows in raw.items():
        if day not in DAYS:
            raise BadRequest("invalid_availability", reason=f"unknown day {day!r}")
        if not isinstance(windows, list):
            raise BadRequest("invalid_availability", reason=f"{day}: expected a list")
        for w in windows:
            start, end = _window_minutes(w)
            if start == end:
                raise BadRequest("invalid_availability", reason=f"empty window {w!r}")
        out[day] = [w.strip() for w in windows]
    return out


def available_at(availability: dict[str, Any] | None, when: datetime, tz: str) -> bool:
    """Whether a weekly schedule covers the instant ``when`` (aware), read in zone ``tz``."""
    if not availability:
        return True
    local = when.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    for w in availability.get(today, ()):
        start, end = _window_minutes(w)
        if (start < end and start <= minute < end) or (end <= start and minute >= start):
            return True
    for w in availability.get(yesterday, ()):
        start, end = _window_minutes(w)
        if end <= start and minute < end:
            return True
    return False


@dataclass(frozen=True)
class Registration:
    name: str
    phone: str | None
    lon: float
    lat: float
    crs: str
    skills: list[str]
    availability: dict[str, list[str]]
    load_limit: int


def parse_registration(body: dict[str, Any]) -> Registration:
    """Validate a ``POST /volunteers`` body."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("missing_field", field="name")
    if len(name.strip()) > 100:
        raise BadRequest("text_too_long", field="name", max_chars=100, length=len(name))
    phone = body.get("phone")
    if phone is not None and (not isinstance(phone, str) or len(phone) > 32):
        raise BadRequest("invalid_field", field="phone", reason="a string of ≤ 32 characters")
    coords = []
    for field in ("lon", "lat"):
        v = body.get(field)
        if v is None:
            raise BadRequest("missing_field", field=field)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise BadRequest("invalid_coordinates", field=field, reason="not a finite number")
        coords.append(float(v))
    if not (-180 <= coords[0] <= 180 and -90 <= coords[1] <= 90):
        raise Unprocessable("coordinates_out_of_range", lon=coords[0], lat=coords[1])
    crs = body.get("crs", "wgs84")
    if not isinstance(crs, str) or crs.lower() not in CRS_CHOICES:
        raise BadRequest("unknown_crs", crs=str(crs), available=", ".join(CRS_CHOICES))
    skills = body.get("skills")
    if not isinstance(skills, list) or not skills or not all(isinstance(s, str) for s in skills):
        raise BadRequest("missing_field", field="skills")
    unknown = sorted(set(skills) - request_category_codes())
    if unknown:
        raise Unprocessable(
            "unknown_category",
            category=", ".join(unknown),
            available=", ".join(sorted(request_category_codes())),
        )
    load_limit = body.get("load_limit", 3)
    if isinstance(load_limit, bool) or not isinstance(load_limit, int):
        raise BadRequest("invalid_field", field="load_limit", reason="an integer")
    if not 1 <= load_limit <= MAX_LOAD_LIMIT:
        raise BadRequest("invalid_field", field="load_limit", reason=f"1–{MAX_LOAD_LIMIT}")
    return Registration(
        name=name.strip(),
        phone=phone.strip() if isinstance(phone, str) and phone.strip() else None,
        lon=coords[0],
        lat=coords[1],
        crs=crs.lower(),
        skills=sorted(set(skills)),
        availability=validate_availability(body.get("availability")),
        load_limit=load_limit,
    )


def community_at(*, session: Session, lon: float, lat: float) -> tuple[int, str, str] | None:
    """(id, code, name) of the community covering a WGS84 point (lowest code on a border)."""
    row = community_at_point(session, lon, lat)
    return (row.id, row.code, row.name) if row else None


def register_volunteer(*, session: Session, user_id: int, reg: Registration) -> dict[str, Any]:
    """Register the account ``user_id`` as a volunteer of the community at its home point.

    Also binds the ``volunteer`` role to that community so the account can claim offers.
    409 ``volunteer_exists`` when the account is already registered; 422
    ``outside_jurisdiction`` when the point lies in no community.
    """
    try:
        lon, lat = to_wgs84(reg.lon, reg.lat, reg.crs)
        if session.scalar(select(Volunteer.id).where(Volunteer.user_id == user_id)):
            raise Conflict("volunteer_exists")
        found = community_at(session=session, lon=lon, lat=lat)
        if found is None:
            raise Unprocessable("outside_jurisdiction", lon=round(lon, 7), lat=round(lat, 7))
        community_id, community_code, community_name = found
        volunteer = Volunteer(
            user_id=user_id,
            name=reg.name,
            phone=reg.phone,
            community_id=community_id,
            skills=reg.skills,
            availability=reg.availability,
            load_limit=reg.load_limit,
            geom=f"SRID=4326;POINT({lon!r} {lat!r})",
        )
        session.add(volunteer)
        bound = session.scalar(
            select(RoleBinding.id).where(
                RoleBinding.user_id == user_id,
                RoleBinding.role_code == "volunteer",
                RoleBinding.area_id == community_id,
            )
        )
        if bound is None:
            session.add(RoleBinding(user_id=user_id, role_code="volunteer", area_id=community_id))
        session.flush()
        result = {
            "id": volunteer.id,
            "community": {"code": community_code, "name": community_name},
            "skills": reg.skills,
            "availability": reg.availability,
            "load_limit": reg.load_limit,
            "points": 0,
        }
        session.commit()
    except Exception:
        session.rollback()
        raise
    logger.info("volunteer %s registered in community %s", result["id"], community_code)
    return result
