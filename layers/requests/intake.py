"""Intake (居民点单): place, find duplicates, offer, set the deadline, record — in one write.

The hot path of the product: for a point in a grid, two round trips (everything read, then
one INSERT statement for everything written, its own transaction) and no ORM objects. The
status and the first events come from the action table (``events.intake_events``); the
recipients from the same rules as the runner's (``layers.requests.recipients``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from layers.requests.events import INTAKE_INSERT_SQL, intake_events
from layers.requests.idempotency import Idempotency, claim_key, record_response
from layers.requests.models import OPEN_STATUSES_SQL
from layers.requests.offers import (
    DEFAULT_K,
    STRAIGHT_LINE,
    CandidateBatch,
    candidate_columns_sql,
    first_batch_size,
    rank_volunteers,
    straight_metres,
)
from layers.requests.placement import (
    AT_POINT_SQL,
    GRID_AT_POINT_SQL,
    Placement,
    grid_placement,
    intake_point,
    locate,
)
from layers.requests.recipients import addressees, level_people, outbox_rows
from layers.requests.rules import deadline_hours
from layers.requests.schemas import (
    DEFAULT_TZ,
    IntakeInput,
    iso,
    location,
    new_ticket,
    now_utc,
    ticket_hash,
)
from layers.requests.states import OwnerLevel
from layers.requests.workflow import MACHINE
from layers.transactions import single_statement_writes, unit_of_work

logger = logging.getLogger(__name__)

DUPLICATE_RADIUS_M = 250.0
DUPLICATE_LIMIT = 10  # possible duplicates shown at intake, nearest first
_M_PER_DEG_LAT = 111_320.0


# Everything intake reads, in one round trip: the grid at the point, the new id, the
# possible duplicates (the open statuses spelt out as in the partial index, so the planner
# uses it) and the offer's first candidates. Both LIMITs are literals so that the prepared
# statement keeps one generic plan (see ``offers.candidate_columns_sql``).
@functools.lru_cache(maxsize=16)
def _intake_reads_sql(n_near: int, n: int) -> TextClause:
    return text(
        f"{AT_POINT_SQL}, placed AS ({GRID_AT_POINT_SQL})"
        " SELECT placed.*, nextval(pg_get_serial_sequence('requests', 'id')) AS new_id,"
        " (SELECT coalesce(json_agg(json_build_array(id, number, status, ST_X(geom),"
        " ST_Y(geom))), '[]') FROM (SELECT id, number, status, geom FROM requests"
        f" WHERE {OPEN_STATUSES_SQL} AND category = :category"
        " AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        " ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
        f" LIMIT {int(n_near)}) near) AS near, {candidate_columns_sql(n)}"
        " FROM (SELECT 1) AS one LEFT JOIN placed ON true"
    )


@dataclass(frozen=True)
class IntakeReads:
    """What intake reads at a point, in one round trip."""

    request_id: int
    placement: Placement | None  # None: in no live grid (community triage or outside)
    duplicates: list[dict[str, Any]]
    candidates: CandidateBatch


def _intake_reads(
    session: Session,
    lonlat: tuple[float, float],
    category: str,
    *,
    k: int,
    radius_m: float = DUPLICATE_RADIUS_M,
    limit: int = DUPLICATE_LIMIT,
) -> IntakeReads:
    """The live grid at ``lonlat``, the new request's id, the possible duplicates and the
    offer's first candidates.

    Possible duplicates: the ``limit`` nearest open requests of the same category within
    ``radius_m`` (UTM metres), nearest first. Read nearest first by lon/lat distance from the
    partial (category, geom) index of open requests, ``3 × limit`` of them, then measured and
    cut in metres: lon/lat distance orders points at most a factor cos(lat) apart from
    metres, so in a crowd the 10th may be one a few metres farther than it should; a hint
    for a person, not a ranking."""
    lon, lat = lonlat
    dlat = radius_m / _M_PER_DEG_LAT * 1.01
    dlon = radius_m / (_M_PER_DEG_LAT * max(math.cos(math.radians(lat)), 0.05)) * 1.01
    n = first_batch_size(k)
    row = session.execute(
        _intake_reads_sql(3 * limit, n),
        {
            "category": category,
            "lon": lon,
            "lat": lat,
            "x0": lon - dlon,
            "y0": lat - dlat,
            "x1": lon + dlon,
            "y1": lat + dlat,
        },
    ).one()
    near = row.near
    dist = straight_metres(lonlat, [r[3] for r in near], [r[4] for r in near]).tolist()
    duplicates = [
        {"id": r[0], "number": r[1], "status": r[2], "distance_m": round(d, 1)}
        for r, d in zip(near, dist, strict=True)
        if d <= radius_m
    ]
    duplicates.sort(key=lambda x: (x["distance_m"], x["id"]))
    return IntakeReads(
        request_id=int(row.new_id),
        placement=grid_placement(lon, lat, row) if row.id is not None else None,
        duplicates=duplicates[:limit],
        candidates=CandidateBatch.from_row(row, n),
    )


@dataclass
class SubmitOutcome:
    """The answer to a submission. The body counts the volunteers offered but names none
    (who and how far: the request's offers, shown by the detail view per role)."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False
    request_id: int | None = None
    ticket: str | None = field(default=None, repr=False)


def request_number(request_id: int, created_at: datetime, tz: str) -> str:
    """Short human number: local date and the id, e.g. 250517-000123."""
    return f"{created_at.astimezone(ZoneInfo(tz)):%y%m%d}-{request_id:06d}"


def submit_request(
    *,
    session: Session,
    intake: IntakeInput,
    now: datetime | None = None,
    tz: str = DEFAULT_TZ,
    k: int = DEFAULT_K,
    idempotency: Idempotency | None = None,
    actor_user_id: int | None = None,
    source: str = "api",
) -> SubmitOutcome:
    """Intake in one transaction: place, offer, find duplicates, set the deadline, append the
    first events and the outbox rows. 422 ``outside_jurisdiction`` stores nothing. With an
    Idempotency-Key the key row is written too (then not a single statement)."""
    now = now_utc(now)
    atomic = unit_of_work if idempotency is not None else single_statement_writes
    with atomic(session):
        if idempotency is not None:
            replay = claim_key(session, idempotency, now)
            if replay is not None:
                session.rollback()
                return SubmitOutcome(
                    status_code=replay.status_code,
                    body=replay.body,
                    replayed=True,
                    request_id=replay.request_id,
                    ticket=replay.body.get("ticket"),
                )
        point = intake_point(session, intake)
        reads = _intake_reads(session, point, intake.category, k=k) if point else None
        if reads is not None and reads.placement is not None:
            placed = reads.placement
        else:  # community triage, or the 422 that explains why not
            placed = locate(session, intake, point)
        assert reads is not None  # locate raises when there is no point
        owner = OwnerLevel.GRID if placed.grid_id is not None else OwnerLevel.COMMUNITY
        deadline = now + timedelta(hours=deadline_hours(intake.category, OwnerLevel.GRID))
        duplicates = reads.duplicates
        ticket = new_ticket(reads.request_id)
        number = request_number(reads.request_id, now, tz)
        ranked: list[Any] = []
        method = STRAIGHT_LINE
        if placed.grid_id is not None:
            ranked, method = rank_volunteers(
                session=session,
                lonlat=(placed.lon, placed.lat),
                category=intake.category,
                now=now,
                tz=tz,
                k=k,
                first=reads.candidates,
            )
            action = "assign"
            data: dict[str, Any] = {
                "grid_code": placed.grid_code,
                "offered": [r.volunteer_id for r in ranked],
            }
            note = None
        else:
            action = "triage"
            data = {"community_code": placed.community_code, "grid_gap": True}
            note = "不在任何网格内：转社区分派（网格空缺已提示规划人员）"
        notify = MACHINE.action(action).notify
        assert notify is not None
        users, volunteers = addressees(
            notify.to,
            grid_team=lambda: placed.grid_people,
            owner=lambda: (
                placed.grid_people
                if owner == OwnerLevel.GRID
                else level_people(session, placed.community_id, owner.value)
            ),
            offered=[r.volunteer_id for r in ranked],
        )
        recipients = outbox_rows(users, volunteers, unaddressed=notify.unaddressed)
        status, events_json = intake_events(
            action,
            resident_user_id=actor_user_id,
            submit_data={
                "deadline": deadline.isoformat(),
                "category": intake.category,
                "grid_code": placed.grid_code,
                "community_code": placed.community_code,
                "possible_duplicates": [d["id"] for d in duplicates],  # staff see them
            },
            note=note,
            data=data,
        )
        session.execute(
            INTAKE_INSERT_SQL,
            {
                "id": reads.request_id,
                "number": number,
                "ticket_hash": ticket_hash(ticket),
                "category": intake.category,
                "text": intake.text,
                "contact_name": intake.contact_name,
                "contact_phone": intake.contact_phone,
                "status": status,
                "owner_level": owner.value,
                "grid_id": placed.grid_id,
                "community_id": placed.community_id,
                "building_code": intake.building_code,
                "deadline": deadline,
                "source": source,
                "lon": placed.lon,
                "lat": placed.lat,
                "now": now,
                "events": events_json,
                "method": method,
                "offer_ids": [r.volunteer_id for r in ranked],
                "offer_ranks": [r.rank for r in ranked],
                "offer_m": [r.distance_m for r in ranked],
                "kind": notify.kind,
                "notify": MACHINE.action(action).event_name,
                "recipients": json.dumps(recipients),
            },
        )
        body = {
            "id": reads.request_id,
            "number": number,
            "ticket": ticket,
            "status": status,
            "category": intake.category,
            "owner_level": owner.value,
            "grid": (
                {"code": placed.grid_code, "name": placed.grid_name} if placed.grid_id else None
            ),
            "community": {"code": placed.community_code, "name": placed.community_name},
            "location": location(placed.lon, placed.lat),
            "deadline": iso(deadline, tz),
            "offered_count": len(ranked),  # not who or where (the detail view shows them)
            "distance_method": method,
            # how many, not which or where: ids and metres would locate other residents'
            # requests (an elderly person living alone); staff see them in the detail
            "possible_duplicate_count": len(duplicates),
        }
        if idempotency is not None:
            record_response(session, idempotency, 201, body, reads.request_id)
    logger.info("request %s submitted: %s %s", number, status, placed.grid_code)
    return SubmitOutcome(status_code=201, body=body, request_id=reads.request_id, ticket=ticket)
