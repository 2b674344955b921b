"""The states of a request and the levels that can own it (DESIGN §3).

Reassign, escalate and reopen are actions, not states: each returns the request to
``assigned`` with an owner level. What leads from one state to another is the action table
in ``layers.requests.workflow``.
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
TERMINAL = frozenset({S.CLOSED, S.REJECTED, S.DUPLICATE, S.WITHDRAWN})
# 未结: not resolved, rated, closed, rejected, duplicate or withdrawn
OPEN = frozenset(set(Status) - TERMINAL - {S.RESOLVED, S.RATED})
OPEN_WORK = (S.ASSIGNED, S.CLAIMED, S.IN_PROGRESS)
# states in which the assignee holds a slot of their load
HOLDS_LOAD = frozenset({S.CLAIMED, S.IN_PROGRESS})
