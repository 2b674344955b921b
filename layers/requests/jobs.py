"""The deadline job (限时办结): escalate overdue open work, auto-close unrated work.

Both go through the runner with the system as actor, so they write exactly what the action
table says (``escalate`` with reason ``overdue``; ``auto_close``, recorded as
``auto_closed``). Idempotent (an escalation sets a deadline after ``now``; a closed request is
no longer resolved) and safe to run concurrently (rows are taken with SKIP LOCKED).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from layers.pipeline.runner import run
from layers.requests.access import Actor
from layers.requests.entity import REQUESTS, load_request
from layers.requests.idempotency import IDEMPOTENCY_TTL
from layers.requests.models import IdempotencyKey, Request
from layers.requests.schemas import ReasonBody, now_utc
from layers.requests.states import OwnerLevel
from layers.requests.workflow import MACHINE
from layers.transactions import unit_of_work

logger = logging.getLogger(__name__)

AUTO_CLOSE_AFTER = timedelta(days=7)
AUTO_CLOSE_NOTE = "办结后 7 天未评价，自动关闭"
OVERDUE_REASON = ReasonBody("超过本级办理时限，自动上报上一级")


def _each_locked(
    session: Session, where: list[Any], batch: int, act: Callable[[Request], None]
) -> int:
    """Run ``act`` on every request matching ``where``, ``batch`` rows locked at a time
    (SKIP LOCKED: another job's rows are left to it), committing after each batch."""
    done = 0
    while True:
        ids = session.scalars(
            select(Request.id)
            .where(*where)
            .order_by(Request.id)
            .limit(batch)
            .with_for_update(skip_locked=True, key_share=True)
        ).all()
        for rid in ids:
            act(load_request(session, rid))
            done += 1
        session.commit()
        if len(ids) < batch:
            return done


def run_escalations(
    *, session: Session, now: datetime | None = None, batch: int = 500
) -> dict[str, int]:
    """Escalate overdue open work one level up and auto-close resolved requests left unrated
    for 7 days; purge idempotency keys older than 24 h."""
    now = now_utc(now)
    system = Actor.system()
    options = {"why": "overdue"}
    with unit_of_work(session):
        escalated = _each_locked(
            session,
            [
                Request.status.in_(MACHINE.action("escalate").sources),
                Request.deadline_at < now,
                Request.owner_level != OwnerLevel.DISTRICT.value,
            ],
            batch,
            lambda req: run(
                REQUESTS,
                session,
                req,
                "escalate",
                actor=system,
                now=now,
                parsed=OVERDUE_REASON,
                options=options,
            ),
        )
        auto_closed = _each_locked(
            session,
            [
                Request.status.in_(MACHINE.action("auto_close").sources),
                Request.resolved_at <= now - AUTO_CLOSE_AFTER,
            ],
            batch,
            lambda req: run(
                REQUESTS, session, req, "auto_close", actor=system, now=now, note=AUTO_CLOSE_NOTE
            ),
        )
        purged = session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - IDEMPOTENCY_TTL)
        ).rowcount
    if escalated or auto_closed:
        logger.info("deadline job: %d escalated, %d auto-closed", escalated, auto_closed)
    return {"escalated": escalated, "auto_closed": auto_closed, "expired_keys": purged or 0}
