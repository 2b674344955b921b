"""Who reaches a request, and how: staff scope, the assignee, an offered volunteer.

The action table (``layers.requests.workflow``) names for each action the ways of reaching a
request that allow it (``scope``); this module answers which ways an actor has. Lists use the
same rules as SQL (``scope_sql``, ``pii_sql``).

Access follows its reason (DESIGN §3): an offer gives access while the request waits for a
volunteer — ``assigned`` with no assignee; it lapses when someone claims and when the request
closes (derived here, the offer rows are kept as history, so a give-back or a reopen puts the
same offers back), and when the request leaves its level (the escalation removes the offers,
``handlers.escalate``). Names and phones are shown to staff through a role binding that may
see them and reaches the request (``Grant.unmasked``), and to the assignee until
``ASSIGNEE_PII_DAYS`` after closure (``pii_for``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from layers.areas.models import Area
from layers.auth.permissions import Grant
from layers.config import Settings
from layers.grids.models import Grid
from layers.grids.repo import subtree_sql
from layers.requests.models import Request, RequestOffer
from layers.requests.states import ESCALATION_ORDER, HOLDS_LOAD, OPEN, Status
from layers.volunteers.models import Volunteer

logger = logging.getLogger(__name__)

#: the assignee sees the resident's name and phone until this many days after closure (the
#: default; the app passes its ``Settings.assignee_pii_days``, MINQING_ASSIGNEE_PII_DAYS)
ASSIGNEE_PII_DAYS: float = Settings.assignee_pii_days

#: grid 0, community 1, street 2, district 3: who may act on what a level owns
LEVEL_RANK = {level.value: i for i, level in enumerate(ESCALATION_ORDER)}

#: SQL over alias r: an offer of the request gives access now (``offer_lapse`` is None)
OFFER_LIVE_SQL = "(r.status = 'assigned' AND r.assignee_id IS NULL)"


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
    """How an actor reaches one request: through staff scope, as its volunteer, or not.

    ``staff_pii``: the staff scope comes (also) through a binding whose role sees names;
    ``owns``: the staff scope comes through a binding at the owning level or above, which is
    what lets staff act (a grid team reads the requests of its grid it escalated, but the
    community now owns them: DESIGN §3, every level that owns a request can close it);
    ``lapsed``: why an offer the volunteer holds no longer gives access (``offer_lapse``)."""

    staff: bool
    volunteer_id: int | None
    offered: bool
    assignee: bool
    resident: bool = False
    staff_pii: bool = False
    lapsed: str | None = None
    owns: bool = False
    owner_level: str | None = None

    @property
    def any(self) -> bool:
        return self.staff or self.offered or self.assignee

    @property
    def scopes(self) -> frozenset[str]:
        """The names the action table's ``scope`` column uses."""
        named = {
            "staff": self.staff and self.owns,
            "assignee": self.assignee,
            "offered": self.offered,
            "resident": self.resident,
        }
        return frozenset(k for k, v in named.items() if v)


NO_ACCESS = Access(staff=False, volunteer_id=None, offered=False, assignee=False)


def _memo(session: Session, name: str, key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per session (a web request) for ``(name, key)``: an action, its
    access checks and the detail it answers with ask the same questions of rows that do not
    change under them (a grid's code, a community's ancestors, an account's volunteer)."""
    cache = session.info.setdefault("minqing.access", {})
    if (name, key) not in cache:
        cache[(name, key)] = compute()
    return cache[(name, key)]


def volunteer_id_of(session: Session, user_id: int | None) -> int | None:
    if user_id is None:
        return None
    found = session.info.get("minqing.access", {}).get(("volunteer", user_id))
    if found is None:  # only a found id is kept: an account may register meanwhile
        found = session.scalar(select(Volunteer.id).where(Volunteer.user_id == user_id))
        if found is not None:
            session.info.setdefault("minqing.access", {})[("volunteer", user_id)] = found
    return found


def ancestor_ids(session: Session, area_id: int | None) -> frozenset[int]:
    """The area ``area_id`` and every area above it (empty for None)."""
    if area_id is None:
        return frozenset()
    return _memo(
        session,
        "ancestors",
        area_id,
        lambda: frozenset(
            session.scalars(
                text(
                    "WITH RECURSIVE up AS (SELECT id, parent_id FROM areas WHERE id = :c"
                    " UNION SELECT a.id, a.parent_id FROM areas a"
                    " JOIN up ON a.id = up.parent_id) SELECT id FROM up"
                ),
                {"c": area_id},
            )
        ),
    )


def _grid_code(session: Session, grid_id: int | None) -> str | None:
    if not grid_id:
        return None
    return _memo(
        session,
        "grid_code",
        grid_id,
        lambda: session.scalar(select(Grid.code).where(Grid.id == grid_id)),
    )


def reaches(grant: Grant, ancestors: frozenset[int], grid_code: str | None) -> bool:
    """Whether ``grant`` reaches what lies under the areas ``ancestors`` (a community and
    the areas above it) in grid ``grid_code``."""
    return (
        grant.everything
        or bool(ancestors & grant.area_ids)
        or (grid_code is not None and grid_code in grant.grid_codes)
    )


def offer_lapse(req: Request) -> str | None:
    """Why an offer of ``req`` gives no access now (None: it does): ``closed`` once it is no
    longer open (resolved, rated, closed, rejected, duplicate, withdrawn), ``claimed`` once
    someone has it, ``not_waiting`` in any other state no offer was made for."""
    if req.status not in OPEN:
        return "closed"
    if req.assignee_id is not None or req.status in HOLDS_LOAD:
        return "claimed"
    if req.status != Status.ASSIGNED:
        return "not_waiting"
    return None


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
        return Access(
            staff=True,
            volunteer_id=None,
            offered=False,
            assignee=False,
            staff_pii=True,
            owns=True,
        )
    if actor.kind == "resident":
        mine = actor.request_id is not None and actor.request_id == req.id
        return Access(staff=False, volunteer_id=None, offered=False, assignee=False, resident=mine)
    if grant is None:
        return NO_ACCESS
    unmasked = grant.unmasked()
    by_area = grant.area_ids | unmasked.area_ids
    by_grid = grant.grid_codes | unmasked.grid_codes
    ancestors = ancestor_ids(session, req.community_id) if by_area else frozenset()
    code = _grid_code(session, req.grid_id) if by_grid else None
    staff = reaches(grant, ancestors, code)
    vid = volunteer_id_of(session, actor.user_id) if grant.own else None
    assignee = vid is not None and req.assignee_id == vid
    held = vid is not None and _is_offered(session, req.id, vid)
    lapsed = offer_lapse(req) if held else None
    return Access(
        staff=staff,
        volunteer_id=vid,
        offered=held and lapsed is None,
        assignee=assignee,
        staff_pii=staff and reaches(unmasked, ancestors, code),
        lapsed=lapsed,
        owns=staff and owns(session, grant, ancestors, code, req.owner_level),
        owner_level=req.owner_level,
    )


def owns(
    session: Session,
    grant: Grant,
    ancestors: frozenset[int],
    grid_code: str | None,
    owner_level: str,
) -> bool:
    """Whether ``grant`` reaches the request through a binding at its owner level or above:
    a grid binding while the grid owns it, an area binding whose area is at or above the
    owner level (a community's staff own what the community or its grids own)."""
    if grant.everything:
        return True
    rank = LEVEL_RANK[owner_level]
    if grid_code is not None and grid_code in grant.grid_codes and rank == 0:
        return True
    bound = ancestors & grant.area_ids
    if not bound:
        return False
    levels = _memo(
        session,
        "levels",
        bound,
        lambda: session.scalars(select(Area.level).where(Area.id.in_(bound))).all(),
    )
    return any(LEVEL_RANK.get(level, -1) >= rank for level in levels)


def pii_for(
    access: Access,
    *,
    closed_at: datetime | None,
    now: datetime,
    assignee_pii_days: float = ASSIGNEE_PII_DAYS,
) -> bool:
    """Name and phone: staff through a binding that may see them, and the assignee until
    ``assignee_pii_days`` after closure (their work history stays readable, masked)."""
    if access.staff_pii:
        return True
    if not access.assignee:
        return False
    return closed_at is None or now < closed_at + timedelta(days=assignee_pii_days)


def _reach_sql(grant: Grant, prefix: str) -> tuple[str, dict[str, Any]]:
    """SQL over aliases r (requests), g (grids): ``grant`` reaches the row (bind parameters
    named after ``prefix``)."""
    if grant.everything:
        return "TRUE", {}
    clauses, params = [], {}
    if grant.area_ids:
        clauses.append(subtree_sql("r.community_id", f"{prefix}_areas"))
        params[f"{prefix}_areas"] = sorted(grant.area_ids)
    if grant.grid_codes:
        clauses.append(f"g.code = ANY(:{prefix}_grids)")
        params[f"{prefix}_grids"] = sorted(grant.grid_codes)
    return (("(" + " OR ".join(clauses) + ")") if clauses else "FALSE"), params


def scope_sql(session: Session, actor: Actor) -> tuple[str, str, dict[str, Any]]:
    """(staff clause, own-volunteer clause, params) over aliases r (requests), g (grids).
    The own clause holds the volunteer's work and the offers that give access now."""
    grant = actor.grant
    if grant is None:
        return "FALSE", "FALSE", {}
    staff, params = _reach_sql(grant, "scope")
    own = "FALSE"
    vid = volunteer_id_of(session, actor.user_id) if grant.own else None
    if vid is not None:
        own = (
            f"(r.assignee_id = :scope_vid OR ({OFFER_LIVE_SQL} AND EXISTS (SELECT 1"
            " FROM request_offers o WHERE o.request_id = r.id AND o.volunteer_id = :scope_vid)))"
        )
        params["scope_vid"] = vid
    return staff, own, params


def pii_sql(actor: Actor) -> tuple[str, dict[str, Any]]:
    """SQL over aliases r, g: staff reach the row through a binding whose role sees names
    and phones (``pii_*`` bind parameters; the assignee's own rule is ``pii_for``'s)."""
    if actor.grant is None:
        return "FALSE", {}
    return _reach_sql(actor.grant.unmasked(), "pii")
