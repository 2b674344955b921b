"""The people's-affairs pipeline (民情流水线) as ONE action table (DESIGN §3).

Every row is an action: the states it leaves from and enters, the permission row it needs,
who is in scope, its body schema, its effects and the event it writes. The runner
(``layers.pipeline.runner``) performs any row; intake, the bulk import, re-homing on publish
and the deadline job derive their status and event writes from the same rows; the database
refuses any (action, from, to) the table does not list (``layers.pipeline.reference``).

Scopes: ``staff`` (the grid team or staff whose subtree holds the request), ``assignee``
(the volunteer doing the work), ``offered`` (a volunteer the request is offered to),
``resident`` (the holder of the request's ticket). The system (deadline job, follow-ups)
is always in scope.

To add an action: add one row here (and its permission row in
``layers.auth.permissions.PERMISSIONS`` if people perform it), then one test.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy.orm import Session

from layers.auth.permissions import Grant, Principal, grant_for
from layers.auth.service import principal_of
from layers.pipeline.machine import SAME, START, Action, Notify, StateMachine
from layers.requests import handlers
from layers.requests.access import Actor, access_to
from layers.requests.models import Request
from layers.requests.schemas import (
    AssignBody,
    DuplicateBody,
    NoteBody,
    RateBody,
    ReasonBody,
    ReassignBody,
    RequiredNoteBody,
)
from layers.requests.states import (
    ESCALATION_ORDER,
    HOLDS_LOAD,
    OPEN,
    OPEN_WORK,
    TERMINAL,
    OwnerLevel,
    Status,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIONS_TABLE",
    "ESCALATION_ORDER",
    "HOLDS_LOAD",
    "MACHINE",
    "OPEN",
    "REQUEST_ACTIONS",
    "TERMINAL",
    "OwnerLevel",
    "Status",
    "actions_for",
    "allowed_actions",
    "next_status",
]

S = Status
_WORK = tuple(s.value for s in OPEN_WORK)
_NOT_FINISHED = tuple(s.value for s in Status if s not in TERMINAL)
STAFF = ("staff",)

ACTIONS_TABLE = (
    # intake (set-based, layers.requests.intake): submitted, then assigned or in triage
    Action("submit", (START,), S.SUBMITTED, listed=False),
    Action(
        "assign",
        (S.SUBMITTED, S.TRIAGE),
        S.ASSIGNED,
        permission="requests.assign",
        scope=STAFF,
        body=AssignBody.parse,
        check=handlers.check_assign,
        deadline="level",
        handler=handlers.assign,
        locks=("grids",),  # puts the request on a grid row: not while a publish retires rows
        notify=Notify("assigned", ("grid_team", "offered")),
    ),
    Action("triage", (S.SUBMITTED,), S.TRIAGE, notify=Notify("triage", ("owner",))),
    Action(
        "claim",
        (S.ASSIGNED,),
        S.CLAIMED,
        permission="requests.claim",
        scope=("offered",),
        load="take",
        points="claim",
        taken="already_claimed",
    ),
    Action(
        "start",
        (S.CLAIMED,),
        S.IN_PROGRESS,
        permission="requests.start",
        scope=("staff", "assignee"),
    ),
    Action(
        "resolve",  # from assigned: the owning level closes it itself (DESIGN §3)
        (S.ASSIGNED, S.CLAIMED, S.IN_PROGRESS),
        S.RESOLVED,
        permission="requests.resolve",
        scope=("staff", "assignee"),
        body=RequiredNoteBody.parse,
        load="release",
        points="resolve",
        stamp="resolved_at",
    ),
    Action(
        "rate",
        (S.RESOLVED,),
        S.RATED,
        permission="tickets.rate",
        scope=("resident",),
        body=RateBody.parse,
        points=lambda body: f"rating_{body.rating}",
        handler=handlers.rate,
    ),
    Action("close", (S.RATED,), S.CLOSED, handler=handlers.close, stamp="closed_at"),
    Action("auto_close", (S.RESOLVED,), S.CLOSED, event="auto_closed", stamp="closed_at"),
    Action(
        "reopen",
        (S.RESOLVED, S.RATED),
        S.ASSIGNED,
        permission="requests.reopen",
        scope=STAFF,
        body=NoteBody.parse,
        load="drop",
        deadline="restart",
        handler=handlers.reopen,
        notify=Notify("reopened", ("owner", "previous_assignee")),
    ),
    Action(
        "reassign",
        _WORK,
        S.ASSIGNED,
        permission="requests.reassign",
        scope=STAFF,
        body=ReassignBody.parse,
        check=handlers.check_reassign,
        load="drop",
        deadline="level",
        handler=handlers.reassign,
        locks=("grids",),
        notify=Notify("reassigned", ("offered",)),
    ),
    Action(
        "escalate",
        (S.TRIAGE, *_WORK),
        S.ASSIGNED,
        permission="requests.escalate",
        scope=STAFF,
        body=ReasonBody.parse,
        check=handlers.check_escalate,
        load="drop",
        deadline="level",
        handler=handlers.escalate,
        notify=Notify("escalated", ("owner",)),
    ),
    Action(
        "withdraw",
        (S.SUBMITTED, S.TRIAGE, *_WORK),
        S.WITHDRAWN,
        permission="tickets.withdraw",
        scope=("resident",),
        body=NoteBody.parse,
        load="drop",
        stamp="closed_at",
        notify=Notify("withdrawn", ("previous_assignee",), unaddressed=False),
    ),
    Action(
        "reject",
        (S.SUBMITTED, S.TRIAGE, S.ASSIGNED),
        S.REJECTED,
        permission="requests.reject",
        scope=STAFF,
        body=ReasonBody.parse,
        load="drop",
        stamp="closed_at",
    ),
    Action(
        "mark_duplicate",
        (S.SUBMITTED, S.TRIAGE, S.ASSIGNED),
        S.DUPLICATE,
        permission="requests.mark_duplicate",
        scope=STAFF,
        body=DuplicateBody.parse,
        check=handlers.check_duplicate,
        load="drop",
        handler=handlers.mark_duplicate,
        stamp="closed_at",
    ),
    Action(
        "reply",  # a note the resident sees on the ticket page; the state stays
        _NOT_FINISHED,
        SAME,
        permission="requests.reply",
        scope=STAFF,
        body=RequiredNoteBody.parse,
    ),
    Action(
        "decline_offer",  # an offered volunteer says no: the offer is withdrawn, no points
        (S.ASSIGNED,),
        SAME,
        permission="requests.decline_offer",
        scope=("offered",),
        body=NoteBody.parse,
        handler=handlers.decline_offer,
    ),
    Action(
        "give_back",  # the assignee hands the work back to the grid, with a reason
        _WORK[1:],
        S.ASSIGNED,
        permission="requests.give_back",
        scope=("assignee",),
        body=ReasonBody.parse,
        load="drop",
        notify=Notify("given_back", ("owner",)),
    ),
    # publishing a redraw moves open requests to the new grid rows (layers.drafts)
    Action("rehome", _NOT_FINISHED, SAME, listed=False),
)

MACHINE = StateMachine("requests", tuple(s.value for s in Status), ACTIONS_TABLE)

# The workflow actions people perform on a request by id: POST /requests/<id>/<action>.
REQUEST_ACTIONS = tuple(
    a.name for a in ACTIONS_TABLE if a.permission and a.permission.startswith("requests.")
)


def allowed_actions(status: Status | str) -> list[str]:
    """Actions legal from ``status``, in table order."""
    return MACHINE.allowed_actions(Status(status).value)


def next_status(status: Status | str, action: str) -> Status | None:
    """The status ``action`` leads to from ``status``, or None when it is not allowed."""
    target = MACHINE.next_status(Status(status).value, action)
    return Status(target) if target is not None else None


def actions_for(session: Session, actor: Actor, row: Request) -> list[str]:
    """What ``actor`` may do to ``row`` now, in table order: the actions legal from its state
    whose permission the actor holds and whose ``scope`` the actor reaches the request in
    (with the grant for that permission, as the action's route and the runner check it).
    The row's own checks (target, level above) still decide when the action is performed.
    A request's detail lists these, so a page offers exactly what its user may do; the
    system may do every legal action."""
    legal = allowed_actions(row.status)
    if actor.kind == "system":
        return legal
    principal = (
        principal_of(session=session, user_id=actor.user_id)
        if actor.user_id is not None
        else Principal()
    )
    if principal is None:
        return []
    reach: dict[Grant, frozenset[str]] = {}
    out = []
    for name in legal:
        action = MACHINE.action(name)
        grant = grant_for(action.permission, principal) if action.permission else None
        if grant is None:
            continue
        if grant not in reach:
            reach[grant] = access_to(session, replace(actor, grant=grant), row).scopes
        if set(action.scope) & reach[grant]:
            out.append(name)
    return out
