"""The pipeline's public face (民情流水线): intake, every action, the deadline job, reads.

Every action goes through the one runner (``layers.pipeline.runner``) over the one action
table (``layers.requests.workflow``); the functions named after actions below only turn
keyword arguments into the body the table's schema reads. Each call owns its transaction
(all or nothing). ``now`` defaults to the current UTC instant; pass one for replays and
tests.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from layers.errors import NotFound
from layers.pipeline.runner import parse_body, perform
from layers.requests.access import Access, Actor, access_to, scope_sql
from layers.requests.entity import REQUESTS, load_by_ticket
from layers.requests.idempotency import Idempotency, idempotency_for
from layers.requests.intake import SubmitOutcome, request_number, submit_request
from layers.requests.jobs import run_escalations
from layers.requests.models import Request
from layers.requests.offers import DEFAULT_K
from layers.requests.queries import ListFilters, list_requests, request_detail, ticket_view
from layers.requests.schemas import DEFAULT_TZ, now_utc
from layers.requests.workflow import REQUEST_ACTIONS
from layers.transactions import unit_of_work

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "DEFAULT_TZ",
    "Access",
    "Actor",
    "Idempotency",
    "ListFilters",
    "SubmitOutcome",
    "access_to",
    "claim_request",
    "escalate_request",
    "idempotency_for",
    "list_requests",
    "mark_duplicate",
    "perform_action",
    "rate_by_ticket",
    "reject_request",
    "reopen_request",
    "request_detail",
    "request_number",
    "resolve_request",
    "run_escalations",
    "scope_sql",
    "start_request",
    "submit_request",
    "ticket_view",
    "withdraw_by_ticket",
]

# The actions POST /requests/<id>/<action> performs, in table order.
ACTIONS = REQUEST_ACTIONS


def perform_action(
    *,
    session: Session,
    request_id: int,
    action: str,
    actor: Actor,
    body: dict[str, Any],
    now: datetime | None = None,
    tz: str = DEFAULT_TZ,
    k: int = DEFAULT_K,
    expected_version: str | None = None,
) -> Request:
    """Perform one workflow action by name (404 ``unknown_action`` for others); with
    ``expected_version`` (the detail's ``version``, sent as If-Match) only on that version."""
    if action not in ACTIONS:
        raise NotFound("unknown_action", action=action, available=", ".join(ACTIONS))
    return perform(
        REQUESTS,
        session,
        request_id,
        action,
        actor=actor,
        now=now_utc(now),
        body=body,
        options={"tz": tz, "k": k},
        expected=expected_version,
    )


def _by_ticket(
    session: Session, ticket: str, action: str, body: dict[str, Any], now: datetime | None
) -> Request:
    """A resident's action on the request their ticket opens, atomic like every other
    (``perform``: a concurrent change is 409 ``conflict``)."""
    parse_body(REQUESTS, action, body)  # a malformed body is 400 before the ticket is looked up
    with unit_of_work(session):
        request_id = load_by_ticket(session, ticket, lock=False).id
    return perform(
        REQUESTS,
        session,
        request_id,
        action,
        actor=Actor.resident(request_id),
        now=now_utc(now),
        body=body,
    )


def _keep(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# Keyword-argument forms of the actions, for Python callers (replays, jobs, tests).
def claim_request(
    *, session: Session, request_id: int, actor: Actor, now: datetime | None = None
) -> Request:
    """First offered volunteer to claim wins atomically; the others get 409
    ``already_claimed``."""
    return perform_action(
        session=session, request_id=request_id, action="claim", actor=actor, body={}, now=now
    )


def start_request(
    *, session: Session, request_id: int, actor: Actor, now: datetime | None = None
) -> Request:
    return perform_action(
        session=session, request_id=request_id, action="start", actor=actor, body={}, now=now
    )


def resolve_request(
    *, session: Session, request_id: int, actor: Actor, note: str, now: datetime | None = None
) -> Request:
    return perform_action(
        session=session,
        request_id=request_id,
        action="resolve",
        actor=actor,
        body={"note": note},
        now=now,
    )


def reopen_request(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    note: str | None = None,
    now: datetime | None = None,
) -> Request:
    return perform_action(
        session=session,
        request_id=request_id,
        action="reopen",
        actor=actor,
        body=_keep(note=note),
        now=now,
    )


def reject_request(
    *, session: Session, request_id: int, actor: Actor, reason: str, now: datetime | None = None
) -> Request:
    return perform_action(
        session=session,
        request_id=request_id,
        action="reject",
        actor=actor,
        body={"reason": reason},
        now=now,
    )


def mark_duplicate(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    duplicate_of: Any,
    reason: str,
    now: datetime | None = None,
) -> Request:
    return perform_action(
        session=session,
        request_id=request_id,
        action="mark_duplicate",
        actor=actor,
        body=_keep(duplicate_of=duplicate_of, reason=reason),
        now=now,
    )


def escalate_request(
    *,
    session: Session,
    request_id: int,
    actor: Actor,
    reason: str,
    now: datetime | None = None,
) -> Request:
    return perform_action(
        session=session,
        request_id=request_id,
        action="escalate",
        actor=actor,
        body={"reason": reason},
        now=now,
    )


def rate_by_ticket(
    *,
    session: Session,
    ticket: str,
    rating: int,
    comment: str | None = None,
    now: datetime | None = None,
) -> Request:
    """The resident rates the resolution: ≥ 3 closes it, ≤ 2 reopens it automatically."""
    return _by_ticket(session, ticket, "rate", _keep(rating=rating, comment=comment), now)


def withdraw_by_ticket(
    *, session: Session, ticket: str, note: str | None = None, now: datetime | None = None
) -> Request:
    """The resident withdraws their request."""
    return _by_ticket(session, ticket, "withdraw", _keep(note=note), now)
