"""Handoff targets in the actor's scope (DESIGN §3: access follows its reason).

A reassign names a live grid inside the actor's subtree, or an active volunteer of the actor's
scope (home community in their subtree, or the community of a grid they are bound to: the
volunteers a leader sees on the map) who has the category's skill, is available now and is
below the load limit — unless the leader overrides with ``override: true`` (the reason says
why; the event records what was waived). Sending the work where it already is, is 409
``same_target``. A duplicate points to an open-or-resolved request in the actor's scope and in
the same district. The system (deadline job, follow-ups) reaches everything. These are the
``check`` lookups of the action table: they write nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import Conflict, Unprocessable
from layers.grids.models import Grid
from layers.grids.repo import LIVE_GRIDS
from layers.requests.access import Actor, access_to, ancestor_ids, reaches
from layers.requests.models import Request
from layers.requests.states import OwnerLevel, Status
from layers.volunteers.models import Volunteer
from layers.volunteers.service import available_at

logger = logging.getLogger(__name__)

# a duplicate cannot point to a request that ended without being done (or to another copy)
NOT_AN_ORIGINAL = frozenset({Status.CLOSED, Status.REJECTED, Status.WITHDRAWN, Status.DUPLICATE})


def grid_in_scope(session: Session, actor: Actor, grid: Grid) -> bool:
    """The grid lies inside the actor's subtree (or is one of the grids they are bound to)."""
    grant = actor.grant
    if actor.kind == "system":
        return True
    if grant is None:
        return False
    return reaches(grant, ancestor_ids(session, grid.community_id), grid.code)


def volunteer_in_scope(session: Session, actor: Actor, vol: Volunteer) -> bool:
    """The volunteer's home community lies in the actor's subtree, or holds a live grid the
    actor is bound to."""
    grant = actor.grant
    if actor.kind == "system":
        return True
    if grant is None:
        return False
    if reaches(grant, ancestor_ids(session, vol.community_id), None):
        return True
    if not grant.grid_codes or vol.community_id is None:
        return False
    return bool(
        session.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM grids g WHERE g.community_id = :c"
                f" AND g.code = ANY(:codes) AND {LIVE_GRIDS})"
            ),
            {"c": vol.community_id, "codes": sorted(grant.grid_codes)},
        )
    )


def check_grid_target(session: Session, actor: Actor, req: Request, grid: Grid) -> None:
    """422 ``grid_out_of_scope``; 409 ``same_target`` when the grid already owns the work."""
    if not grid_in_scope(session, actor, grid):
        raise Unprocessable("grid_out_of_scope", code=grid.code)
    if grid.id == req.grid_id and req.owner_level == OwnerLevel.GRID:
        raise Conflict("same_target", target=grid.code)


def _sole_offer(session: Session, request_id: int) -> int | None:
    ids = session.scalars(
        text("SELECT volunteer_id FROM request_offers WHERE request_id = :r"), {"r": request_id}
    ).all()
    return ids[0] if len(ids) == 1 else None


def check_volunteer_target(
    session: Session,
    actor: Actor,
    req: Request,
    vol: Volunteer,
    *,
    now: datetime,
    tz: str,
    override: bool,
) -> list[str]:
    """Refuse a volunteer out of scope (422 ``volunteer_out_of_scope``) or the one who already
    has the work (409 ``same_target``: the assignee, or the sole offer of a waiting request);
    then the fit: the category's skill (422 ``volunteer_lacks_skill``), available now (409
    ``volunteer_unavailable``), below the load limit (409 ``volunteer_at_load_limit``). With
    ``override`` the fit is waived instead: returns what was waived."""
    if not volunteer_in_scope(session, actor, vol):
        raise Unprocessable("volunteer_out_of_scope", id=vol.id)
    waiting = req.status == Status.ASSIGNED and req.assignee_id is None
    if req.assignee_id == vol.id or (waiting and _sole_offer(session, req.id) == vol.id):
        raise Conflict("same_target", target=f"volunteer {vol.id}")
    unfit: list[tuple[str, Exception]] = []
    if req.category not in (vol.skills or []):
        unfit.append(
            ("skill", Unprocessable("volunteer_lacks_skill", id=vol.id, category=req.category))
        )
    if not available_at(vol.availability, now, tz):
        unfit.append(("availability", Conflict("volunteer_unavailable", id=vol.id)))
    if vol.active_load >= vol.load_limit:
        unfit.append(
            (
                "load_limit",
                Conflict(
                    "volunteer_at_load_limit",
                    id=vol.id,
                    active_load=vol.active_load,
                    load_limit=vol.load_limit,
                ),
            )
        )
    if unfit and not override:
        raise unfit[0][1]
    return [name for name, _ in unfit]


def _district_ids(session: Session, *community_ids: int | None) -> list[int | None]:
    """The district (the root of the area tree) of each community."""
    out: list[int | None] = []
    for cid in community_ids:
        root = (
            session.scalar(
                text(
                    "WITH RECURSIVE up AS (SELECT id, parent_id FROM areas WHERE id = :c"
                    " UNION SELECT a.id, a.parent_id FROM areas a"
                    " JOIN up ON a.id = up.parent_id) SELECT id FROM up WHERE parent_id IS NULL"
                ),
                {"c": cid},
            )
            if cid is not None
            else None
        )
        out.append(root)
    return out


def check_duplicate_target(session: Session, actor: Actor, req: Request, original: Request) -> None:
    """422 ``invalid_duplicate_target``: itself, out of the actor's scope, in another district,
    or a request that ended undone (closed, rejected, withdrawn) or is itself a duplicate."""
    if original.id == req.id:
        raise Unprocessable("invalid_duplicate_target", reason="itself")
    if not access_to(session, actor, original).staff:
        raise Unprocessable("invalid_duplicate_target", reason="out_of_scope")
    mine, theirs = _district_ids(session, req.community_id, original.community_id)
    if mine is None or mine != theirs:
        raise Unprocessable("invalid_duplicate_target", reason="other_district")
    if original.status in NOT_AN_ORIGINAL:
        raise Unprocessable("invalid_duplicate_target", reason=original.status)
