"""Who reaches a request, and how: staff scope, the assignee, an offered volunteer.

The action table (``layers.requests.workflow``) names for each action the ways of reaching a
request that allow it (``scope``); this module answers which ways an actor has. Lists use the
same rules as SQL (``scope_sql``). Names and phones are shown to the assignee and to staff
whose role may see them (``pii_for``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from layers.auth.permissions import Grant
from layers.grids.models import Grid
from layers.grids.repo import subtree_sql
from layers.requests.models import Request, RequestOffer
from layers.volunteers.models import Volunteer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in account with its grant for the action, a resident holding a
    ticket, or the system (deadline job, automatic follow-ups)."""

    kind: str  # "user" | "resident" | "system"
    user_id: int | None = None
    grant: Grant | None = None
    request_id: int | None = None  # a resident's: the request their ticket opened

    @classmethod
    def system(cls) -> Actor:
        return cls(kind="system")

    @classmethod
    def resident(cls, request_id: int) -> Actor:
        """The holder of the ticket of request ``request_id`` (and of no other)."""
        return cls(kind="resident", request_id=request_id)


@dataclass(frozen=True)
class Access:
    """How an actor reaches one request: through staff scope, as its volunteer, or not."""

    staff: bool
    volunteer_id: int | None
    offered: bool
    assignee: bool
    resident: bool = False

    @property
    def any(self) -> bool:
        return self.staff or self.offered or self.assignee

    @property
    def scopes(self) -> frozenset[str]:
        """The names the action table's ``scope`` column uses."""
        named = {
            "staff": self.staff,
            "assignee": self.assignee,
            "offered": self.offered,
            "resident": self.resident,
        }
        return frozenset(k for k, v in named.items() if v)


NO_ACCESS = Access(staff=False, volunteer_id=None, offered=False, assignee=False)


def volunteer_id_of(session: Session, user_id: int | None) -> int | None:
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


def access_to(session: Session, actor: Actor, req: Request) -> Access:
    """Evaluate the actor's grant against one request (DESIGN: scopes of §1). A resident
    reaches only the request their ticket opened."""
    grant = actor.grant
    if actor.kind == "system":
        return Access(staff=True, volunteer_id=None, offered=False, assignee=False)
    if actor.kind == "resident":
        mine = actor.request_id is not None and actor.request_id == req.id
        return Access(staff=False, volunteer_id=None, offered=False, assignee=False, resident=mine)
    if grant is None:
        return NO_ACCESS
    staff = (
        grant.everything
        or _in_subtree(session, req.community_id, grant.area_ids)
        or (bool(grant.grid_codes) and _grid_code(session, req.grid_id) in grant.grid_codes)
    )
    vid = volunteer_id_of(session, actor.user_id) if grant.own else None
    assignee = vid is not None and req.assignee_id == vid
    offered = vid is not None and _is_offered(session, req.id, vid)
    return Access(staff=staff, volunteer_id=vid, offered=offered, assignee=assignee)


def pii_for(grant: Grant | None, access: Access) -> bool:
    """Name and phone: the assignee, the grid's leader and staff above; masked otherwise."""
    return access.assignee or (grant is not None and grant.pii and access.staff)


def scope_sql(session: Session, actor: Actor) -> tuple[str, str, dict[str, Any]]:
    """(staff clause, own-volunteer clause, params) over aliases r (requests), g (grids)."""
    grant = actor.grant
    if grant is None:
        return "FALSE", "FALSE", {}
    if grant.everything:
        return "TRUE", "FALSE", {}
    clauses, params = [], {}
    if grant.area_ids:
        clauses.append(subtree_sql("r.community_id"))
        params["scope_areas"] = sorted(grant.area_ids)
    if grant.grid_codes:
        clauses.append("g.code = ANY(:scope_grids)")
        params["scope_grids"] = sorted(grant.grid_codes)
    staff = ("(" + " OR ".join(clauses) + ")") if clauses else "FALSE"
    own = "FALSE"
    vid = volunteer_id_of(session, actor.user_id) if grant.own else None
    if vid is not None:
        own = (
            "(r.assignee_id = :scope_vid OR EXISTS (SELECT 1 FROM request_offers o"
            " WHERE o.request_id = r.id AND o.volunteer_id = :scope_vid))"
        )
        params["scope_vid"] = vid
    return staff, own, params
