"""The people's-affairs pipeline (民情流水线): states and allowed transitions, defined once.

Reassign, escalate and reopen are actions, not states: each returns the request to
``assigned`` with an owner level and a new deadline (DESIGN §3). Everything else that needs to
know whether an action is legal asks ``next_status`` / ``allowed_actions``.
"""

from __future__ import annotations

import logging
from enum import StrEnum

logger = logging.getLogger(__name__)


class Status(StrEnum):
    SUBMITTED = "submitted"
    TRIAGE = "triage"
    ASSIGNED = "assigned"
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    RATED = "rated"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    WITHDRAWN = "withdrawn"


class OwnerLevel(StrEnum):
    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"
    DISTRICT = "district"


ESCALATION_ORDER = (OwnerLevel.GRID, OwnerLevel.COMMUNITY, OwnerLevel.STREET, OwnerLevel.DISTRICT)

S = Status
_OPEN_WORK = (S.ASSIGNED, S.CLAIMED, S.IN_PROGRESS)

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[Status, ...], Status]] = {
    "assign": ((S.SUBMITTED, S.TRIAGE), S.ASSIGNED),
    "triage": ((S.SUBMITTED,), S.TRIAGE),
    "claim": ((S.ASSIGNED,), S.CLAIMED),
    "start": ((S.CLAIMED,), S.IN_PROGRESS),
    "resolve": ((S.CLAIMED, S.IN_PROGRESS), S.RESOLVED),
    "rate": ((S.RESOLVED,), S.RATED),
    "close": ((S.RATED,), S.CLOSED),
    "auto_close": ((S.RESOLVED,), S.CLOSED),
    "reopen": ((S.RESOLVED, S.RATED), S.ASSIGNED),
    "reassign": (_OPEN_WORK, S.ASSIGNED),
    "escalate": ((S.TRIAGE, *_OPEN_WORK), S.ASSIGNED),
    "withdraw": ((S.SUBMITTED, S.TRIAGE, *_OPEN_WORK), S.WITHDRAWN),
    "reject": ((S.SUBMITTED, S.TRIAGE, S.ASSIGNED), S.REJECTED),
    "mark_duplicate": ((S.SUBMITTED, S.TRIAGE, S.ASSIGNED), S.DUPLICATE),
}

TERMINAL = frozenset({S.CLOSED, S.REJECTED, S.DUPLICATE, S.WITHDRAWN})
OPEN = frozenset(set(Status) - TERMINAL - {S.RESOLVED, S.RATED})


def allowed_actions(status: Status | str) -> list[str]:
    """Actions legal from ``status``, in table order."""
    st = Status(status)
    return [action for action, (sources, _) in TRANSITIONS.items() if st in sources]


def next_status(status: Status | str, action: str) -> Status | None:
    """The status ``action`` leads to from ``status``, or None when it is not allowed."""
    sources, target = TRANSITIONS.get(action, ((), S.SUBMITTED))
    return target if Status(status) in sources else None
