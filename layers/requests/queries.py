"""Read models of requests: one request with its timeline, the resident's ticket view, and
pages of requests in the caller's scope — with names and phones masked unless the caller's
role and access allow them (``layers.requests.access.pii_for``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth.pii import mask_name
from layers.display_crs import bbox_to_wgs84, lonlat_to_display
from layers.errors import Forbidden, NotFound
from layers.features import decode_cursor, encode_cursor
from layers.pipeline.runner import version_tag
from layers.requests.access import (
    ASSIGNEE_PII_DAYS,
    Access,
    Actor,
    access_to,
    pii_for,
    pii_sql,
    scope_sql,
)
from layers.requests.entity import REQUESTS, load_by_ticket
from layers.requests.models import Request
from layers.requests.rules import categories_by_code
from layers.requests.schemas import DEFAULT_TZ, contact_view, iso, now_utc
from layers.requests.schemas import location as point_view
from layers.requests.states import OPEN
from layers.requests.workflow import actions_for, next_status

logger = logging.getLogger(__name__)

_OPEN = sorted(s.value for s in OPEN)


def _timeline(session: Session, request_id: int, tz: str, *, actors: bool) -> list[dict]:
    rows = session.execute(
        text(
            "SELECT e.at, e.action, e.from_status, e.to_status, e.owner_level, e.note,"
            " e.actor_kind, u.username FROM request_events e"
            " LEFT JOIN users u ON u.id = e.actor_user_id"
            " WHERE e.request_id = :r ORDER BY e.id"
        ),
        {"r": request_id},
    ).all()
    out = []
    for r in rows:
        item = {
            "at": iso(r.at, tz),
            "action": r.action,
            "from": r.from_status,
            "to": r.to_status,
            "owner_level": r.owner_level,
            "note": r.note,
            "actor_kind": r.actor_kind,
        }
        if actors:
            item["actor"] = r.username
        out.append(item)
    return out


def _awaiting(session: Session, rows: list[Any]) -> dict[int, tuple[int, str]]:
    """Whom each assigned, unclaimed request of ``rows`` waits for: (live offers, the lowest
    name) by request id — "待<姓名>接单" when there is one, "n 人" otherwise."""
    ids = [r["id"] for r in rows if r["status"] == "assigned" and r["assignee_id"] is None]
    if not ids:
        return {}
    found = session.execute(
        text(
            "SELECT o.request_id, count(*), min(v.name) FROM request_offers o"
            " JOIN volunteers v ON v.id = o.volunteer_id"
            " WHERE o.request_id = ANY(:ids) GROUP BY o.request_id"
        ),
        {"ids": ids},
    ).all()
    return {r[0]: (r[1], r[2]) for r in found}


def _awaiting_view(found: tuple[int, str] | None, *, pii: bool) -> dict[str, Any] | None:
    if not found:
        return None
    n, name = found
    shown = (name if pii else mask_name(name)) if n == 1 else None
    return {"count": n, "name": shown}


def _request_row(session: Session, request_id: int) -> Any:
    return (
        session.execute(
            text(
                "SELECT r.*, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat, g.code AS grid_code,"
                " g.name AS grid_name, c.code AS community_code, c.name AS community_name,"
                " v.name AS assignee_name, d.number AS duplicate_number"
                " FROM requests r LEFT JOIN grids g ON g.id = r.grid_id"
                " LEFT JOIN areas c ON c.id = r.community_id"
                " LEFT JOIN volunteers v ON v.id = r.assignee_id"
                " LEFT JOIN requests d ON d.id = r.duplicate_of WHERE r.id = :r"
            ),
            {"r": request_id},
        )
        .mappings()
        .first()
    )


def _summary(
    row: Any,
    tz: str,
    now: datetime,
    *,
    pii: bool,
    location: dict[str, Any] | None = None,
    awaiting: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """A request as listed; ``location`` when served in a display CRS (else WGS84)."""
    overdue = bool(
        row["status"] in _OPEN and row["deadline_at"] is not None and row["deadline_at"] < now
    )
    late = overdue or bool(row["was_overdue"])
    category = categories_by_code().get(row["category"])
    return {
        "id": row["id"],
        "number": row["number"],
        "status": row["status"],
        "category": row["category"],
        "category_name": category.name_zh if category else None,
        "text": row["text"],
        "owner_level": row["owner_level"],
        "grid": {"code": row["grid_code"], "name": row["grid_name"]} if row["grid_code"] else None,
        "community": (
            {"code": row["community_code"], "name": row["community_name"]}
            if row["community_code"]
            else None
        ),
        "location": location or point_view(row["lon"], row["lat"]),
        "building_code": row["building_code"],
        "deadline": iso(row["deadline_at"], tz),  # the current level's
        "first_deadline": iso(row["first_deadline_at"], tz),  # set at intake, never moved
        "overdue": overdue,  # open and past the current level's deadline
        "was_overdue": late,  # some level's deadline passed before it was met
        "awaiting": _awaiting_view(awaiting, pii=pii),  # 待<姓名>接单 / offered to n
        "created_at": iso(row["created_at"], tz),
        "rating": row["rating"],
        "contact": contact_view(row["contact_name"], row["contact_phone"], pii=pii),
    }


def request_detail(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    tz: str = DEFAULT_TZ,
    now: datetime | None = None,
    display_crs: str = "wgs84",
    assignee_pii_days: float = ASSIGNEE_PII_DAYS,
    duplicates: bool = True,
) -> dict[str, Any]:
    """One request with its timeline, offers and the actions legal now (403 out of scope);
    staff also see the possible duplicates found at intake (``duplicates``: not in the
    answer to an action, which is about the action).

    A volunteer who is not staff sees their own offer only, no login names in the timeline
    and, unless they are the assignee, no rating comment and no assignee."""
    now = now_utc(now)
    req = session.get(Request, request_id, populate_existing=True)
    if req is None:
        raise NotFound("unknown_request", id=request_id)
    access = access_to(session, actor, req)
    if not access.any:
        raise Forbidden("forbidden")
    pii = pii_for(access, closed_at=req.closed_at, now=now, assignee_pii_days=assignee_pii_days)
    mine = access.staff or access.assignee
    row = _request_row(session, request_id)
    location = point_view(*lonlat_to_display(row["lon"], row["lat"], display_crs), display_crs)
    offers = session.execute(
        text(
            "SELECT o.volunteer_id, v.name, o.rank, o.distance_m, o.distance_method"
            " FROM request_offers o JOIN volunteers v ON v.id = o.volunteer_id"
            " WHERE o.request_id = :r AND (:all OR o.volunteer_id = :me) ORDER BY o.rank"
        ),
        {"r": request_id, "all": access.staff, "me": access.volunteer_id},
    ).all()
    awaiting = None
    if access.staff and offers and row["status"] == "assigned" and row["assignee_id"] is None:
        awaiting = (len(offers), min(o.name for o in offers))  # as _awaiting reads it
    out = _summary(row, tz, now, pii=pii, location=location, awaiting=awaiting)
    out.update(
        {
            "updated_at": iso(row["updated_at"], tz),
            "resolved_at": iso(row["resolved_at"], tz),
            "closed_at": iso(row["closed_at"], tz),
            "rating_comment": row["rating_comment"] if mine else None,
            "reopen_count": row["reopen_count"],
            "duplicate_of": row["duplicate_number"],
            "assignee": (
                {
                    "volunteer_id": row["assignee_id"],
                    "name": row["assignee_name"] if pii else mask_name(row["assignee_name"]),
                }
                if row["assignee_id"] and mine
                else None
            ),
            "offers": [
                {
                    "volunteer_id": o.volunteer_id,
                    "name": o.name if pii else mask_name(o.name),
                    "rank": o.rank,
                    "distance_m": o.distance_m,
                    "distance_method": o.distance_method,
                }
                for o in offers
            ],
            "allowed_actions": actions_for(session, actor, req),
            "timeline": _timeline(session, request_id, tz, actors=access.staff),
        }
    )
    if access.staff and duplicates:
        out["possible_duplicates"] = _possible_duplicates(session, request_id)
    # what the page shows this version of; an action sent with it (If-Match) acts on it or
    # answers 409 conflict (someone acted meanwhile)
    every_offer = [o.volunteer_id for o in offers] if access.staff else None  # staff see all
    out["version"] = version_tag(REQUESTS.version(session, req, offer_ids=every_offer))
    return out


def _possible_duplicates(session: Session, request_id: int) -> list[dict[str, Any]]:
    """The requests found nearby at intake (submit event), with their state now, nearest
    first: what staff weigh before mark_duplicate."""
    rows = session.execute(
        text(
            "SELECT d.id, d.number, d.status, round(ST_Distance(d.geom::geography,"
            " r.geom::geography)::numeric, 1)::float AS distance_m"
            " FROM request_events e JOIN requests r ON r.id = e.request_id"
            " CROSS JOIN LATERAL jsonb_array_elements_text("
            "   coalesce(e.data->'possible_duplicates', '[]'::jsonb)) AS x(id)"
            " JOIN requests d ON d.id = x.id::bigint"
            " WHERE e.request_id = :r AND e.action = 'submit' ORDER BY distance_m, d.id"
        ),
        {"r": request_id},
    ).mappings()
    return [dict(row) for row in rows]


def ticket_view(
    *, session: Session, ticket: str, tz: str = DEFAULT_TZ, now: datetime | None = None
) -> dict[str, Any]:
    """What the resident sees with their ticket: no one else's personal data."""
    now = now_utc(now)
    req = load_by_ticket(session, ticket, lock=False)
    row = _request_row(session, req.id)
    out = _summary(row, tz, now, pii=False)
    out.update(
        {
            "resolved_at": iso(row["resolved_at"], tz),
            "closed_at": iso(row["closed_at"], tz),
            "rating_comment": row["rating_comment"],
            "assignee": {"name": mask_name(row["assignee_name"])} if row["assignee_id"] else None,
            "can_rate": next_status(req.status, "rate") is not None,
            "can_withdraw": next_status(req.status, "withdraw") is not None,
            "timeline": _timeline(session, req.id, tz, actors=False),
        }
    )
    return out


@dataclass(frozen=True)
class ListFilters:
    grid_code: str | None = None
    community_code: str | None = None
    statuses: tuple[str, ...] = ()
    owner_levels: tuple[str, ...] = ()
    category: str | None = None
    overdue: bool | None = None
    bbox: tuple[float, float, float, float] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


CURSOR_NAME = "requests"


def list_requests(
    *,
    session: Session,
    actor: Actor,
    filters: ListFilters,
    limit: int,
    cursor: str | None = None,
    tz: str = DEFAULT_TZ,
    now: datetime | None = None,
    display_crs: str = "wgs84",
    assignee_pii_days: float = ASSIGNEE_PII_DAYS,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of requests in the actor's scope, newest first; returns (items, next cursor).

    With ``display_crs`` (gcj02 / bd09, for a map drawn in that CRS) the bbox filter is read
    in it (widened by ``BBOX_PAD_DEG`` as the layers' is) and locations are served in it."""
    now = now_utc(now)
    before_id = decode_cursor(CURSOR_NAME, cursor)
    staff, own, params = scope_sql(session, actor)
    unmasked, pii_params = pii_sql(actor)
    params.update(pii_params)
    where = [f"({staff} OR {own})"]
    params.update({"lim": limit + 1, "now": now})
    if before_id:
        where.append("r.id < :before_id")
        params["before_id"] = before_id
    if filters.grid_code:
        where.append("g.code = :grid_code")
        params["grid_code"] = filters.grid_code
    if filters.community_code:
        where.append("c.code = :community_code")
        params["community_code"] = filters.community_code
    if filters.statuses:
        where.append("r.status = ANY(:statuses)")
        params["statuses"] = list(filters.statuses)
    if filters.category:
        where.append("r.category = :category")
        params["category"] = filters.category
    if filters.owner_levels:
        where.append("r.owner_level = ANY(:owner_levels)")
        params["owner_levels"] = list(filters.owner_levels)
    if filters.overdue is not None:
        clause = "(r.status = ANY(:open) AND r.deadline_at < :now)"
        where.append(clause if filters.overdue else f"NOT {clause}")
        params["open"] = _OPEN
    bbox = bbox_to_wgs84(filters.bbox, display_crs)
    if bbox:
        where.append("r.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(zip(("x0", "y0", "x1", "y1"), bbox, strict=True))
    if filters.created_from:
        where.append("r.created_at >= :cfrom")
        params["cfrom"] = filters.created_from
    if filters.created_to:
        where.append("r.created_at < :cto")
        params["cto"] = filters.created_to
    rows = (
        session.execute(
            text(
                "SELECT r.*, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat, g.code AS grid_code,"
                " g.name AS grid_name, c.code AS community_code, c.name AS community_name,"
                f" {staff} AS _staff, {unmasked} AS _pii"
                " FROM requests r LEFT JOIN grids g ON g.id = r.grid_id"
                " LEFT JOIN areas c ON c.id = r.community_id"
                f" WHERE {' AND '.join(where)} ORDER BY r.id DESC LIMIT :lim"
            ),
            params,
        )
        .mappings()
        .all()
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    vid = params.get("scope_vid")
    # the page's points in the display CRS at once (per point it is ~30 us each)
    shown_lon, shown_lat = lonlat_to_display(
        np.array([r["lon"] for r in rows], dtype=np.float64),
        np.array([r["lat"] for r in rows], dtype=np.float64),
        display_crs,
    )
    waiting = _awaiting(session, rows)
    items = []
    for i, row in enumerate(rows):
        access = Access(
            staff=bool(row["_staff"]),
            volunteer_id=vid,
            offered=False,
            assignee=vid is not None and row["assignee_id"] == vid,
            staff_pii=bool(row["_pii"]),
        )
        pii = pii_for(
            access, closed_at=row["closed_at"], now=now, assignee_pii_days=assignee_pii_days
        )
        location = point_view(shown_lon[i], shown_lat[i], display_crs)
        awaiting = waiting.get(row["id"]) if access.staff else None
        items.append(_summary(row, tz, now, pii=pii, location=location, awaiting=awaiting))
    next_cursor = encode_cursor(CURSOR_NAME, rows[-1]["id"]) if has_more and rows else None
    return items, next_cursor
