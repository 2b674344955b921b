"""HTML pages: the district map and login."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import escape

from layers.auth.service import authenticate
from layers.errors import Unauthorized
from web.auth import policy
from web.db import db_session
from web.i18n import negotiate_locale, strings, t
from web.maps import attach_script, base_map, data_bounds, display_crs_for, render, vendor

logger = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)

DISTRICT_LAYERS = [
    {
        "name": "grids",
        "title_key": "grids",
        "minZoom": 11,
        # outlines only: a filled grid would swallow clicks meant for the buildings beneath
        "style": {"color": "#c0392b", "weight": 2.5, "fill": False},
        "popup": [["code", "code"], ["name", "name"], ["households", "households"]],
        "label": "code",
    },
    {
        "name": "buildings",
        "title_key": "buildings",
        "tiles": True,
        "minZoom": 14,
        "style": {
            "color": "#555",
            "weight": 1,
            "fill": True,
            "fillColor": "#f0c27b",
            "fillOpacity": 0.6,
        },
        "popup": [
            ["code", "code"],
            ["name", "name"],
            ["levels", "levels"],
            ["households", "households"],
        ],
    },
    {
        "name": "venues",
        "title_key": "venues",
        "minZoom": 12,
        "point": {"radius": 6, "color": "#1f6feb", "fillOpacity": 0.9},
        "popup": [["name", "name"], ["category", "category"]],
    },
]


@bp.get("/")
@policy("pages.district_map")
def district_map():
    """The district on a map: grids with code and households, buildings, venues."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    m = base_map(
        bounds=data_bounds(db_session()),
        basemap=settings.basemap,
        tianditu_key=settings.tianditu_key,
        extra_js=(
            vendor("leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js"),
            url_for("assets.static", filename="js/vectorgrid-fix.js"),
        ),
    )
    ui = strings(lang)
    tiles_url = url_for("tiles.tile", layer="LAYER", z=0, x=0, y=0).replace(
        "/0/0/0", "/{z}/{x}/{y}"
    )
    layers = [
        {
            **spec,
            "title": ui[spec["title_key"]],
            "tiles": tiles_url.replace("LAYER", spec["name"]) if spec.get("tiles") else None,
        }
        for spec in DISTRICT_LAYERS
    ]
    attach_script(
        m,
        url_for("assets.static", filename="js/layers.js"),
        "Minqing.bboxLayers",
        {
            "api": url_for("api.layers_index"),
            "crs": display_crs_for(settings.basemap),
            "layers": layers,
            "labels": ui,
        },
    )
    other = "en" if lang == "zh-CN" else "zh-CN"
    header = (
        f'<header class="mq-bar"><strong>{escape(t("app_name", lang))}</strong>'
        f'<a class="mq-lang" href="?lang={other}">{escape(t("language", lang))}</a>'
        f'<a href="{url_for("pages.login")}">{escape(t("login", lang))}</a></header>'
    )
    html = render(m, title=t("district_map", lang), lang=lang, body_html=header)
    resp = Response(html, mimetype="text/html")
    resp.set_cookie("lang", lang, samesite="Lax")
    return resp


@bp.route("/login", methods=["GET", "POST"])
@policy("auth.login")
def login():
    lang = negotiate_locale()
    error = None
    if request.method == "POST":
        try:
            user = authenticate(
                session=db_session(),
                username=request.form.get("username", ""),
                password=request.form.get("password", ""),
            )
        except Unauthorized as err:
            error = err.message(lang)
        else:
            session.clear()
            session["uid"], session["tv"] = user.id, user.token_version
            target = request.args.get("next", "")
            return redirect(
                target
                if target.startswith("/") and not target.startswith("//")
                else url_for("pages.district_map")
            )
    status = 401 if error else 200
    return render_template("login.html", ui=strings(lang), lang=lang, error=error), status


@bp.post("/logout")
@policy("auth.logout")
def logout():
    session.clear()
    return redirect(url_for("pages.district_map"))
