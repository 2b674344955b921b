"""Pages for people who work requests: the grid leader's map and the volunteer's phone page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, url_for

from layers.circles.service import walking_routes
from layers.grids.service import grids_bounds
from layers.volunteers.dashboard import volunteer_dashboard
from web.auth import current_principal, policy
from web.db import db_session
from web.i18n import category_names, negotiate_locale, strings, t
from web.maps import (
    STANDARD_LAYERS,
    attach_script,
    data_bounds,
    display_crs_for,
    layers_map,
    page_response,
    render,
    url_template,
    vendor,
)

logger = logging.getLogger(__name__)
bp = Blueprint("work", __name__)

MARKERCLUSTER = (
    "leaflet.markercluster/dist/leaflet.markercluster.js",
    "leaflet.markercluster/dist/MarkerCluster.css",
    "leaflet.markercluster/dist/MarkerCluster.Default.css",
)

# the leader's extra layers: buildings as GeoJSON (their grid is small) so popups can carry the
# building leader (楼栋长), volunteers with availability and load, circles off by default
LEADER_LAYERS: list[dict[str, Any]] = [
    STANDARD_LAYERS[0],
    {
        "name": "buildings",
        "title_key": "buildings",
        "minZoom": 15,
        "style": {"color": "#555", "weight": 1, "fillColor": "#f0c27b", "fillOpacity": 0.5},
        "popup": [
            ["code", "code"],
            ["name", "name"],
            ["households", "households"],
            ["leader_name", "building_leader"],
            ["leader_phone", "phone"],
        ],
    },
    STANDARD_LAYERS[2],
    {
        "name": "service_circles",
        "title_key": "circles",
        "minZoom": 12,
        "hidden": True,
        "style": {"color": "#27ae60", "weight": 1, "fillOpacity": 0.06},
        "popup": [["category", "category"], ["tier", "tier"]],
    },
    {
        "name": "volunteers",
        "title_key": "volunteers",
        "minZoom": 13,
        "point": {"radius": 5, "color": "#8e44ad", "fillOpacity": 0.8},
        "popup": [
            ["name", "name"],
            ["phone", "phone"],
            ["skills", "skills"],
            ["active_load", "load"],
            ["load_limit", "load_limit"],
            ["points", "points"],
        ],
    },
]


@bp.get("/leader")
@policy("pages.leader")
def leader():
    """The grid leader's map: their grids, open requests (overdue unmistakable), the people."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    principal = current_principal()
    codes = sorted({b.grid_code for b in principal.bindings if b.grid_code})
    session = db_session()
    bounds = grids_bounds(session, codes) if codes else data_bounds(session)
    ui = strings(lang)
    grids_layer = {
        **LEADER_LAYERS[0],
        "highlight": {"codes": codes, "style": {"weight": 4, "color": "#d35400", "fill": False}},
    }
    m = layers_map(
        bounds=bounds,
        settings=settings,
        ui=ui,
        layer_specs=[grids_layer, *LEADER_LAYERS[1:]],
        extra_js=(vendor(MARKERCLUSTER[0]),),
        extra_css=(
            vendor(MARKERCLUSTER[1]),
            vendor(MARKERCLUSTER[2]),
            url_for("assets.static", filename="css/work.css"),
        ),
    )
    attach_script(
        m,
        url_for("assets.static", filename="js/work.js"),
        "Minqing.leader",
        {
            "lang": lang,
            "crs": display_crs_for(settings.basemap),
            "grids": codes,
            "categories": category_names(lang),
            "urls": {
                "requests": url_for("requests_api.list_requests"),
                "detail": url_template("requests_api.request_read", "request_id"),
                # the volunteers a reassign may name: those of the leader's scope
                "volunteers": url_for("api.layer_features", layer="volunteers", limit=1000),
            },
            "labels": ui,
        },
    )
    html = render(
        m,
        title=t("leader_title", lang),
        lang=lang,
        body_html=render_template(
            "leader_panel.html", ui=ui, lang=lang, grids=codes, user=principal.username
        ),
    )
    return page_response(html, lang)


@bp.get("/v")
@policy("pages.volunteer")
def volunteer():
    """The volunteer's phone page: offers nearest first, claim / start / resolve, points."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    data = volunteer_dashboard(session=db_session(), user_id=current_principal().user_id)
    me = data["volunteer"]
    ui = strings(lang)
    pad = 0.004  # about 450 m around home: the walkable neighbourhood
    bounds = ((me["lat"] - pad, me["lon"] - pad), (me["lat"] + pad, me["lon"] + pad))
    m = layers_map(
        bounds=bounds,
        settings=settings,
        ui=ui,
        extra_css=(url_for("assets.static", filename="css/work.css"),),
    )
    attach_script(
        m,
        url_for("assets.static", filename="js/work.js"),
        "Minqing.volunteer",
        {
            "lang": lang,
            "categories": category_names(lang),
            "urls": {
                "me": url_for("work.volunteer_me"),
                "detail": url_template("requests_api.request_read", "request_id"),
                "route": url_for("circles_api.route")
                if "circles_api.route" in current_app.view_functions
                else None,
            },
            "labels": ui,
        },
    )
    html = render(
        m,
        title=t("volunteer_title", lang),
        lang=lang,
        body_html=render_template("volunteer_panel.html", ui=ui, lang=lang, me=me),
    )
    return page_response(html, lang)


@bp.get("/api/v1/me/volunteer")
@policy("volunteers.me")
def volunteer_me():
    """The signed-in volunteer's dashboard as JSON (the phone page refreshes from it)."""
    session = db_session()
    data = volunteer_dashboard(session=session, user_id=current_principal().user_id)
    me = data["volunteer"]
    todo = data["mine"] + data["offers"]
    routes = walking_routes(
        session,
        (me["lon"], me["lat"]),
        [(r["lon"], r["lat"]) for r in todo],
        settings=current_app.config["MINQING"],
    )
    for row, route in zip(todo, routes, strict=True):
        row["route"] = route["geometry"] if route else None
        row["route_m"] = route["distance_m"] if route else None
    for key in ("offers", "mine", "history"):
        for row in data[key]:
            for k, v in row.items():
                if hasattr(v, "isoformat"):
                    row[k] = v.isoformat()
    return jsonify(data)
