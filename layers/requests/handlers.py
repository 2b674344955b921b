"""Each action's own effects: the ``handler`` column of the action table.

A ``check_*`` function (the table's ``check`` column) looks up what an action needs after the
actor's scope is known and before the transition is tried, so a wrong grid, volunteer or
original answers with its own code. A handler receives the runner's ``Step`` (row locked,
access checked, body parsed, the transition known to be legal) and changes what only that
action changes: the grid and the offers of an assignment, the owner level of an escalation,
the link of a duplicate, the rating; it may name extra outbox recipients and ask for a
follow-up action. The load, points, the new deadline, the timestamp the table names, the
status, the event and the outbox rows are the runner's declared effects.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from layers.errors import BadRequest, Conflict, Unprocessable
from layers.grids.models import Grid
from layers.grids.repo import live_grid_by_code
from layers.pipeline.runner import Step
from layers.requests.models import Request, RequestOffer
from layers.requests.offers import DEFAULT_K, distance_to_volunteers, rank_volunteers
from layers.requests.recipients import grid_people
from layers.requests.rules import next_level
from layers.requests.schemas import DEFAULT_TZ
from layers.requests.states import OwnerLevel
from layers.requests.targets import (
    check_duplicate_target,
    check_grid_target,
    check_volunteer_target,
)
from layers.volunteers.models import Volunteer

logger = logging.getLogger(__name__)

REOPEN_AT_OR_BELOW = 2


def _replace_offers(session: Session, req: Request, rows: list[RequestOffer]) -> None:
    session.execute(delete(RequestOffer).where(RequestOffer.request_id == req.id))
    session.add_all(rows)


def _request_lonlat(session: Session, request_id: int) -> tuple[float, float]:
    row = session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM requests WHERE id = :i"), {"i": request_id}
    ).one()
    return row[0], row[1]


def _send_to_grid(session: Session, step: Step, grid: Grid) -> list[int]:
    """The request goes to ``grid`` at the grid level, offered to its nearest suitable
    volunteers (replacing earlier offers); returns the offered volunteer ids."""
    req: Request = step.row
    req.grid_id = grid.id
    req.community_id = grid.community_id
    req.owner_level = OwnerLevel.GRID.value
    ranked, method = rank_volunteers(
        session=session,
        lonlat=_request_lonlat(session, req.id),
        category=req.category,
        now=step.now,
        tz=step.options.get("tz", DEFAULT_TZ),
        k=step.options.get("k", DEFAULT_K),
    )
    _replace_offers(
        session,
        req,
        [
            RequestOffer(
                request_id=req.id,
                volunteer_id=r.volunteer_id,
                rank=r.rank,
                distance_m=r.distance_m,
                distance_method=method,
                offered_at=step.now,
            )
            for r in ranked
        ],
    )
    return [r.volunteer_id for r in ranked]


def _grid_code(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("missing_field", field="grid_code")
    return value.strip()


def _live_grid(session: Session, value: Any) -> Grid:
    code = _grid_code(value)
    grid = live_grid_by_code(session, code)
    if grid is None:
        raise Unprocessable("unknown_grid", code=code)
    return grid


def check_assign(session: Session, step: Step) -> None:
    """The live grid the request goes to (400 without one, 422 for an unknown one)."""
    step.found["grid"] = _live_grid(session, step.body.grid_code)


def assign(session: Session, step: Step) -> None:
    """Community / street staff hand a triaged request to a grid (the deadline runs on)."""
    grid = step.found["grid"]
    offered = _send_to_grid(session, step, grid)
    step.data.update(grid_code=grid.code, offered=offered)
    step.volunteers += offered


def _offer_to(session: Session, step: Step, vol: Volunteer) -> None:
    """``vol`` becomes the sole offer, at their real distance (chosen by hand: no limit)."""
    req: Request = step.row
    row = session.execute(
        text(
            "SELECT ST_X(r.geom), ST_Y(r.geom), ST_X(v.geom), ST_Y(v.geom)"
            " FROM requests r, volunteers v WHERE r.id = :r AND v.id = :v"
        ),
        {"r": req.id, "v": vol.id},
    ).one()
    dist, method = distance_to_volunteers(
        session=session,
        lonlat=(row[0], row[1]),
        targets_lonlat=[(vol.id, row[2], row[3])],
        limit_m=math.inf,
    )
    _replace_offers(
        session,
        req,
        [
            RequestOffer(
                request_id=req.id,
                volunteer_id=vol.id,
                rank=1,
                distance_m=round(dist[vol.id], 1),
                distance_method=method,
                offered_at=step.now,
            )
        ],
    )


def check_reassign(session: Session, step: Step) -> None:
    """The live grid in the actor's subtree, or the active volunteer of their scope who fits
    the work (skill, availability, load; or the leader's override), the work goes to — not
    where it already is (``layers.requests.targets``)."""
    body = step.body
    if body.grid_code is not None:
        grid = _live_grid(session, body.grid_code)
        check_grid_target(session, step.actor, step.row, grid)
        step.found["grid"] = grid
        return
    if isinstance(body.volunteer_id, bool) or not isinstance(body.volunteer_id, int):
        raise BadRequest("invalid_field", field="volunteer_id", reason="an integer")
    vol = session.get(Volunteer, body.volunteer_id)
    if vol is None or not vol.active:
        raise Unprocessable("unknown_volunteer", id=body.volunteer_id)
    step.found["waived"] = check_volunteer_target(
        session,
        step.actor,
        step.row,
        vol,
        now=step.now,
        tz=step.options.get("tz", DEFAULT_TZ),
        override=body.override,
    )
    step.found["volunteer"] = vol


def reassign(session: Session, step: Step) -> None:
    """A leader hands open work to another volunteer (sole offer) or another grid."""
    grid = step.found.get("grid")
    if grid is not None:
        offered = _send_to_grid(session, step, grid)
        step.data["grid_code"] = grid.code
        step.users += grid_people(session, grid.id)
        step.volunteers += offered
        return
    vol = step.found["volunteer"]
    _offer_to(session, step, vol)
    step.data["volunteer_id"] = vol.id
    if step.body.override:  # the leader's override, with what it waived (the note says why)
        step.data["override"] = {"waived": step.found["waived"]}
    step.volunteers.append(vol.id)


def decline_offer(session: Session, step: Step) -> None:
    """The volunteer's offer is withdrawn; the others stand."""
    volunteer_id = step.access.volunteer_id
    session.execute(
        delete(RequestOffer).where(
            RequestOffer.request_id == step.row.id, RequestOffer.volunteer_id == volunteer_id
        )
    )
    step.data["volunteer_id"] = volunteer_id


def check_escalate(session: Session, step: Step) -> None:
    """The level above the owner (409 ``cannot_escalate`` at the district)."""
    req: Request = step.row
    target = next_level(req.owner_level)
    if target is None:
        raise Conflict("cannot_escalate", owner_level=req.owner_level)
    step.found["level"] = target.value


def escalate(session: Session, step: Step) -> None:
    """One level up (grid → community → street → district), by hand or when overdue. The
    offers lapse with the level they were made at (the event keeps who they were)."""
    req: Request = step.row
    why = step.options.get("why", "by hand")
    step.data.update(reason=why, from_level=req.owner_level, to_level=step.found["level"])
    req.owner_level = step.found["level"]
    lapsed = session.scalars(
        delete(RequestOffer)
        .where(RequestOffer.request_id == req.id)
        .returning(RequestOffer.volunteer_id)
    ).all()
    if lapsed:
        step.data["offers_lapsed"] = sorted(lapsed)


def reopen(session: Session, step: Step) -> None:
    """Back to work at the same level (staff, or a rating at or below 2 stars)."""
    req: Request = step.row
    step.data.update(
        reason=getattr(step.body, "why", "staff"),
        previous_assignee=step.before["assignee_id"],
    )
    req.resolved_at = None
    req.reopen_count = (req.reopen_count or 0) + 1


def _find_request(session: Session, ref: Any) -> Request | None:
    if isinstance(ref, int) and not isinstance(ref, bool):
        return session.get(Request, ref)
    if isinstance(ref, str) and ref.strip():
        return session.scalar(select(Request).where(Request.number == ref.strip()))
    return None


def check_duplicate(session: Session, step: Step) -> None:
    """The request this one repeats: another one in the actor's scope and district, not
    ended undone nor itself a duplicate (``layers.requests.targets``)."""
    req: Request = step.row
    ref = step.body.duplicate_of
    if ref is None:
        raise BadRequest("missing_field", field="duplicate_of")
    original = _find_request(session, ref)
    if original is None:
        raise Unprocessable("unknown_request", id=str(ref))
    check_duplicate_target(session, step.actor, req, original)
    step.found["original"] = original


def mark_duplicate(session: Session, step: Step) -> None:
    """Link to the request this one repeats."""
    original = step.found["original"]
    step.row.duplicate_of = original.id
    step.data.update(duplicate_of=original.id, number=original.number)


class LowRating:
    """The body of the reopen a rating at or below ``REOPEN_AT_OR_BELOW`` triggers."""

    why = "low_rating"

    def __init__(self, rating: int) -> None:
        self.note = f"居民评价 {rating} 星（≤ {REOPEN_AT_OR_BELOW} 星自动重新办理）"


def rate(session: Session, step: Step) -> None:
    """The resident's rating: 3 stars or more close the request, 2 or fewer reopen it."""
    req: Request = step.row
    req.rating = step.body.rating
    req.rating_comment = step.body.comment
    step.data["rating"] = step.body.rating
    if step.body.rating <= REOPEN_AT_OR_BELOW:
        low = LowRating(step.body.rating)
        step.follow.append(("reopen", low, low.note))
    else:
        step.follow.append(("close", None, None))


def close(session: Session, step: Step) -> None:
    """Closing after a rating records it."""
    step.data["rating"] = step.row.rating
