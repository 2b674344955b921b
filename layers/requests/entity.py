"""Requests as an entity of the generic runner: how to load, reach, change and record one.

The declared effects of the action table are applied here, once for every action:
- ``load``: ``take`` puts the actor (an offered volunteer) on the request and takes a slot
  of their load (409 ``load_limit_reached`` when full); ``release`` gives the slot back
  when the request stops being their open work; ``drop`` also clears the assignee;
- ``points``: the ledger event's 正能量值 credited to the assignee (recorded in the event);
- ``deadline``: ``level`` starts a new deadline when the request reaches another level (owner
  level or grid; a hand-off to a volunteer within the level moves nothing), ``restart`` a new
  one at the same level (reopen); either way a level deadline that had passed before the
  step is remembered in ``was_overdue`` (DESIGN §3);
- ``stamp``: ``resolved_at`` / ``closed_at`` set to now.
"""

from __future__ import annotations

import hmac
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from layers.errors import Conflict, Forbidden, NotFound
from layers.grids.repo import PUBLISH_LOCK_KEY
from layers.pipeline.machine import Action
from layers.pipeline.runner import Step
from layers.requests import events
from layers.requests.access import Access, Actor, access_to
from layers.requests.models import Request, RequestOffer
from layers.requests.recipients import addressees, grid_people, outbox_rows, owner_people
from layers.requests.rules import deadline_hours, points_for
from layers.requests.schemas import ticket_hash, ticket_request_id
from layers.requests.states import HOLDS_LOAD, OPEN
from layers.requests.workflow import MACHINE
from layers.volunteers.models import Volunteer

logger = logging.getLogger(__name__)


# FOR NO KEY UPDATE: serialises the actions on a row like FOR UPDATE, but leaves alone the
# key-share locks of foreign keys to it (a duplicate pointing at a request being re-homed or
# acted on waits for nothing, and cannot deadlock with it).
ROW_LOCK = {"key_share": True}


def load_request(session: Session, request_id: int, *, lock: bool = True) -> Request:
    req = session.get(
        Request, request_id, with_for_update=ROW_LOCK if lock else None, populate_existing=True
    )
    if req is None:
        raise NotFound("unknown_request", id=request_id)
    return req


def new_deadline(req: Request, now: Any) -> Any:
    return now + timedelta(hours=deadline_hours(req.category, req.owner_level))


def is_overdue(req: Request, status: str, now: Any) -> bool:
    """The current level's deadline has passed and the request is still open (未结)."""
    return status in OPEN and req.deadline_at is not None and req.deadline_at < now


class RequestKind:
    """The runner's view of a request (``layers.pipeline.runner.EntityKind``)."""

    machine = MACHINE

    def load(self, session: Session, key: int, *, lock: bool = True) -> Request:
        return load_request(session, key, lock=lock)

    def version(
        self, session: Session, row: Request, *, offer_ids: list[int] | None = None
    ) -> tuple[Any, ...]:
        """Status, owner (level and grid: a publish re-homes), assignee and offer set: what
        an action and the actor's access depend on (DESIGN §3, atomic actions); ``offer_ids``
        when the caller already read every offer."""
        if offer_ids is None:
            offer_ids = list(
                session.scalars(
                    select(RequestOffer.volunteer_id).where(RequestOffer.request_id == row.id)
                ).all()
            )
        return (row.status, row.owner_level, row.grid_id, row.assignee_id, tuple(sorted(offer_ids)))

    def state(self, row: Request) -> dict[str, Any]:
        return {"status": row.status, "owner_level": row.owner_level}

    def lock(self, session: Session, names: tuple[str, ...]) -> None:
        """``grids``: wait for a publish under way (it re-homes requests from the rows it
        retires; a request put on such a row meanwhile would stay on a dead grid)."""
        for name in names:
            if name != "grids":
                raise ValueError(f"unknown lock {name!r}")
            session.execute(
                text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": PUBLISH_LOCK_KEY}
            )

    def status(self, row: Request) -> str:
        return row.status

    def access(self, session: Session, actor: Actor, row: Request) -> Access:
        return access_to(session, actor, row)

    def refuse(self, action: Action, access: Access) -> Exception:
        """403 out of scope; an offer that lapsed because someone claimed is the action's
        ``taken`` answer (409 ``already_claimed``), one that lapsed otherwise says so."""
        if "offered" in action.scope and access.volunteer_id is None:
            return Forbidden("not_a_volunteer")
        if "offered" in action.scope and access.lapsed == "claimed" and action.taken:
            return Conflict(action.taken)
        if "offered" in action.scope and access.lapsed is not None:
            return Forbidden("offer_lapsed", reason=access.lapsed)
        if "offered" in action.scope:
            return Forbidden("not_offered")
        if "staff" in action.scope and access.staff and not access.owns:
            return Forbidden("owned_by_another_level", owner_level=access.owner_level)
        return Forbidden("forbidden")

    def taken(self, row: Request) -> bool:
        return row.status in HOLDS_LOAD or row.assignee_id is not None

    def is_system(self, actor: Actor) -> bool:
        return actor.kind == "system"

    def system_actor(self) -> Actor:
        return Actor.system()

    def snapshot(self, row: Request) -> dict[str, Any]:
        return {
            "assignee_id": row.assignee_id,
            "owner_level": row.owner_level,
            "grid_id": row.grid_id,
        }

    def apply_load(self, session: Session, step: Step) -> None:
        req: Request = step.row
        effect = step.action.load
        if effect == "take":
            req.assignee_id = step.access.volunteer_id
            guard = [Volunteer.id == req.assignee_id, Volunteer.active]
            full = Volunteer.active_load >= Volunteer.load_limit
            take = update(Volunteer).values(active_load=Volunteer.active_load + 1)
            taken = session.execute(take.where(*guard, ~full).returning(Volunteer.id)).first()
            if taken is None and self._load_limit_waived(session, req):
                taken = session.execute(take.where(*guard).returning(Volunteer.id)).first()
            if taken is None:
                raise Conflict("load_limit_reached")
        elif effect in ("release", "drop"):
            if req.assignee_id is not None and step.from_status in HOLDS_LOAD:
                session.execute(
                    update(Volunteer)
                    .where(Volunteer.id == req.assignee_id)
                    .values(active_load=text("greatest(active_load - 1, 0)"))
                )
            if effect == "drop":
                req.assignee_id = None

    @staticmethod
    def _load_limit_waived(session: Session, req: Request) -> bool:
        """A leader handed the request to this volunteer with an override of the load limit
        (the latest reassign's event says so): their claim may go past it."""
        if req.status != "assigned":
            return False
        data = session.scalar(
            text(
                "SELECT data FROM request_events WHERE request_id = :r AND action = 'reassign'"
                " ORDER BY id DESC LIMIT 1"
            ),
            {"r": req.id},
        )
        return bool(
            data
            and data.get("volunteer_id") == req.assignee_id
            and "load_limit" in (data.get("override") or {}).get("waived", ())
        )

    def apply(self, session: Session, step: Step) -> None:
        req: Request = step.row
        action = step.action
        if action.points is not None:
            name = action.points if isinstance(action.points, str) else action.points(step.body)
            pts = points_for(name) if req.assignee_id is not None else 0
            step.data.update(volunteer_id=req.assignee_id, points=pts)
            if pts:
                session.execute(
                    update(Volunteer)
                    .where(Volunteer.id == req.assignee_id)
                    .values(points=Volunteer.points + pts)
                )
        if is_overdue(req, step.from_status, step.now):
            req.was_overdue = True
        moved = (req.owner_level, req.grid_id) != (
            step.before["owner_level"],
            step.before["grid_id"],
        )
        if action.deadline == "restart" or (action.deadline == "level" and moved):
            req.deadline_at = new_deadline(req, step.now)
            step.data["deadline"] = req.deadline_at.isoformat()
        if action.stamp is not None:
            setattr(req, action.stamp, step.now)

    def write(self, session: Session, step: Step) -> int:
        return events.write_step(session, step)

    def notify(self, session: Session, step: Step, event_id: int) -> None:
        req: Request = step.row
        rule = step.action.notify
        assert rule is not None
        users, volunteers = addressees(
            rule.to,
            grid_team=lambda: grid_people(session, req.grid_id),
            owner=lambda: owner_people(session, req.owner_level, req.grid_id, req.community_id),
            offered=step.volunteers,
            previous_assignee=step.before["assignee_id"],
        )
        rows = outbox_rows([*users, *step.users], volunteers, unaddressed=rule.unaddressed)
        if rows:
            events.write_outbox(session, event_id, rule.kind, rows)


REQUESTS = RequestKind()


def load_by_ticket(session: Session, ticket: str, *, lock: bool) -> Request:
    """The request a ticket opens: found by the id it names, opened only if the whole
    ticket's hash matches (compared in constant time)."""
    request_id = ticket_request_id(ticket) if isinstance(ticket, str) else None
    if request_id is None:
        raise NotFound("unknown_ticket")
    req = session.get(Request, request_id, with_for_update=lock, populate_existing=True)
    if req is None or not hmac.compare_digest(req.ticket_hash, ticket_hash(ticket)):
        raise NotFound("unknown_ticket")
    return req
