"""The pipeline's API (民情流水线) under /api/v1: intake, workflow actions, tickets, metrics.

Thin: parse → one service call → serialise. Every workflow action is its own route with its
own row in the permission table (``requests.<action>``).

Intake is rate-limited per client address, or per account when signed in, with counts in
PostgreSQL shared by every worker and process (``web.ratelimit``: ``MINQING_INTAKE_RATE_LIMIT``,
``MINQING_INTAKE_ACCOUNT_RATE_LIMIT``, ``MINQING_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, url_for

from layers.bbox import parse_bbox
from layers.catalogues import request_categories
from layers.display_crs import parse_display_crs
from layers.errors import BadRequest, Forbidden
from layers.requests import metrics as metrics_service
from layers.requests import service
from layers.requests.schemas import (
    MAX_NOTE_CHARS,
    optional_str,
    parse_intake,
    parse_rating,
    parse_time,
)
from layers.requests.workflow import OwnerLevel, Status
from layers.volunteers.service import parse_registration, register_volunteer
from web.api import json_body, parse_limit
from web.auth import current_principal, policy
from web.db import db_session
from web.ratelimit import limit_intake

logger = logging.getLogger(__name__)
bp = Blueprint("requests_api", __name__, url_prefix="/api/v1")

METRICS_PERIOD_DAYS = 30  # the metrics' period when ?from= is absent


def _tz() -> str:
    return current_app.config["MINQING"].timezone


def _pii_days() -> float:
    """How long after closure the assignee still sees the resident's name and phone."""
    return current_app.config["MINQING"].assignee_pii_days


def user_actor() -> service.Actor:
    """The signed-in caller as the services' actor, with the grant ``policy`` checked."""
    return service.Actor(kind="user", user_id=current_principal().user_id, grant=g.grant)


def metrics_period(now: datetime) -> tuple[datetime, datetime]:
    """[from, to) from ``?from=`` / ``?to=``; by default the ``METRICS_PERIOD_DAYS`` up to
    ``now``. GET /metrics and the staff pages' exports read the same period."""
    period_to = parse_time(request.args.get("to"), "to", _tz()) or now
    period_from = parse_time(request.args.get("from"), "from", _tz()) or period_to - timedelta(
        days=METRICS_PERIOD_DAYS
    )
    return period_from, period_to


def caller_metrics(level: str) -> tuple[datetime, datetime, list[dict[str, Any]]]:
    """(from, to, rows): the caller's metrics per ``level`` over the query's period, as
    GET /metrics serves them (and the staff CSV export writes them)."""
    now = datetime.now(UTC)
    period_from, period_to = metrics_period(now)
    rows = metrics_service.scoped_metrics(
        session=db_session(),
        actor=user_actor(),
        level=level,
        period_from=period_from,
        period_to=period_to,
        now=now,
    )
    return period_from, period_to, rows


# -- intake -----------------------------------------------------------------------------------
@bp.post("/requests")
@policy("requests.create")
def create_request():
    """Submit a request (resident, anonymous or signed in); 201 with the ticket."""
    principal = current_principal()
    limit_intake(principal)
    body = json_body()
    intake = parse_intake(body)
    idem = service.idempotency_for(request.headers.get("Idempotency-Key"), body)
    outcome = service.submit_request(
        session=db_session(),
        intake=intake,
        tz=_tz(),
        idempotency=idem,
        actor_user_id=principal.user_id,
    )
    resp = jsonify(outcome.body)
    resp.status_code = outcome.status_code
    if outcome.replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    if outcome.body.get("ticket"):
        resp.headers["Location"] = url_for(
            "requests_api.ticket_read", ticket=outcome.body["ticket"]
        )
    return resp


# -- reading ----------------------------------------------------------------------------------
def _flag(raw: str | None, name: str) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadRequest("invalid_field", field=name, reason="true or false")


def _owner_levels(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    levels = tuple(x.strip() for x in raw.split(",") if x.strip())
    valid = {o.value for o in OwnerLevel}
    bad = [x for x in levels if x not in valid]
    if bad:
        raise BadRequest("invalid_field", field="owner_level", reason=", ".join(sorted(valid)))
    return levels


@bp.get("/requests")
@policy("requests.read")
def list_requests():
    """Requests in the caller's scope, newest first, paged with limit + cursor."""
    args = request.args
    settings = current_app.config["MINQING"]
    statuses = tuple(s for s in (args.get("status") or "").split(",") if s)
    valid = {s.value for s in Status}
    bad = [s for s in statuses if s not in valid]
    if bad:
        raise BadRequest("invalid_field", field="status", reason=f"unknown {', '.join(bad)}")
    filters = service.ListFilters(
        grid_code=args.get("grid") or None,
        community_code=args.get("community") or None,
        statuses=statuses,
        owner_levels=_owner_levels(args.get("owner_level")),
        category=args.get("category") or None,
        overdue=_flag(args.get("overdue"), "overdue"),
        bbox=parse_bbox(args.get("bbox"), max_deg=settings.bbox_max_deg),
        created_from=parse_time(args.get("from"), "from", _tz()),
        created_to=parse_time(args.get("to"), "to", _tz()),
    )
    items, next_cursor = service.list_requests(
        session=db_session(),
        actor=user_actor(),
        filters=filters,
        limit=parse_limit(args.get("limit")),
        cursor=args.get("cursor"),
        tz=_tz(),
        display_crs=parse_display_crs(args.get("crs")),
        assignee_pii_days=_pii_days(),
    )
    next_url = None
    if next_cursor:
        keep = {k: v for k, v in args.items() if k != "cursor"}
        next_url = url_for("requests_api.list_requests", cursor=next_cursor, **keep)
    return jsonify({"requests": items, "numberReturned": len(items), "links": {"next": next_url}})


@bp.get("/requests/<int:request_id>")
@policy("requests.read")
def request_read(request_id: int):
    """One request with its timeline, offers and the actions allowed now; its ``version``
    is the ETag an action may send back as If-Match."""
    detail = service.request_detail(
        session=db_session(),
        request_id=request_id,
        actor=user_actor(),
        tz=_tz(),
        display_crs=parse_display_crs(request.args.get("crs")),
        assignee_pii_days=_pii_days(),
    )
    resp = jsonify(detail)
    resp.set_etag(detail["version"])
    return resp


def _if_match() -> str | None:
    """The version an action was meant for (If-Match: one entity tag; ``*`` means any)."""
    tags = request.if_match
    if not tags or tags.star_tag:
        return None
    return next(iter(tags.as_set()), None)


# -- workflow actions: one route and one permission row each -----------------------------------
def _action_view(action: str):
    def view(request_id: int):
        body = json_body() if request.get_data() else {}
        req = service.perform_action(
            expected_version=_if_match(),
            session=db_session(),
            request_id=request_id,
            action=action,
            actor=user_actor(),
            body=body,
            tz=_tz(),
        )
        try:
            detail = service.request_detail(
                session=db_session(),
                request_id=req.id,
                actor=user_actor(),
                tz=_tz(),
                assignee_pii_days=_pii_days(),
                duplicates=False,
            )
        except Forbidden:  # e.g. handed to another grid: done, but no longer the actor's
            detail = {
                "id": req.id,
                "number": req.number,
                "status": req.status,
                "owner_level": req.owner_level,
                "in_scope": False,
            }
        return jsonify(detail)

    view.__name__ = f"request_{action}"
    return policy(f"requests.{action}")(view)


for _action in service.ACTIONS:
    bp.add_url_rule(
        f"/requests/<int:request_id>/{_action}",
        endpoint=f"request_{_action}",
        view_func=_action_view(_action),
        methods=["POST"],
    )


# -- tickets (the resident) -------------------------------------------------------------------
@bp.get("/tickets/<ticket>")
@policy("tickets.read")
def ticket_read(ticket: str):
    return jsonify(service.ticket_view(session=db_session(), ticket=ticket, tz=_tz()))


@bp.post("/tickets/<ticket>/rate")
@policy("tickets.rate")
def ticket_rate(ticket: str):
    rating, comment = parse_rating(json_body())
    service.rate_by_ticket(session=db_session(), ticket=ticket, rating=rating, comment=comment)
    return jsonify(service.ticket_view(session=db_session(), ticket=ticket, tz=_tz()))


@bp.post("/tickets/<ticket>/withdraw")
@policy("tickets.withdraw")
def ticket_withdraw(ticket: str):
    body = json_body() if request.get_data() else {}
    note = optional_str(body, "note", MAX_NOTE_CHARS)
    service.withdraw_by_ticket(session=db_session(), ticket=ticket, note=note)
    return jsonify(service.ticket_view(session=db_session(), ticket=ticket, tz=_tz()))


# -- catalogues and metrics ---------------------------------------------------------------------
@bp.get("/categories")
@policy("categories.read")
def categories():
    return jsonify(
        {
            "categories": [
                {
                    "code": c.code,
                    "name_zh": c.name_zh,
                    "name_en": c.name_en,
                    "deadline_hours": c.deadline_hours,
                    "description": c.description,
                }
                for c in request_categories()
            ]
        }
    )


@bp.get("/metrics")
@policy("metrics.read")
def metrics():
    """DESIGN §3 metrics per grid | community | street over [from, to) (default: 30 days)."""
    level = request.args.get("level", "grid")
    period_from, period_to, rows = caller_metrics(level)
    return jsonify(
        {
            "level": level,
            "from": period_from.isoformat(),
            "to": period_to.isoformat(),
            "rows": rows,
        }
    )


# -- volunteers ---------------------------------------------------------------------------------
@bp.post("/volunteers")
@policy("volunteers.register")
def volunteer_register():
    """Self-registration of the signed-in account as a volunteer (双报到)."""
    reg = parse_registration(json_body())
    out = register_volunteer(session=db_session(), user_id=current_principal().user_id, reg=reg)
    resp = jsonify(out)
    resp.status_code = 201
    return resp
