"""The people's-affairs pipeline (民情流水线): intake and every workflow action.

Keyword-only functions taking ``session=``; each owns its transaction (commits on success,
rolls back on any error, so nothing is ever half-written). Legality of every action comes from
the transition table in ``layers.requests.workflow``; this module never lists transitions.

Time: ``now`` defaults to the current UTC instant; pass one for replays and tests. Deadlines
are calendar hours; the configured zone ``tz`` is only used to show times and read weekly
availability.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, TextClause, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from geo.crs import to_wgs84
from layers.auth.models import RoleBinding
from layers.auth.permissions import Grant
from layers.auth.pii import mask_name
from layers.display_crs import bbox_to_wgs84, lonlat_to_display
from layers.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from layers.features import LIVE_GRIDS, decode_cursor, encode_cursor
from layers.grids.models import Grid
from layers.requests.models import (
    OPEN_STATUSES_SQL,
    IdempotencyKey,
    Notification,
    Request,
    RequestEvent,
    RequestOffer,
)
from layers.requests.offers import (
    DEFAULT_K,
    STRAIGHT_LINE,
    CandidateBatch,
    candidate_columns_sql,
    distance_to_volunteers,
    first_batch_size,
    rank_volunteers,
    straight_metres,
)
from layers.requests.rules import categories_by_code, deadline_hours, next_level, points_for
from layers.requests.schemas import (
    MAX_NOTE_CHARS,
    IntakeInput,
    contact_view,
    iso,
    lonlat_in_range,
    new_ticket,
    optional_str,
    parse_rating,
    required_str,
    ticket_hash,
    ticket_request_id,
)
from layers.requests.workflow import (
    OPEN,
    TRANSITIONS,
    OwnerLevel,
    Status,
    allowed_actions,
    next_status,
)
from layers.volunteers.models import Volunteer

logger = logging.getLogger(__name__)

DEFAULT_TZ = "Asia/Shanghai"
DUPLICATE_RADIUS_M = 250.0
DUPLICATE_LIMIT = 10  # possible duplicates shown at intake, nearest first
AUTO_CLOSE_AFTER = timedelta(days=7)
IDEMPOTENCY_TTL = timedelta(hours=24)
REOPEN_AT_OR_BELOW = 2
_M_PER_DEG_LAT = 111_320.0
_OPEN = sorted(s.value for s in OPEN)
_HOLDS_LOAD = (Status.CLAIMED.value, Status.IN_PROGRESS.value)


# -- actors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in account with its grant for the action, a resident holding a
    ticket, or the system (deadline job, automatic follow-ups)."""

    kind: str  # "user" | "resident" | "system"
    user_id: int | None = None
    grant: Grant | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(kind="system")

    @classmethod
    def resident(cls) -> Actor:
        return cls(kind="resident")


@contextmanager
def _unit_of_work(session: Session) -> Iterator[None]:
    """Each service call owns its transaction: commit on success, roll back on any error."""
    try:
        yield
        session.commit()
    except Exception:
        session.rollback()
        raise


@contextmanager
def _single_statement_writes(session: Session) -> Iterator[None]:
    """For work whose writes are ONE statement: run without BEGIN / COMMIT round trips (the
    statement is its own transaction, atomic as any), when the session has not started a
    transaction on an engine of its own; otherwise (tests binding a session to an outer
    transaction, a caller mid-transaction) as a unit of work."""
    if session.in_transaction() or not isinstance(session.get_bind(), Engine):
        with _unit_of_work(session):
            yield
        return
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield
    finally:
        session.close()  # gives the connection back, its isolation level reset


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _volunteer_id_of(session: Session, user_id: int | None) -> int | None:
    if user_id is None:
        return None
    return session.scalar(select(Volunteer.id).where(Volunteer.user_id == user_id))


def _in_subtree(session: Session, community_id: int | None, area_ids: Iterable[int]) -> bool:
    if community_id is None or not area_ids:
        return False
    return bool(
        session.scalar(
            text(
                "WITH RECURSIVE up AS (SELECT id, parent_id FROM areas WHERE id = :c"
                " UNION SELECT a.id, a.parent_id FROM areas a JOIN up ON a.id = up.parent_id)"
                " SELECT EXISTS (SELECT 1 FROM up WHERE id = ANY(:areas))"
            ),
            {"c": community_id, "areas": sorted(area_ids)},
        )
    )


def _grid_code(session: Session, grid_id: int | None) -> str | None:
    return session.scalar(select(Grid.code).where(Grid.id == grid_id)) if grid_id else None


def _is_offered(session: Session, request_id: int, volunteer_id: int | None) -> bool:
    if volunteer_id is None:
        return False
    return (
        session.scalar(
            select(RequestOffer.rank).where(
                RequestOffer.request_id == request_id, RequestOffer.volunteer_id == volunteer_id
            )
        )
        is not None
    )


@dataclass(frozen=True)
class Access:
    """How an actor reaches one request: through staff scope, as its volunteer, or not."""

    staff: bool
    volunteer_id: int | None
    offered: bool
    assignee: bool

    @property
    def any(self) -> bool:
        return self.staff or self.offered or self.assignee


def access_to(session: Session, actor: Actor, req: Request) -> Access:
    """Evaluate the actor's grant against one request (DESIGN: scopes of §1)."""
    grant = actor.grant
    if actor.kind == "system":
        return Access(staff=True, volunteer_id=None, offered=False, assignee=False)
    if grant is None:
        return Access(staff=False, volunteer_id=None, offered=False, assignee=False)
    staff = (
        grant.everything
        or _in_subtree(session, req.community_id, grant.area_ids)
        or (bool(grant.grid_codes) and _grid_code(session, req.grid_id) in grant.grid_codes)
    )
    vid = _volunteer_id_of(session, actor.user_id) if grant.own else None
    assignee = vid is not None and req.assignee_id == vid
    offered = vid is not None and _is_offered(session, req.id, vid)
    return Access(staff=staff, volunteer_id=vid, offered=offered, assignee=assignee)


def _pii_for(grant: Grant | None, access: Access) -> bool:
    """Name and phone: the assignee, the grid's leader and staff above; masked otherwise."""
    return access.assignee or (grant is not None and grant.pii and access.staff)


# -- events and notifications ---------------------------------------------------------------
def _append_event(
    session: Session,
    req: Request,
    *,
    action: str,
    from_status: str | None,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    event_action: str | None = None,
) -> RequestEvent:
    actor_kind = actor.kind
    event = RequestEvent(
        request_id=req.id,
        at=now,
        actor_user_id=actor.user_id,
        actor_kind=actor_kind,
        action=event_action or action,
        from_status=from_status,
        to_status=req.status,
        owner_level=req.owner_level,
        note=note,
        data=data or {},
    )
    session.add(event)
    session.flush()
    return event


def _transition(
    session: Session,
    req: Request,
    action: str,
    *,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    event_action: str | None = None,
    before: Callable[[], None] | None = None,
) -> RequestEvent:
    """Move ``req`` by ``action`` (409 ``illegal_transition`` naming the allowed ones)."""
    target = next_status(req.status, action)
    if target is None:
        raise Conflict(
            "illegal_transition",
            action=action,
            status=req.status,
            allowed=allowed_actions(req.status),
        )
    if before is not None:
        before()
    from_status = req.status
    req.status = target.value
    req.updated_at = now
    return _append_event(
        session,
        req,
        action=action,
        from_status=from_status,
        actor=actor,
        now=now,
        note=note,
        data=data,
        event_action=event_action,
    )


def _notify(
    session: Session,
    event: RequestEvent,
    kind: str,
    *,
    users: Iterable[int | None] = (),
    volunteers: Iterable[int | None] = (),
) -> int:
    """Outbox rows for everyone who must act on ``event`` (addressed as ``_recipients``)."""
    rows = [
        Notification(
            event_id=event.id, recipient_user_id=r["u"], recipient_volunteer_id=r["v"], kind=kind
        )
        for r in _recipients(users, volunteers)
    ]
    session.add_all(rows)
    return len(rows)


def _recipients(users: Iterable[int | None], volunteers: Iterable[int | None]) -> list[dict]:
    """Outbox addressees, each once; one unaddressed row if nobody is known, so the work is
    never invisible."""
    rows = [{"u": u, "v": None} for u in dict.fromkeys(u for u in users if u is not None)]
    rows += [{"u": None, "v": v} for v in dict.fromkeys(v for v in volunteers if v is not None)]
    return rows or [{"u": None, "v": None}]


# The leader of grid ``g`` (its row) and the accounts bound as its leader, leader first.
_GRID_PEOPLE_SQL = (
    "array_remove(g.leader_user_id || ARRAY(SELECT rb.user_id FROM role_bindings rb"
    " WHERE rb.grid_code = g.code AND rb.role_code = 'grid_leader' ORDER BY rb.user_id), NULL)"
)


def _grid_people(session: Session, grid_id: int | None) -> list[int]:
    """The grid's leader (grid row) and the accounts bound as its leader."""
    if grid_id is None:
        return []
    people = session.scalar(
        text(f"SELECT {_GRID_PEOPLE_SQL} FROM grids g WHERE g.id = :g"), {"g": grid_id}
    )
    return list(people or [])


def _level_area_id(session: Session, community_id: int | None, level: str) -> int | None:
    """The area owning a request at ``level`` (community, its street, or the district)."""
    area_id = community_id
    steps = {"community": 0, "street": 1, "district": 2}.get(level, 0)
    for _ in range(steps):
        if area_id is None:
            return None
        area_id = session.scalar(text("SELECT parent_id FROM areas WHERE id = :a"), {"a": area_id})
    return area_id


def _owner_people(session: Session, req: Request) -> list[int]:
    """Who must act on a request at its current owner level."""
    if req.owner_level == OwnerLevel.GRID:
        return _grid_people(session, req.grid_id)
    return _level_people(session, req.community_id, req.owner_level)


def _level_people(session: Session, community_id: int | None, level: str) -> list[int]:
    """Staff bound to the area owning a request of ``community_id`` at ``level``."""
    area_id = _level_area_id(session, community_id, level)
    if area_id is None:
        return []
    return list(
        session.scalars(
            select(RoleBinding.user_id)
            .where(
                RoleBinding.area_id == area_id,
                RoleBinding.role_code.in_(("community_staff", "street_staff")),
            )
            .order_by(RoleBinding.user_id)
        ).all()
    )


# -- location ---------------------------------------------------------------------------------
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
_AT_POINT_SQL = "WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS p)"
# The live grid covering pt.p (lowest code on a border), its community and its leaders.
_GRID_AT_POINT_SQL = (
    "SELECT g.id, g.code, g.name, c.id AS cid, c.code AS ccode, c.name AS cname,"
    f" {_GRID_PEOPLE_SQL} AS people"
    " FROM grids g JOIN areas c ON c.id = g.community_id, pt"
    f" WHERE ST_Covers(g.geom, pt.p) AND {LIVE_GRIDS} ORDER BY g.code LIMIT 1"
)
_PLACE_GRID_SQL = text(f"{_AT_POINT_SQL} {_GRID_AT_POINT_SQL}")
_PLACE_COMMUNITY_SQL = text(
    "SELECT id, code, name FROM areas WHERE level = 'community'"
    " AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
    " ORDER BY code LIMIT 1"
)
_BUILDING_POINT_SQL = text(
    "SELECT ST_X(rep_point) AS lon, ST_Y(rep_point) AS lat FROM buildings WHERE code = :c"
)


def _grid_placement(lon: float, lat: float, row: Any) -> Placement:
    return Placement(
        lon, lat, row.id, row.code, row.name, row.cid, row.ccode, row.cname, tuple(row.people)
    )


def _place(session: Session, lon: float, lat: float) -> Placement | None:
    """The live grid covering the point (lowest code on a border) or, failing that, the
    community; None outside every community."""
    row = session.execute(_PLACE_GRID_SQL, {"lon": lon, "lat": lat}).first()
    if row is not None:
        return _grid_placement(lon, lat, row)
    row = session.execute(_PLACE_COMMUNITY_SQL, {"lon": lon, "lat": lat}).first()
    if row is None:
        return None
    return Placement(lon, lat, None, None, None, row.id, row.code, row.name)


def _intake_point(session: Session, intake: IntakeInput) -> tuple[float, float] | None:
    """WGS84 lon/lat of an intake: its building's point, or its coordinates converted; None
    when the coordinates are out of range (``_locate`` says why)."""
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


def _locate(session: Session, intake: IntakeInput, point: tuple[float, float] | None) -> Placement:
    """WGS84 placement of an intake at ``point`` (``_intake_point``), diagnosing swapped
    lon/lat and outside points."""
    if point is not None:
        placed = _place(session, *point)
        if placed is not None:
            return placed
        if intake.building_code is not None:
            raise Unprocessable("outside_jurisdiction", lon=point[0], lat=point[1])
    raw_lon, raw_lat = intake.lon, intake.lat
    assert raw_lon is not None and raw_lat is not None
    # Not placeable as given: would the swapped order land inside? Then say so.
    if lonlat_in_range(raw_lat, raw_lon):
        s_lon, s_lat = to_wgs84(raw_lat, raw_lon, intake.crs)
        if _place(session, s_lon, s_lat) is not None:
            raise Unprocessable("swapped_coordinates", lon=raw_lon, lat=raw_lat)
    if not lonlat_in_range(raw_lon, raw_lat):
        raise Unprocessable("coordinates_out_of_range", lon=raw_lon, lat=raw_lat)
    raise Unprocessable("outside_jurisdiction", lon=raw_lon, lat=raw_lat)


# Everything intake reads, in one round trip: the grid at the point, the new id, the
# possible duplicates (the open statuses spelt out as in the partial index, so the planner
# uses it) and the offer's first candidates. Both LIMITs are literals so that the prepared
# statement keeps one generic plan (see ``offers.candidate_columns_sql``).
@functools.lru_cache(maxsize=16)
def _intake_reads_sql(n_near: int, n: int) -> TextClause:
    return text(
        f"{_AT_POINT_SQL}, placed AS ({_GRID_AT_POINT_SQL})"
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
        placement=_grid_placement(lon, lat, row) if row.id is not None else None,
        duplicates=duplicates[:limit],
        candidates=CandidateBatch.from_row(row, n),
    )


# -- offers -----------------------------------------------------------------------------------
def _make_offers(
    session: Session, req: Request, *, now: datetime, tz: str, k: int
) -> list[dict[str, Any]]:
    """Replace the request's offers by the current top ``k`` (each view names the method)."""
    lonlat = session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM requests WHERE id = :i"), {"i": req.id}
    ).one()
    ranked, method = rank_volunteers(
        session=session,
        lonlat=(lonlat[0], lonlat[1]),
        category=req.category,
        now=now,
        tz=tz,
        k=k,
    )
    session.execute(delete(RequestOffer).where(RequestOffer.request_id == req.id))
    session.add_all(
        RequestOffer(
            request_id=req.id,
            volunteer_id=r.volunteer_id,
            rank=r.rank,
            distance_m=r.distance_m,
            distance_method=method,
            offered_at=now,
        )
        for r in ranked
    )
    return _offer_views(ranked, method)


def _offer_views(ranked: list[Any], method: str) -> list[dict[str, Any]]:
    """Offered volunteers as shown at intake: names masked."""
    return [
        {
            "volunteer_id": r.volunteer_id,
            "name": mask_name(r.name),
            "rank": r.rank,
            "distance_m": r.distance_m,
            "distance_method": method,
        }
        for r in ranked
    ]


# -- intake -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Idempotency:
    scope: str  # "user:<id>" or "addr:<client address>"
    key: str
    body_sha256: str


@dataclass
class SubmitOutcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False
    request_id: int | None = None
    ticket: str | None = field(default=None, repr=False)


def _claim_idempotency_key(
    session: Session, idem: Idempotency, now: datetime
) -> SubmitOutcome | None:
    """Reserve the key (row lock until commit) or return the replay / raise the conflict."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == idem.scope,
            IdempotencyKey.key == idem.key,
            IdempotencyKey.created_at < now - IDEMPOTENCY_TTL,
        )
    )
    inserted = session.execute(
        pg_insert(IdempotencyKey)
        .values(
            scope=idem.scope,
            key=idem.key,
            body_sha256=idem.body_sha256,
            status_code=0,
            response={},
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotencyKey.key)
    ).first()
    if inserted is not None:
        return None
    row = session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.scope == idem.scope, IdempotencyKey.key == idem.key
        )
    ).scalar_one()
    if row.body_sha256 != idem.body_sha256:
        raise Conflict("idempotency_conflict", key=idem.key)
    return SubmitOutcome(
        status_code=row.status_code, body=row.response, replayed=True, request_id=row.request_id
    )


def request_number(request_id: int, created_at: datetime, tz: str) -> str:
    """Short human number: local date and the id, e.g. 250517-000123."""
    return f"{created_at.astimezone(ZoneInfo(tz)):%y%m%d}-{request_id:06d}"


# Intake writes in one statement: the request, its first events in order, the offers, and the
# outbox rows of the event someone must act on (``notify`` names its action).
_INTAKE_INSERT_SQL = text(
    "WITH r AS (INSERT INTO requests (id, number, ticket_hash, category, text, contact_name,"
    " contact_phone, status, owner_level, grid_id, community_id, building_code, deadline_at,"
    " original_deadline_at, source, geom, created_at, updated_at)"
    " VALUES (:id, :number, :ticket_hash, :category, :text, :contact_name, :contact_phone,"
    " :status, :owner_level, :grid_id, :community_id, :building_code, :deadline, :deadline,"
    " :source, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :now, :now) RETURNING id),"
    " e AS (INSERT INTO request_events (request_id, at, actor_user_id, actor_kind, action,"
    " from_status, to_status, owner_level, note, data)"
    " SELECT r.id, :now, x.actor_user_id, x.actor_kind, x.action, x.from_status, x.to_status,"
    " :owner_level, x.note, x.data FROM r, jsonb_to_recordset(CAST(:events AS jsonb)) AS"
    " x(ord int, actor_user_id bigint, actor_kind text, action text, from_status text,"
    " to_status text, note text, data jsonb) ORDER BY x.ord RETURNING id, action),"
    " o AS (INSERT INTO request_offers (request_id, volunteer_id, rank, distance_m,"
    " distance_method, offered_at) SELECT r.id, x.v, x.rank, x.d, :method, :now FROM r,"
    " unnest(CAST(:offer_ids AS bigint[]), CAST(:offer_ranks AS int[]),"
    " CAST(:offer_m AS float8[])) AS x(v, rank, d))"
    " INSERT INTO notifications (event_id, recipient_user_id, recipient_volunteer_id, kind)"
    " SELECT e.id, x.u, x.v, :kind FROM e, jsonb_to_recordset(CAST(:recipients AS jsonb)) AS"
    " x(u bigint, v bigint) WHERE e.action = :notify"
)


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
    first events and the outbox rows. 422 ``outside_jurisdiction`` stores nothing.

    The hot path of the product: for a point in a grid, two round trips (everything read,
    then one INSERT statement for everything written, its own transaction) and no ORM
    objects. With an Idempotency-Key the key row is written too: one transaction."""
    now = _now(now)
    atomic = _unit_of_work if idempotency is not None else _single_statement_writes
    with atomic(session):
        if idempotency is not None:
            replay = _claim_idempotency_key(session, idempotency, now)
            if replay is not None:
                session.rollback()
                return replay
        point = _intake_point(session, intake)
        reads = _intake_reads(session, point, intake.category, k=k) if point else None
        if reads is not None and reads.placement is not None:
            placed = reads.placement
        else:  # community triage, or the 422 that explains why not
            placed = _locate(session, intake, point)
        assert reads is not None  # _locate raises when there is no point
        lonlat = (placed.lon, placed.lat)
        owner = OwnerLevel.GRID if placed.grid_id is not None else OwnerLevel.COMMUNITY
        deadline = now + timedelta(hours=deadline_hours(intake.category, OwnerLevel.GRID))
        duplicates = reads.duplicates
        ticket = new_ticket(reads.request_id)
        number = request_number(reads.request_id, now, tz)
        submit_event = {
            "ord": 0,
            "actor_user_id": actor_user_id,
            "actor_kind": "user" if actor_user_id else "resident",
            "action": "submit",
            "from_status": None,
            "to_status": Status.SUBMITTED.value,
            "note": None,
            "data": {
                "deadline": deadline.isoformat(),
                "category": intake.category,
                "grid_code": placed.grid_code,
                "community_code": placed.community_code,
                "possible_duplicates": [d["id"] for d in duplicates],
            },
        }
        ranked: list[Any] = []
        method = STRAIGHT_LINE
        if placed.grid_id is not None:
            ranked, method = rank_volunteers(
                session=session,
                lonlat=lonlat,
                category=intake.category,
                now=now,
                tz=tz,
                k=k,
                first=reads.candidates,
            )
            action, kind = "assign", "assigned"
            data: dict[str, Any] = {
                "grid_code": placed.grid_code,
                "offered": [r.volunteer_id for r in ranked],
            }
            note = None
            recipients = _recipients(placed.grid_people, data["offered"])
        else:
            action, kind = "triage", "triage"
            data = {"community_code": placed.community_code, "grid_gap": True}
            note = "不在任何网格内：转社区分派（网格空缺已提示规划人员）"
            people = _level_people(session, placed.community_id, OwnerLevel.COMMUNITY.value)
            recipients = _recipients(people, ())
        status = next_status(Status.SUBMITTED.value, action)
        assert status is not None  # the transition table allows assign / triage from submitted
        second_event = {
            "ord": 1,
            "actor_user_id": None,
            "actor_kind": Actor.system().kind,
            "action": action,
            "from_status": Status.SUBMITTED.value,
            "to_status": status.value,
            "note": note,
            "data": data,
        }
        session.execute(
            _INTAKE_INSERT_SQL,
            {
                "id": reads.request_id,
                "number": number,
                "ticket_hash": ticket_hash(ticket),
                "category": intake.category,
                "text": intake.text,
                "contact_name": intake.contact_name,
                "contact_phone": intake.contact_phone,
                "status": status.value,
                "owner_level": owner.value,
                "grid_id": placed.grid_id,
                "community_id": placed.community_id,
                "building_code": intake.building_code,
                "deadline": deadline,
                "source": source,
                "lon": placed.lon,
                "lat": placed.lat,
                "now": now,
                "events": json.dumps([submit_event, second_event], ensure_ascii=False),
                "method": method,
                "offer_ids": [r.volunteer_id for r in ranked],
                "offer_ranks": [r.rank for r in ranked],
                "offer_m": [r.distance_m for r in ranked],
                "kind": kind,
                "notify": action,
                "recipients": json.dumps(recipients),
            },
        )
        offers = _offer_views(ranked, method)
        body = {
            "id": reads.request_id,
            "number": number,
            "ticket": ticket,
            "status": status.value,
            "category": intake.category,
            "owner_level": owner.value,
            "grid": (
                {"code": placed.grid_code, "name": placed.grid_name} if placed.grid_id else None
            ),
            "community": {"code": placed.community_code, "name": placed.community_name},
            "location": _location(placed.lon, placed.lat),
            "deadline": iso(deadline, tz),
            "offered_volunteers": offers,
            "distance_method": method,
            "possible_duplicates": duplicates,
        }
        if idempotency is not None:
            session.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.scope == idempotency.scope,
                    IdempotencyKey.key == idempotency.key,
                )
                .values(status_code=201, response=body, request_id=reads.request_id)
            )
    logger.info("request %s submitted: %s %s", number, status.value, placed.grid_code)
    return SubmitOutcome(status_code=201, body=body, request_id=reads.request_id, ticket=ticket)


# -- workflow actions -------------------------------------------------------------------------
def _load(session: Session, request_id: int, *, lock: bool = True) -> Request:
    req = session.get(Request, request_id, with_for_update=lock, populate_existing=True)
    if req is None:
        raise NotFound("unknown_request", id=request_id)
    return req


def _release_load(session: Session, req: Request, *, clear: bool) -> None:
    """Give the assignee's load slot back when the request stops being their open work."""
    if req.assignee_id is not None and req.status in _HOLDS_LOAD:
        session.execute(
            update(Volunteer)
            .where(Volunteer.id == req.assignee_id)
            .values(active_load=text("greatest(active_load - 1, 0)"))
        )
    if clear:
        req.assignee_id = None


def _add_points(session: Session, volunteer_id: int | None, event: str) -> int:
    pts = points_for(event)
    if volunteer_id is not None and pts:
        session.execute(
            update(Volunteer)
            .where(Volunteer.id == volunteer_id)
            .values(points=Volunteer.points + pts)
        )
    return pts


def _new_deadline(req: Request, now: datetime) -> datetime:
    return now + timedelta(hours=deadline_hours(req.category, req.owner_level))


def claim_request(
    *, session: Session, request_id: int, actor: Actor, now: datetime | None = None
) -> Request:
    """First offered volunteer to claim wins atomically; the others get 409
    ``already_claimed``."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id, lock=False)
        access = access_to(session, actor, req)
        if access.volunteer_id is None:
            raise Forbidden("not_a_volunteer")
        if not access.offered:
            raise Forbidden("not_offered")
        sources, target = TRANSITIONS["claim"]
        won = session.execute(
            update(Request)
            .where(Request.id == request_id, Request.status.in_([s.value for s in sources]))
            .values(status=target.value, assignee_id=access.volunteer_id, updated_at=now)
            .returning(Request.id)
            .execution_options(synchronize_session=False)
        ).first()
        if won is None:
            session.refresh(req)
            if req.status in _HOLDS_LOAD or req.assignee_id is not None:
                raise Conflict("already_claimed", status=req.status)
            raise Conflict(
                "illegal_transition",
                action="claim",
                status=req.status,
                allowed=allowed_actions(req.status),
            )
        loaded = session.execute(
            update(Volunteer)
            .where(
                Volunteer.id == access.volunteer_id,
                Volunteer.active_load < Volunteer.load_limit,
                Volunteer.active,
            )
            .values(active_load=Volunteer.active_load + 1)
            .returning(Volunteer.id)
        ).first()
        if loaded is None:
            raise Conflict("load_limit_reached")
        pts = _add_points(session, access.volunteer_id, "claim")
        session.refresh(req)
        _append_event(
            session,
            req,
            action="claim",
            from_status=sources[0].value if len(sources) == 1 else None,
            actor=actor,
            now=now,
            data={"volunteer_id": access.volunteer_id, "points": pts},
        )
    return req


def _require_staff_or_assignee(access: Access, *, assignee_ok: bool) -> None:
    if access.staff or (assignee_ok and access.assignee):
        return
    raise Forbidden("forbidden")


def start_request(
    *, session: Session, request_id: int, actor: Actor, now: datetime | None = None
) -> Request:
    """The assignee (or staff) starts work: claimed → in_progress."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=True)
        _transition(session, req, "start", actor=actor, now=now)
    return req


def resolve_request(
    *, session: Session, request_id: int, actor: Actor, note: str, now: datetime | None = None
) -> Request:
    """Record what was done; the resident may now rate it (or it closes itself in 7 days)."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=True)

        def before() -> None:
            _release_load(session, req, clear=False)

        pts = points_for("resolve")
        _transition(
            session,
            req,
            "resolve",
            actor=actor,
            now=now,
            note=note,
            data={"volunteer_id": req.assignee_id, "points": pts if req.assignee_id else 0},
            before=before,
        )
        _add_points(session, req.assignee_id, "resolve")
        req.resolved_at = now
    return req


def _reopen(
    session: Session, req: Request, *, actor: Actor, now: datetime, note: str | None, why: str
) -> RequestEvent:
    previous = req.assignee_id
    data: dict[str, Any] = {"reason": why, "previous_assignee": previous}

    def before() -> None:
        req.assignee_id = None
        req.resolved_at = None
        req.reopen_count = (req.reopen_count or 0) + 1
        req.deadline_at = _new_deadline(req, now)
        data["deadline"] = req.deadline_at.isoformat()

    event = _transition(
        session, req, "reopen", actor=actor, now=now, note=note, data=data, before=before
    )
    _notify(session, event, "reopened", users=_owner_people(session, req), volunteers=[previous])
    return event


def reopen_request(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    note: str | None = None,
    now: datetime | None = None,
) -> Request:
    """Staff reopen a resolved or rated request: back to ``assigned`` with a new deadline."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=False)
        _reopen(session, req, actor=actor, now=now, note=note, why="staff")
    return req


def reject_request(
    *, session: Session, request_id: int, actor: Actor, reason: str, now: datetime | None = None
) -> Request:
    """Reject with a reason (not counted as received in the metrics)."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=False)
        _transition(
            session,
            req,
            "reject",
            actor=actor,
            now=now,
            note=reason,
            before=lambda: _release_load(session, req, clear=True),
        )
        req.closed_at = now
    return req


def _find_request(session: Session, ref: Any) -> Request | None:
    if isinstance(ref, int) and not isinstance(ref, bool):
        return session.get(Request, ref)
    if isinstance(ref, str) and ref.strip():
        return session.scalar(select(Request).where(Request.number == ref.strip()))
    return None


def mark_duplicate(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    duplicate_of: Any,
    note: str | None = None,
    now: datetime | None = None,
) -> Request:
    """Link to the request this one repeats (by id or number)."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=False)
        if duplicate_of is None:
            raise BadRequest("missing_field", field="duplicate_of")
        original = _find_request(session, duplicate_of)
        if original is None:
            raise Unprocessable("unknown_request", id=str(duplicate_of))
        if original.id == req.id or original.status == Status.DUPLICATE:
            raise Unprocessable(
                "invalid_field", field="duplicate_of", reason="itself or another duplicate"
            )

        def before() -> None:
            _release_load(session, req, clear=True)
            req.duplicate_of = original.id

        _transition(
            session,
            req,
            "mark_duplicate",
            actor=actor,
            now=now,
            note=note,
            data={"duplicate_of": original.id, "number": original.number},
            before=before,
        )
        req.closed_at = now
    return req


def _live_grid(session: Session, code: Any) -> Grid:
    if not isinstance(code, str) or not code.strip():
        raise BadRequest("missing_field", field="grid_code")
    grid = session.scalar(
        select(Grid).from_statement(
            text(f"SELECT g.* FROM grids g WHERE g.code = :c AND {LIVE_GRIDS} LIMIT 1")
        ),
        {"c": code.strip()},
    )
    if grid is None:
        raise Unprocessable("unknown_grid", code=code)
    return grid


def _send_to_grid(
    session: Session, req: Request, grid: Grid, *, now: datetime, tz: str, k: int
) -> list[dict[str, Any]]:
    req.grid_id = grid.id
    req.community_id = grid.community_id
    req.owner_level = OwnerLevel.GRID.value
    return _make_offers(session, req, now=now, tz=tz, k=k)


def assign_request(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    grid_code: str,
    note: str | None = None,
    now: datetime | None = None,
    tz: str = DEFAULT_TZ,
    k: int = DEFAULT_K,
) -> Request:
    """Community / street staff hand a triaged request to a grid (the deadline keeps running)."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=False)
        grid = _live_grid(session, grid_code)
        offers: list[dict[str, Any]] = []
        data: dict[str, Any] = {"grid_code": grid.code}

        def before() -> None:
            offers.extend(_send_to_grid(session, req, grid, now=now, tz=tz, k=k))
            data["offered"] = [o["volunteer_id"] for o in offers]

        event = _transition(
            session, req, "assign", actor=actor, now=now, note=note, data=data, before=before
        )
        _notify(
            session,
            event,
            "assigned",
            users=_grid_people(session, req.grid_id),
            volunteers=[o["volunteer_id"] for o in offers],
        )
    return req


def reassign_request(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    volunteer_id: int | None = None,
    grid_code: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
    tz: str = DEFAULT_TZ,
    k: int = DEFAULT_K,
) -> Request:
    """A leader hands open work to another volunteer (sole offer) or another grid."""
    now = _now(now)
    if (volunteer_id is None) == (grid_code is None):
        raise BadRequest("missing_field", field="volunteer_id or grid_code (exactly one)")
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=False)
        volunteers: list[int] = []
        data: dict[str, Any] = {}
        target_grid = _live_grid(session, grid_code) if grid_code is not None else None
        vol = None
        if volunteer_id is not None:
            if isinstance(volunteer_id, bool) or not isinstance(volunteer_id, int):
                raise BadRequest("invalid_field", field="volunteer_id", reason="an integer")
            vol = session.get(Volunteer, volunteer_id)
            if vol is None or not vol.active:
                raise Unprocessable("unknown_volunteer", id=volunteer_id)
            if vol.active_load >= vol.load_limit:
                raise Conflict("load_limit_reached")

        def before() -> None:
            _release_load(session, req, clear=True)
            req.deadline_at = None
            if target_grid is not None:
                offers = _send_to_grid(session, req, target_grid, now=now, tz=tz, k=k)
                volunteers.extend(o["volunteer_id"] for o in offers)
                data["grid_code"] = target_grid.code
            else:
                assert vol is not None
                session.execute(delete(RequestOffer).where(RequestOffer.request_id == req.id))
                lonlat = session.execute(
                    text(
                        "SELECT ST_X(r.geom), ST_Y(r.geom), ST_X(v.geom), ST_Y(v.geom)"
                        " FROM requests r, volunteers v WHERE r.id = :r AND v.id = :v"
                    ),
                    {"r": req.id, "v": vol.id},
                ).one()
                dist, method = distance_to_volunteers(
                    session=session,
                    lonlat=(lonlat[0], lonlat[1]),
                    targets_lonlat=[(vol.id, lonlat[2], lonlat[3])],
                    limit_m=math.inf,  # a volunteer chosen by hand: their real distance
                )
                session.add(
                    RequestOffer(
                        request_id=req.id,
                        volunteer_id=vol.id,
                        rank=1,
                        distance_m=round(dist[vol.id], 1),
                        distance_method=method,
                        offered_at=now,
                    )
                )
                volunteers.append(vol.id)
                data["volunteer_id"] = vol.id
            req.deadline_at = _new_deadline(req, now)
            data["deadline"] = req.deadline_at.isoformat()

        event = _transition(
            session, req, "reassign", actor=actor, now=now, note=note, data=data, before=before
        )
        _notify(
            session,
            event,
            "reassigned",
            users=_grid_people(session, req.grid_id) if target_grid is not None else (),
            volunteers=volunteers,
        )
    return req


def _escalate(
    session: Session, req: Request, *, actor: Actor, now: datetime, note: str | None, why: str
) -> RequestEvent:
    target = next_level(req.owner_level)
    if target is None:
        raise Conflict("cannot_escalate", owner_level=req.owner_level)
    data: dict[str, Any] = {"reason": why, "from_level": req.owner_level, "to_level": target.value}

    def before() -> None:
        _release_load(session, req, clear=True)
        req.owner_level = target.value
        req.deadline_at = _new_deadline(req, now)
        data["deadline"] = req.deadline_at.isoformat()

    event = _transition(
        session, req, "escalate", actor=actor, now=now, note=note, data=data, before=before
    )
    _notify(session, event, "escalated", users=_owner_people(session, req))
    return event


def escalate_request(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    note: str | None = None,
    now: datetime | None = None,
) -> Request:
    """By hand: one level up (grid → community → street → district), new level deadline."""
    now = _now(now)
    with _unit_of_work(session):
        req = _load(session, request_id)
        _require_staff_or_assignee(access_to(session, actor, req), assignee_ok=False)
        _escalate(session, req, actor=actor, now=now, note=note, why="by hand")
    return req


def _by_ticket(session: Session, ticket: str, *, lock: bool) -> Request:
    """The request a ticket opens: found by the id it names, opened only if the whole
    ticket's hash matches (compared in constant time)."""
    request_id = ticket_request_id(ticket) if isinstance(ticket, str) else None
    if request_id is None:
        raise NotFound("unknown_ticket")
    req = session.get(Request, request_id, with_for_update=lock, populate_existing=True)
    if req is None or not hmac.compare_digest(req.ticket_hash, ticket_hash(ticket)):
        raise NotFound("unknown_ticket")
    return req


def rate_by_ticket(
    *,
    session: Session,
    ticket: str,
    rating: int,
    comment: str | None = None,
    now: datetime | None = None,
) -> Request:
    """The resident rates the resolution: ≥ 3 closes it, ≤ 2 reopens it automatically."""
    now = _now(now)
    with _unit_of_work(session):
        req = _by_ticket(session, ticket, lock=True)
        pts = points_for(f"rating_{rating}")

        def before() -> None:
            req.rating = rating
            req.rating_comment = comment

        _transition(
            session,
            req,
            "rate",
            actor=Actor.resident(),
            now=now,
            note=comment,
            data={"rating": rating, "volunteer_id": req.assignee_id, "points": pts},
            before=before,
        )
        _add_points(session, req.assignee_id, f"rating_{rating}")
        if rating <= REOPEN_AT_OR_BELOW:
            _reopen(
                session,
                req,
                actor=Actor.system(),
                now=now,
                note=f"居民评价 {rating} 星（≤ {REOPEN_AT_OR_BELOW} 星自动重新办理）",
                why="low_rating",
            )
        else:
            _transition(
                session, req, "close", actor=Actor.system(), now=now, data={"rating": rating}
            )
            req.closed_at = now
    return req


def withdraw_by_ticket(
    *, session: Session, ticket: str, note: str | None = None, now: datetime | None = None
) -> Request:
    """The resident withdraws their request."""
    now = _now(now)
    with _unit_of_work(session):
        req = _by_ticket(session, ticket, lock=True)
        assignee = req.assignee_id
        event = _transition(
            session,
            req,
            "withdraw",
            actor=Actor.resident(),
            now=now,
            note=note,
            before=lambda: _release_load(session, req, clear=True),
        )
        req.closed_at = now
        if assignee is not None:
            _notify(session, event, "withdrawn", volunteers=[assignee])
    return req


# Workflow actions reachable through POST /requests/<id>/<action> (body → keyword arguments).
def _note(body: dict[str, Any]) -> str | None:
    return optional_str(body, "note", MAX_NOTE_CHARS)


ACTIONS: dict[str, Callable[..., Request]] = {
    "claim": lambda s, rid, actor, body, now, tz: claim_request(
        session=s, request_id=rid, actor=actor, now=now
    ),
    "start": lambda s, rid, actor, body, now, tz: start_request(
        session=s, request_id=rid, actor=actor, now=now
    ),
    "resolve": lambda s, rid, actor, body, now, tz: resolve_request(
        session=s, request_id=rid, actor=actor, note=required_str(body, "note", 2000), now=now
    ),
    "reopen": lambda s, rid, actor, body, now, tz: reopen_request(
        session=s, request_id=rid, actor=actor, note=_note(body), now=now
    ),
    "reject": lambda s, rid, actor, body, now, tz: reject_request(
        session=s, request_id=rid, actor=actor, reason=required_str(body, "reason", 2000), now=now
    ),
    "mark_duplicate": lambda s, rid, actor, body, now, tz: mark_duplicate(
        session=s,
        request_id=rid,
        actor=actor,
        duplicate_of=body.get("duplicate_of"),
        note=_note(body),
        now=now,
    ),
    "assign": lambda s, rid, actor, body, now, tz: assign_request(
        session=s,
        request_id=rid,
        actor=actor,
        grid_code=body.get("grid_code"),
        note=_note(body),
        now=now,
        tz=tz,
    ),
    "reassign": lambda s, rid, actor, body, now, tz: reassign_request(
        session=s,
        request_id=rid,
        actor=actor,
        volunteer_id=body.get("volunteer_id"),
        grid_code=body.get("grid_code"),
        note=_note(body),
        now=now,
        tz=tz,
    ),
    "escalate": lambda s, rid, actor, body, now, tz: escalate_request(
        session=s, request_id=rid, actor=actor, note=_note(body), now=now
    ),
}


def perform_action(
    *,
    session: Session,
    request_id: int,
    action: str,
    actor: Actor,
    body: dict[str, Any],
    now: datetime | None = None,
    tz: str = DEFAULT_TZ,
) -> Request:
    """Dispatch one workflow action by name (404 ``unknown_action`` for others)."""
    fn = ACTIONS.get(action)
    if fn is None:
        raise NotFound("unknown_action", action=action, available=", ".join(ACTIONS))
    return fn(session, request_id, actor, body, now, tz)


def rate_input(body: dict[str, Any]) -> tuple[int, str | None]:
    return parse_rating(body)


# -- the deadline job -------------------------------------------------------------------------
def run_escalations(
    *, session: Session, now: datetime | None = None, batch: int = 500
) -> dict[str, int]:
    """Escalate overdue open work one level up and auto-close resolved requests left unrated
    for 7 days; purge idempotency keys older than 24 h.

    Idempotent (an escalation sets a deadline after ``now``; a closed request is no longer
    resolved) and safe to run concurrently (rows are taken with SKIP LOCKED).
    """
    now = _now(now)
    sources = [s.value for s in TRANSITIONS["escalate"][0]]
    escalated = auto_closed = 0
    system = Actor.system()
    with _unit_of_work(session):
        while True:
            ids = session.scalars(
                select(Request.id)
                .where(
                    Request.status.in_(sources),
                    Request.deadline_at < now,
                    Request.owner_level != OwnerLevel.DISTRICT.value,
                )
                .order_by(Request.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            for rid in ids:
                req = _load(session, rid)
                _escalate(session, req, actor=system, now=now, note=None, why="overdue")
                escalated += 1
            session.commit()
            if len(ids) < batch:
                break
        close_sources = [s.value for s in TRANSITIONS["auto_close"][0]]
        while True:
            ids = session.scalars(
                select(Request.id)
                .where(
                    Request.status.in_(close_sources),
                    Request.resolved_at <= now - AUTO_CLOSE_AFTER,
                )
                .order_by(Request.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            for rid in ids:
                req = _load(session, rid)
                _transition(
                    session,
                    req,
                    "auto_close",
                    actor=system,
                    now=now,
                    event_action="auto_closed",
                    note="办结后 7 天未评价，自动关闭",
                )
                req.closed_at = now
                auto_closed += 1
            session.commit()
            if len(ids) < batch:
                break
        purged = session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - IDEMPOTENCY_TTL)
        ).rowcount
    if escalated or auto_closed:
        logger.info("deadline job: %d escalated, %d auto-closed", escalated, auto_closed)
    return {"escalated": escalated, "auto_closed": auto_closed, "expired_keys": purged or 0}


# -- reading ----------------------------------------------------------------------------------
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


def _location(lon: float, lat: float, crs: str = "wgs84") -> dict[str, Any]:
    """A point as served: its coordinates (already in ``crs``) and the CRS they are in."""
    return {"lon": round(float(lon), 7), "lat": round(float(lat), 7), "crs": crs}


def _summary(
    row: Any, tz: str, now: datetime, *, pii: bool, location: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A request as listed; ``location`` when served in a display CRS (else WGS84)."""
    overdue = bool(
        row["status"] in _OPEN and row["deadline_at"] is not None and row["deadline_at"] < now
    )
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
        "location": location or _location(row["lon"], row["lat"]),
        "building_code": row["building_code"],
        "deadline": iso(row["deadline_at"], tz),
        "overdue": overdue,
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
) -> dict[str, Any]:
    """One request with its timeline, offers and the actions legal now (403 out of scope)."""
    now = _now(now)
    req = session.get(Request, request_id, populate_existing=True)
    if req is None:
        raise NotFound("unknown_request", id=request_id)
    access = access_to(session, actor, req)
    if not access.any:
        raise Forbidden("forbidden")
    pii = _pii_for(actor.grant, access)
    row = _request_row(session, request_id)
    location = _location(*lonlat_to_display(row["lon"], row["lat"], display_crs), display_crs)
    out = _summary(row, tz, now, pii=pii, location=location)
    offers = session.execute(
        text(
            "SELECT o.volunteer_id, v.name, o.rank, o.distance_m, o.distance_method"
            " FROM request_offers o JOIN volunteers v ON v.id = o.volunteer_id"
            " WHERE o.request_id = :r ORDER BY o.rank"
        ),
        {"r": request_id},
    ).all()
    out.update(
        {
            "original_deadline": iso(row["original_deadline_at"], tz),
            "updated_at": iso(row["updated_at"], tz),
            "resolved_at": iso(row["resolved_at"], tz),
            "closed_at": iso(row["closed_at"], tz),
            "rating_comment": row["rating_comment"],
            "reopen_count": row["reopen_count"],
            "duplicate_of": row["duplicate_number"],
            "assignee": (
                {
                    "volunteer_id": row["assignee_id"],
                    "name": row["assignee_name"] if pii else mask_name(row["assignee_name"]),
                }
                if row["assignee_id"]
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
            "allowed_actions": allowed_actions(req.status),
            "timeline": _timeline(session, request_id, tz, actors=True),
        }
    )
    return out


def ticket_view(
    *, session: Session, ticket: str, tz: str = DEFAULT_TZ, now: datetime | None = None
) -> dict[str, Any]:
    """What the resident sees with their ticket: no one else's personal data."""
    now = _now(now)
    req = _by_ticket(session, ticket, lock=False)
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


def scope_sql(session: Session, actor: Actor) -> tuple[str, str, dict[str, Any]]:
    """(staff clause, own-volunteer clause, params) over aliases r (requests), g (grids)."""
    grant = actor.grant
    if grant is None:
        return "FALSE", "FALSE", {}
    if grant.everything:
        return "TRUE", "FALSE", {}
    clauses, params = [], {}
    if grant.area_ids:
        clauses.append(
            "r.community_id IN (WITH RECURSIVE sub AS ("
            " SELECT id FROM areas WHERE id = ANY(:scope_areas)"
            " UNION SELECT a.id FROM areas a JOIN sub ON a.parent_id = sub.id)"
            " SELECT id FROM sub)"
        )
        params["scope_areas"] = sorted(grant.area_ids)
    if grant.grid_codes:
        clauses.append("g.code = ANY(:scope_grids)")
        params["scope_grids"] = sorted(grant.grid_codes)
    staff = ("(" + " OR ".join(clauses) + ")") if clauses else "FALSE"
    own = "FALSE"
    vid = _volunteer_id_of(session, actor.user_id) if grant.own else None
    if vid is not None:
        own = (
            "(r.assignee_id = :scope_vid OR EXISTS (SELECT 1 FROM request_offers o"
            " WHERE o.request_id = r.id AND o.volunteer_id = :scope_vid))"
        )
        params["scope_vid"] = vid
    return staff, own, params


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
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of requests in the actor's scope, newest first; returns (items, next cursor).

    With ``display_crs`` (gcj02 / bd09, for a map drawn in that CRS) the bbox filter is read
    in it (widened by ``BBOX_PAD_DEG`` as the layers' is) and locations are served in it."""
    now = _now(now)
    before_id = decode_cursor(CURSOR_NAME, cursor)
    staff, own, params = scope_sql(session, actor)
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
                f" {staff} AS _staff"
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
    grant = actor.grant
    vid = params.get("scope_vid")
    # the page's points in the display CRS at once (per point it is ~30 us each)
    shown_lon, shown_lat = lonlat_to_display(
        np.array([r["lon"] for r in rows], dtype=np.float64),
        np.array([r["lat"] for r in rows], dtype=np.float64),
        display_crs,
    )
    items = []
    for i, row in enumerate(rows):
        access = Access(
            staff=bool(row["_staff"]),
            volunteer_id=vid,
            offered=False,
            assignee=vid is not None and row["assignee_id"] == vid,
        )
        location = _location(shown_lon[i], shown_lat[i], display_crs)
        items.append(_summary(row, tz, now, pii=_pii_for(grant, access), location=location))
    next_cursor = encode_cursor(CURSOR_NAME, rows[-1]["id"]) if has_more and rows else None
    return items, next_cursor
