"""Replay the demo's historical intake through the real pipeline, with simulated work.

Every request goes through ``submit_request`` at its historical time, then volunteers claim,
start and resolve it and residents rate it — each through the same service functions the API
uses — so events, offers, points and metrics stay consistent. Rates are seeded and vary by
grid (some grids are slower or rated lower) so the dashboard shows real spread; some work
runs late whatever the grid and some goes up to the community, so lateness shows in every
community (no dashboard shows 100 %).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session
from tqdm import tqdm

from layers.auth.permissions import Binding, Principal, grant_for
from layers.catalogues import request_categories
from layers.errors import MinqingError
from layers.requests import service
from layers.requests.rules import escalation_deadline_hours
from layers.requests.schemas import IntakeInput

logger = logging.getLogger(__name__)

RATING_COMMENTS = {
    5: "非常满意，谢谢！",
    4: "处理及时",
    3: "基本解决",
    2: "还没彻底解决",
    1: "没有人来处理",
}


@dataclass(frozen=True)
class Rates:
    """Shares of what happens to a request (realistic for community service desks)."""

    rejected: float = 0.03
    withdrawn: float = 0.02
    claimed: float = 0.9  # of those offered to someone
    rated: float = 0.75  # of those resolved
    late: float = 0.1  # of those claimed: the work overruns the deadline whatever the grid
    escalated: float = 0.04  # the grid hands it up to the community, which resolves it
    open_if_younger_h: float = 48.0  # recent requests are still being worked on


def _volunteer_actor(user_id: int, community_id: int | None) -> dict[str, service.Actor]:
    principal = Principal(
        user_id=user_id, bindings=(Binding(role="volunteer", area_id=community_id),)
    )
    return {
        action: service.Actor(kind="user", user_id=user_id, grant=grant_for(action, principal))
        for action in ("requests.claim", "requests.start", "requests.resolve")
    }


def _admin_actors(session: Session) -> dict[str, service.Actor]:
    admin_id = session.scalar(text("SELECT id FROM users WHERE username = 'admin'"))
    principal = Principal(user_id=admin_id, bindings=(Binding(role="admin"),))
    return {
        action: service.Actor(kind="user", user_id=admin_id, grant=grant_for(action, principal))
        for action in ("requests.reject", "requests.escalate", "requests.resolve")
    }


def _escalated_to_community(
    session: Session, rid: int, at: datetime, age_h: float, rng: Any, admin: dict[str, Any]
) -> str:
    """The grid hands the request up by hand; the community resolves it, mostly in time."""
    up_h = float(rng.uniform(1, 12))
    if up_h > age_h:
        return "awaiting_claim"
    service.escalate_request(
        session=session,
        request_id=rid,
        actor=admin["requests.escalate"],
        reason="涉及多个部门，需社区协调",
        now=at + timedelta(hours=up_h),
    )
    done_h = up_h + float(
        rng.lognormal(np.log(escalation_deadline_hours()["community"] * 0.6), 0.6)
    )
    if done_h + 1 > age_h:
        return "escalated_open"
    service.resolve_request(
        session=session,
        request_id=rid,
        actor=admin["requests.resolve"],
        note="社区协调物业和相关部门解决",
        now=at + timedelta(hours=done_h),
    )
    return "escalated_resolved"


def replay_history(
    *,
    session: Session,
    intake: Any,
    now: datetime,
    seed: int,
    tz: str = "Asia/Shanghai",
    rates: Rates = Rates(),
    progress: bool = False,
) -> dict[str, int]:
    """Replay ``intake`` (rows with lon/lat, category, text, seconds_ago) ending at ``now``."""
    rng = np.random.default_rng(seed)
    deadlines_h = {c.code: c.deadline_hours for c in request_categories()}
    volunteers = {
        vid: (uid, cid)
        for vid, uid, cid in session.execute(
            text("SELECT id, user_id, community_id FROM volunteers WHERE user_id IS NOT NULL")
        )
    }
    grid_quality: dict[str, float] = {}
    admin = _admin_actors(session)
    counts: Counter[str] = Counter()
    rows = list(intake.itertuples())
    for row in tqdm(rows, disable=not progress, desc="replaying demo history", unit="req"):
        at = now - timedelta(seconds=int(row.seconds_ago))
        try:
            outcome = service.submit_request(
                session=session,
                intake=IntakeInput(
                    category=row.category,
                    text=row.text,
                    lon=row.geometry.x,
                    lat=row.geometry.y,
                    contact_name=row.contact_name,
                    contact_phone=row.contact_phone,
                ),
                now=at,
                tz=tz,
                idempotency=None,
                source="replay",
            )
        except MinqingError as exc:
            counts[f"refused_{exc.code}"] += 1
            continue
        counts["submitted"] += 1
        rid, ticket, body = outcome.request_id, outcome.ticket, outcome.body
        grid = (body.get("grid") or {}).get("code") or "triage"
        quality = grid_quality.setdefault(grid, float(rng.beta(5, 2)))  # 0..1, most grids good
        age_h = row.seconds_ago / 3600
        roll = rng.random()
        if roll < rates.rejected:
            service.reject_request(
                session=session,
                request_id=rid,
                actor=admin["requests.reject"],
                reason="不属于社区受理范围",
                now=at + timedelta(hours=2),
            )
            counts["rejected"] += 1
            continue
        if roll < rates.rejected + rates.withdrawn:
            service.withdraw_by_ticket(
                session=session, ticket=ticket, note="问题已自行解决", now=at + timedelta(hours=1)
            )
            counts["withdrawn"] += 1
            continue
        if rng.random() < rates.escalated:
            counts[_escalated_to_community(session, rid, at, age_h, rng, admin)] += 1
            continue
        offers = session.scalars(
            text("SELECT volunteer_id FROM request_offers WHERE request_id = :r ORDER BY rank"),
            {"r": rid},
        ).all()
        if not offers or rng.random() > rates.claimed:
            counts["left_open"] += 1
            continue
        deadline_h = deadlines_h[row.category]
        claim_h = float(rng.uniform(0.2, 0.15 * deadline_h))
        if claim_h > age_h:
            counts["awaiting_claim"] += 1
            continue
        pick = offers[min(int(rng.geometric(0.5)) - 1, len(offers) - 1)]
        actors = _volunteer_actor(*volunteers[pick])
        try:
            service.claim_request(
                session=session,
                request_id=rid,
                actor=actors["requests.claim"],
                now=at + timedelta(hours=claim_h),
            )
        except MinqingError as exc:  # load limit reached: someone else will come
            counts[f"claim_{exc.code}"] += 1
            continue
        counts["claimed"] += 1
        # lower-quality grids take longer: on time for most, late for some
        work_h = claim_h + float(
            rng.lognormal(np.log(deadline_h * (0.35 + 0.6 * (1 - quality))), 0.5)
        )
        if rng.random() < rates.late:  # a part that had to be ordered, a resident away…
            work_h = max(work_h, deadline_h * float(rng.uniform(1.05, 2.0)))
        if work_h + 1 > age_h or age_h < rates.open_if_younger_h:
            service.start_request(
                session=session,
                request_id=rid,
                actor=actors["requests.start"],
                now=at + timedelta(hours=claim_h + 0.5),
            )
            counts["in_progress"] += 1
            continue
        service.resolve_request(
            session=session,
            request_id=rid,
            actor=actors["requests.resolve"],
            note="已上门处理",
            now=at + timedelta(hours=work_h),
        )
        counts["resolved"] += 1
        rate_h = work_h + float(rng.uniform(1, 48))
        if rng.random() < rates.rated and rate_h < age_h:
            stars = int(np.clip(round(rng.normal(2.2 + 2.8 * quality, 0.7)), 1, 5))
            service.rate_by_ticket(
                session=session,
                ticket=ticket,
                rating=stars,
                comment=RATING_COMMENTS[stars],
                now=at + timedelta(hours=rate_h),
            )
            counts[f"rated_{stars}"] += 1
    job = service.run_escalations(session=session, now=now)
    counts.update({f"job_{k}": v for k, v in job.items()})
    logger.info("replayed demo history: %s", dict(counts))
    return dict(counts)
