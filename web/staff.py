"""Staff pages (社区 / 街道 staff and planners): the triage and escalation inbox, and the
dashboard (党建地图) with choropleths, a heat map and a metrics table that exports to CSV.

The pages read and act through the public API (/api/v1/requests, /metrics, /layers); only the
heat points and the CSV file have routes here, both scoped by the caller's grant.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from data.catalogues import request_categories
from layers.display_crs import parse_display_crs
from layers.requests import export
from layers.requests.metrics import scoped_metrics
from layers.requests.schemas import parse_time
from layers.requests.service import Actor
from layers.requests.workflow import OPEN
from web.auth import current_principal, policy
from web.db import db_session
from web.i18n import UI, negotiate_locale, strings, t
from web.maps import (
    STANDARD_LAYERS,
    attach_script,
    base_map,
    data_bounds,
    display_crs_for,
    layers_map,
    render,
    vendor,
)

logger = logging.getLogger(__name__)
bp = Blueprint("staff", __name__)

F = TypeVar("F", bound=Callable[..., Any])

# whose inbox holds which owner levels (DESIGN §3: escalation goes grid → … → district)
INBOX_LEVELS: dict[str, tuple[str, ...]] = {
    "community_staff": ("community",),
    "street_staff": ("street",),
    "admin": ("community", "street", "district"),
    "planner": ("community", "street", "district"),
}
ACTING_ROLES = frozenset({"admin", "street_staff", "community_staff"})
# actions the inbox offers (the API still decides; claim is the volunteer's alone)
INBOX_ACTIONS = ("assign", "reassign", "escalate", "reject", "mark_duplicate", "resolve", "reopen")
DASHBOARD_METRICS = ("open_backlog", "on_time_rate", "mean_rating", "coverage")
DEFAULT_PERIOD_DAYS = 30
# GET /api/v1/coverage (web/circles_api.py), when that blueprint is registered
COVERAGE_ENDPOINTS = ("circles_api.coverage_figures", "circles_api.coverage")


def staff_page(action: str) -> Callable[[F], F]:
    """``policy(action)`` for HTML pages: anonymous callers (or an expired session) go to the
    login page with ``?next=`` back here; signed-in callers without the grant get 403."""

    def decorate(view: F) -> F:
        guarded = policy(action)(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_principal().authenticated:
                target = request.full_path if request.query_string else request.path
                return redirect(url_for("pages.login", next=target))
            return guarded(*args, **kwargs)

        wrapper.minqing_policy = action  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _tz() -> str:
    return current_app.config["MINQING"].timezone


def _actor() -> Actor:
    return Actor(kind="user", user_id=current_principal().user_id, grant=g.grant)


def _period() -> tuple[datetime, datetime]:
    """[from, to) from the query (as GET /api/v1/metrics: default the last 30 days)."""
    period_to = parse_time(request.args.get("to"), "to", _tz()) or datetime.now(UTC)
    period_from = parse_time(request.args.get("from"), "from", _tz()) or period_to - timedelta(
        days=DEFAULT_PERIOD_DAYS
    )
    return period_from, period_to


def _roles() -> frozenset[str]:
    return current_principal().roles


def _nav(lang: str, here: str) -> dict[str, Any]:
    other = "en" if lang == "zh-CN" else "zh-CN"
    return {
        "here": here,
        "inbox": url_for("staff.inbox"),
        "dashboard": url_for("staff.dashboard"),
        "logout": url_for("pages.logout"),
        "switch": f"?lang={other}",
        "user": current_principal().username,
    }


def _with_lang_cookie(html: str, lang: str) -> Response:
    resp = Response(html, mimetype="text/html")
    resp.set_cookie("lang", lang, samesite="Lax")
    resp.headers["Cache-Control"] = "no-store"  # personal data: never from a cache
    return resp


def _area_label(area: dict[str, Any], lang: str) -> str:
    return (area.get("name_en") or area["name"]) if lang == "en" else area["name"]


def _id_url(endpoint: str, **kw: Any) -> str:
    """A URL for request id 0 with the id turned into the placeholder ``{id}``."""
    url = url_for(endpoint, request_id=0, **kw)
    head, _, tail = url.rpartition("/0")
    return head + "/{id}" + tail


@bp.get("/staff")
@staff_page("pages.staff")
def inbox():
    """Triage and escalation inbox for requests owned at the caller's level, with a map."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    session = db_session()
    outline = export.scope_outline(session=session, grant=g.grant)
    ui = strings(lang)
    roles = _roles()
    levels = sorted({lv for r in roles for lv in INBOX_LEVELS.get(r, ())})
    m = layers_map(
        bounds=outline.bounds or data_bounds(session),
        settings=settings,
        ui=ui,
        layer_specs=[s for s in STANDARD_LAYERS if s["name"] in ("grids", "buildings")],
        extra_css=(url_for("assets.static", filename="css/staff.css"),),
    )
    attach_script(
        m,
        url_for("assets.static", filename="js/staff.js"),
        "Minqing.staffInbox",
        {
            "lang": lang,
            "crs": display_crs_for(settings.basemap),
            "levels": levels,
            "canAct": bool(roles & ACTING_ROLES),
            "actions": list(INBOX_ACTIONS),
            "open": sorted(s.value for s in OPEN),
            "grids": outline.grids,
            "communities": {
                a["code"]: _area_label(a, lang) for a in outline.areas if a["level"] == "community"
            },
            "categories": {
                c.code: (c.name_en if lang == "en" else c.name_zh) for c in request_categories()
            },
            "urls": {
                "list": url_for("requests_api.list_requests"),
                "detail": _id_url("requests_api.request_read"),
                "action": _id_url("requests_api.request_assign").replace("/assign", "/{action}"),
                "login": url_for("pages.login", next=url_for("staff.inbox")),
            },
            "labels": ui,
        },
    )
    body = render_template(
        "staff_inbox.html",
        ui=ui,
        lang=lang,
        nav=_nav(lang, "inbox"),
        levels=levels,
        can_act=bool(roles & ACTING_ROLES),
        scope=[_area_label(a, lang) for a in outline.areas if a["level"] != "district"][:6],
    )
    html = render(m, title=t("staff_inbox", lang), lang=lang, body_html=body)
    return _with_lang_cookie(html, lang)


@bp.get("/staff/dashboard")
@staff_page("pages.staff")
def dashboard():
    """党建地图: choropleths per grid / community, a request heat map and the metrics table."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    session = db_session()
    outline = export.scope_outline(session=session, grant=g.grant)
    bounds = outline.bounds or data_bounds(session)
    ui = strings(lang)
    m = base_map(
        bounds=bounds,
        basemap=settings.basemap,
        tianditu_key=settings.tianditu_key,
        extra_js=(vendor("leaflet.heat/dist/leaflet-heat.js"),),
        extra_css=(url_for("assets.static", filename="css/staff.css"),),
    )
    coverage_endpoint = next(
        (e for e in COVERAGE_ENDPOINTS if e in current_app.view_functions), None
    )
    coverage_url = url_for(coverage_endpoint) if coverage_endpoint else None
    today = datetime.now(ZoneInfo(_tz())).date()
    (s, w), (n, e) = bounds or ((0.0, 0.0), (0.0, 0.0))
    attach_script(
        m,
        url_for("assets.static", filename="js/staff.js"),
        "Minqing.staffDashboard",
        {
            "lang": lang,
            "crs": display_crs_for(settings.basemap),
            "bbox": [round(w, 6), round(s, 6), round(e, 6), round(n, 6)],
            "areas": [a["code"] for a in outline.areas],
            "metrics": list(DASHBOARD_METRICS),
            "from": (today - timedelta(days=DEFAULT_PERIOD_DAYS - 1)).isoformat(),
            "to": today.isoformat(),
            "urls": {
                "metrics": url_for("requests_api.metrics"),
                "layers": url_for("api.layers_index"),
                "heat": url_for("staff.heat"),
                "csv": url_for("staff.metrics_csv"),
                "coverage": coverage_url,
                "login": url_for("pages.login", next=url_for("staff.dashboard")),
            },
            "labels": ui,
        },
    )
    body = render_template(
        "staff_dashboard.html",
        ui=ui,
        lang=lang,
        nav=_nav(lang, "dashboard"),
        metrics=DASHBOARD_METRICS,
        coverage=coverage_url is not None,
        columns=[c for c in export.METRIC_COLUMNS if c not in ("code", "name")],
    )
    html = render(m, title=t("staff_dashboard", lang), lang=lang, body_html=body)
    return _with_lang_cookie(html, lang)


@bp.get("/staff/heat.json")
@policy("staff.export")
def heat():
    """Request locations received in [from, to) in the caller's scope (no text, no PII)."""
    period_from, period_to = _period()
    pts = export.request_points(
        session=db_session(),
        actor=_actor(),
        period_from=period_from,
        period_to=period_to,
        display_crs=parse_display_crs(request.args.get("crs")),
    )
    resp = jsonify(
        {
            "from": period_from.isoformat(),
            "to": period_to.isoformat(),
            "count": len(pts.points),
            "truncated": pts.truncated,
            "limit": pts.limit,
            "points": pts.points,
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/staff/metrics.csv")
@policy("staff.export")
def metrics_csv():
    """The metrics table (as GET /api/v1/metrics) as CSV: UTF-8 with BOM, formula-safe."""
    lang = negotiate_locale()
    level = request.args.get("level", "grid")
    period_from, period_to = _period()
    rows = scoped_metrics(
        session=db_session(),
        actor=_actor(),
        level=level,
        period_from=period_from,
        period_to=period_to,
        now=datetime.now(UTC),
    )
    headers = {
        c: t(f"metric_{c}", lang) if f"metric_{c}" in UI else t(c, lang)
        for c in export.METRIC_COLUMNS
    }
    body = export.metrics_csv(rows=rows, headers=headers)
    tz = ZoneInfo(_tz())
    name = (
        f"minqing-metrics-{level}-{period_from.astimezone(tz):%Y%m%d}"
        f"-{period_to.astimezone(tz):%Y%m%d}.csv"
    )
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
