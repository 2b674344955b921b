"""Staff pages (社区 / 街道 staff and planners): the triage and escalation inbox, and the
dashboard (党建地图) with choropleths, a heat map and a metrics table that exports to CSV.

The pages read and act through the public API (/api/v1/requests, /metrics, /layers); only the
heat points and the CSV file have routes here, both scoped by the caller's grant.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request, url_for

from layers.auth.permissions import can_hand_off, inbox_levels
from layers.display_crs import parse_display_crs
from layers.requests import export
from layers.requests.workflow import ACTIONS_TABLE, OPEN
from web.auth import current_principal, policy
from web.db import db_session
from web.i18n import UI, category_names, negotiate_locale, strings, t
from web.maps import (
    STANDARD_LAYERS,
    attach_script,
    base_map,
    data_bounds,
    display_crs_for,
    layers_map,
    page_response,
    panel_css,
    render,
    url_template,
    vendor,
)
from web.requests_api import METRICS_PERIOD_DAYS, caller_metrics, metrics_period, user_actor

logger = logging.getLogger(__name__)
bp = Blueprint("staff", __name__)

# actions the inbox may offer: the action table's rows staff perform (staff scope, a
# requests.* permission); a request's detail narrows them to what its caller may do now
INBOX_ACTIONS = tuple(
    a.name
    for a in ACTIONS_TABLE
    if "staff" in a.scope and a.permission and a.permission.startswith("requests.")
)
DASHBOARD_METRICS = ("open_backlog", "on_time_rate", "mean_rating", "coverage")
# GET /api/v1/coverage (web/circles_api.py), when that blueprint is registered
COVERAGE_ENDPOINTS = ("circles_api.coverage_figures", "circles_api.coverage")


def _tz() -> str:
    return current_app.config["MINQING"].timezone


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


def _area_label(area: dict[str, Any], lang: str) -> str:
    return (area.get("name_en") or area["name"]) if lang == "en" else area["name"]


@bp.get("/staff")
@policy("pages.staff")
def inbox():
    """Triage and escalation inbox for requests owned at the caller's level, with a map."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    session = db_session()
    outline = export.scope_outline(session=session, grant=g.grant)
    ui = strings(lang)
    roles = current_principal().roles
    levels = inbox_levels(roles)
    can_act = can_hand_off(roles)
    m = layers_map(
        bounds=outline.bounds or data_bounds(session),
        settings=settings,
        ui=ui,
        layer_specs=[s for s in STANDARD_LAYERS if s["name"] in ("grids", "buildings")],
        extra_css=panel_css("css/staff.css"),
    )
    attach_script(
        m,
        url_for("assets.static", filename="js/staff.js"),
        "Minqing.staffInbox",
        {
            "lang": lang,
            "crs": display_crs_for(settings.basemap),
            "levels": levels,
            "canAct": can_act,
            "actions": list(INBOX_ACTIONS),
            "open": sorted(s.value for s in OPEN),
            "grids": outline.grids,
            "communities": {
                a["code"]: _area_label(a, lang) for a in outline.areas if a["level"] == "community"
            },
            "categories": category_names(lang),
            "urls": {
                "list": url_for("requests_api.list_requests"),
                "detail": url_template("requests_api.request_read", "request_id"),
                # the volunteers a reassign may name: those of the caller's scope
                "volunteers": url_for("api.layer_features", layer="volunteers", limit=1000),
                "action": url_template("requests_api.request_assign", "request_id").replace(
                    "/assign", "/{action}"
                ),
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
        can_act=can_act,
        scope=[_area_label(a, lang) for a in outline.areas if a["level"] != "district"][:6],
    )
    html = render(m, title=t("staff_inbox", lang), lang=lang, body_html=body)
    return page_response(html, lang)


@bp.get("/staff/dashboard")
@policy("pages.staff")
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
        extra_css=panel_css("css/staff.css"),
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
            "from": (today - timedelta(days=METRICS_PERIOD_DAYS - 1)).isoformat(),
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
    return page_response(html, lang)


@bp.get("/staff/heat.json")
@policy("staff.export")
def heat():
    """Request locations received in [from, to) in the caller's scope (no text, no PII)."""
    period_from, period_to = metrics_period(datetime.now(UTC))
    pts = export.request_points(
        session=db_session(),
        actor=user_actor(),
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
    period_from, period_to, rows = caller_metrics(level)
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
