"""Parsing and validation of pipeline input, and serialisation of requests (with masking).

Parsing is strict and answers a stable code per problem (DESIGN §7): ``missing_field``,
``invalid_field``, ``invalid_coordinates`` (NaN / infinite / not a number),
``coordinates_out_of_range``, ``unknown_category``, ``unknown_crs``, ``text_too_long``.
Swapped lon/lat is diagnosed by the service, which can ask the database which order lands
inside the jurisdiction. Text is stored verbatim (HTML included) and escaped where shown.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from layers.auth.pii import mask_name, mask_phone
from layers.errors import BadRequest, Unprocessable
from layers.requests.rules import categories_by_code

DEFAULT_TZ = "Asia/Shanghai"  # shown and interpreted in this zone unless configured
MAX_TEXT_CHARS = 2000
MAX_NOTE_CHARS = 2000
MAX_COMMENT_CHARS = 500
MAX_NAME_CHARS = 100
CRS_CHOICES = ("wgs84", "gcj02", "bd09")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{2,30}$")


@dataclass(frozen=True)
class IntakeInput:
    """A validated submission; either (lon, lat, crs) or building_code is set."""

    category: str
    text: str
    lon: float | None = None
    lat: float | None = None
    crs: str = "wgs84"
    building_code: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None


def body_sha256(body: dict[str, Any]) -> str:
    """Hash of the canonical JSON of a body (key order and spacing do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_ticket(request_id: int) -> str:
    """A resident's ticket, shown once: ``<request id>-<128 random bits in hex>``. The id
    finds the request by primary key; the whole ticket's SHA-256 is what is stored and
    compared, so the secret part is never kept and cannot be guessed."""
    return f"{request_id}-{secrets.token_hex(16)}"


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def ticket_request_id(ticket: str) -> int | None:
    """The request id a well-formed ticket names, else None."""
    head, sep, secret = ticket.partition("-")
    # isascii: str.isdigit also accepts digits int() refuses (e.g. "²")
    if not sep or not (head.isascii() and head.isdigit()) or len(head) > 18 or len(secret) != 32:
        return None
    return int(head)


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if value is None:
        raise BadRequest("missing_field", field=name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest("invalid_coordinates", field=name, reason="not a number")
    if not math.isfinite(value):
        raise BadRequest("invalid_coordinates", field=name, reason="not finite")
    return float(value)


def optional_str(body: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("invalid_field", field=name, reason="must be a string")
    value = value.strip()
    if len(value) > max_chars:
        raise BadRequest("text_too_long", field=name, max_chars=max_chars, length=len(value))
    return value or None


def required_str(body: dict[str, Any], name: str, max_chars: int) -> str:
    value = optional_str(body, name, max_chars)
    if value is None:
        raise BadRequest("missing_field", field=name)
    return value


def parse_category(code: Any) -> str:
    if code is None:
        raise BadRequest("missing_field", field="category")
    if not isinstance(code, str) or code not in categories_by_code():
        raise Unprocessable(
            "unknown_category", category=str(code), available=", ".join(categories_by_code())
        )
    return code


def parse_intake(body: dict[str, Any]) -> IntakeInput:
    """Validate a ``POST /requests`` body; raises 400/422 with a stable code."""
    category = parse_category(body.get("category"))
    text = body.get("text")
    if text is None:
        raise BadRequest("missing_field", field="text")
    if not isinstance(text, str):
        raise BadRequest("invalid_field", field="text", reason="must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise BadRequest("text_too_long", field="text", max_chars=MAX_TEXT_CHARS, length=len(text))
    if not text.strip():
        raise BadRequest("missing_field", field="text")
    contact = body.get("contact") or {}
    if not isinstance(contact, dict):
        raise BadRequest("invalid_field", field="contact", reason="must be an object")
    name = optional_str(contact, "name", MAX_NAME_CHARS)
    phone = optional_str(contact, "phone", 32)
    if phone is not None and not _PHONE_RE.match(phone):
        raise BadRequest("invalid_field", field="contact.phone", reason="not a phone number")
    building_code = body.get("building_code")
    if building_code is not None:
        if not isinstance(building_code, str) or not building_code.strip():
            raise BadRequest("invalid_field", field="building_code", reason="must be a string")
        if body.get("lon") is not None or body.get("lat") is not None:
            raise BadRequest(
                "invalid_field", field="building_code", reason="give lon/lat or building_code"
            )
        return IntakeInput(
            category=category,
            text=text,
            building_code=building_code.strip(),
            contact_name=name,
            contact_phone=phone,
        )
    if body.get("lon") is None and body.get("lat") is None:
        raise BadRequest("missing_field", field="lon/lat or building_code")
    lon, lat = _number(body, "lon"), _number(body, "lat")
    crs = body.get("crs", "wgs84")
    if not isinstance(crs, str) or crs.strip().lower() not in CRS_CHOICES:
        raise BadRequest("unknown_crs", crs=str(crs), available=", ".join(CRS_CHOICES))
    return IntakeInput(
        category=category,
        text=text,
        lon=lon,
        lat=lat,
        crs=crs.strip().lower(),
        contact_name=name,
        contact_phone=phone,
    )


def lonlat_in_range(lon: float, lat: float) -> bool:
    return -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0


def parse_rating(body: dict[str, Any]) -> tuple[int, str | None]:
    rating = body.get("rating")
    if rating is None:
        raise BadRequest("missing_field", field="rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise BadRequest("invalid_rating", rating=str(rating))
    return rating, optional_str(body, "comment", MAX_COMMENT_CHARS)


def parse_time(raw: str | None, name: str, tz: str) -> datetime | None:
    """ISO 8601 date or datetime; naive values are read in the configured zone ``tz``."""
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest("invalid_time", field=name, value=raw) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value


def now_utc(now: datetime | None) -> datetime:
    """``now`` (timezone-aware) or the current UTC instant."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def location(lon: float, lat: float, crs: str = "wgs84") -> dict[str, Any]:
    """A point as served: its coordinates (already in ``crs``) and the CRS they are in."""
    return {"lon": round(float(lon), 7), "lat": round(float(lat), 7), "crs": crs}


def iso(value: datetime | None, tz: str) -> str | None:
    """A timestamp shown in the configured zone (stored in UTC)."""
    return value.astimezone(ZoneInfo(tz)).isoformat() if value is not None else None


def contact_view(name: str | None, phone: str | None, *, pii: bool) -> dict[str, str | None]:
    if pii:
        return {"name": name, "phone": phone}
    return {"name": mask_name(name), "phone": mask_phone(phone)}


# -- action bodies (the ``body`` column of the action table) ----------------------------------
@dataclass(frozen=True)
class NoteBody:
    """An optional note (reopen, withdraw, decline_offer)."""

    note: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> NoteBody:
        return cls(optional_str(body, "note", MAX_NOTE_CHARS))


@dataclass(frozen=True)
class RequiredNoteBody:
    """A note that must be given: what was done (resolve), what the resident is told (reply)."""

    note: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> RequiredNoteBody:
        return cls(required_str(body, "note", MAX_NOTE_CHARS))


@dataclass(frozen=True)
class ReasonBody:
    """A handoff that needs a reason (reject, escalate, give_back); the reason is the event's
    note, shown in the timeline (DESIGN §3: handoffs need a reason)."""

    reason: str

    @property
    def note(self) -> str:
        return self.reason

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ReasonBody:
        return cls(required_str(body, "reason", MAX_NOTE_CHARS))


@dataclass(frozen=True)
class DuplicateBody:
    """The request this one repeats, by id or number, and why."""

    duplicate_of: Any  # checked against the requests in scope (handlers.check_duplicate)
    reason: str

    @property
    def note(self) -> str:
        return self.reason

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DuplicateBody:
        if body.get("duplicate_of") is None:
            raise BadRequest("missing_field", field="duplicate_of")
        return cls(body["duplicate_of"], required_str(body, "reason", MAX_NOTE_CHARS))


@dataclass(frozen=True)
class AssignBody:
    """The live grid a triaged request goes to."""

    grid_code: Any  # checked against the live grids (handlers.check_assign)
    note: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> AssignBody:
        return cls(body.get("grid_code"), optional_str(body, "note", MAX_NOTE_CHARS))


@dataclass(frozen=True)
class ReassignBody:
    """Exactly one of another volunteer (sole offer) or another live grid, and why.

    ``override``: the leader confirms a volunteer who lacks the category's skill, is not
    available now or is at the load limit (the reason says why)."""

    volunteer_id: Any  # both checked in scope (handlers.check_reassign)
    grid_code: Any
    reason: str
    override: bool = False

    @property
    def note(self) -> str:
        return self.reason

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ReassignBody:
        volunteer_id, grid_code = body.get("volunteer_id"), body.get("grid_code")
        if (volunteer_id is None) == (grid_code is None):
            raise BadRequest("missing_field", field="volunteer_id or grid_code (exactly one)")
        override = body.get("override", False)
        if not isinstance(override, bool):
            raise BadRequest("invalid_field", field="override", reason="true or false")
        reason = required_str(body, "reason", MAX_NOTE_CHARS)
        return cls(volunteer_id, grid_code, reason, override)


@dataclass(frozen=True)
class RateBody:
    """The resident's 1–5 stars and an optional comment (the event's note)."""

    rating: int
    comment: str | None = None

    @property
    def note(self) -> str | None:
        return self.comment

    @classmethod
    def parse(cls, body: dict[str, Any]) -> RateBody:
        return cls(*parse_rating(body))
