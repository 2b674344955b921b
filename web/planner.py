"""The planner map (规划): pick a community, open or create a draft of its grids, edit it with
Leaflet-Geoman, see validation and impact beside the map, publish, undo, compare generations.

The page acts through the drafts API (web/drafts_api.py); this blueprint adds the page itself
and ``GET /api/v1/generations/<n>/grids?community=`` (the grids a community had at generation
``n``, for the side-by-side comparison of two generations).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request, url_for
from shapely import wkb
from shapely.geometry import mapping
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import BadRequest, NotFound
from layers.grids.repo import current_generation, live_sql
from web.auth import current_principal, policy
from web.db import db_session
from web.i18n import negotiate_locale, strings, t
from web.maps import (
    STANDARD_LAYERS,
    attach_script,
    data_bounds,
    display_crs_for,
    layers_map,
    page_response,
    panel_css,
    render,
    url_template,
    vendor,
)

logger = logging.getLogger(__name__)
bp = Blueprint("planner", __name__)

GEOMAN = "@geoman-io/leaflet-geoman-free/dist/leaflet-geoman"


def community_list(session: Session, lang: str, generation: int) -> list[dict[str, Any]]:
    """Every community with its number of grids live at ``generation`` (the planner's picker)."""
    rows = session.execute(
        text(
            "SELECT c.code, c.name, c.name_en, (SELECT count(*) FROM grids g"
            f" WHERE g.community_id = c.id AND {live_sql('g', ':cur')}) AS n"
            " FROM areas c WHERE c.level = 'community' ORDER BY c.code"
        ),
        {"cur": generation},
    ).all()
    return [
        {
            "code": r.code,
            "name": (r.name_en or r.name) if lang == "en" else r.name,
            "grids": int(r.n),
        }
        for r in rows
    ]


def generation_grids(*, session: Session, generation: int, community_code: str) -> dict[str, Any]:
    """The grid rows a community had at ``generation`` as a GeoJSON FeatureCollection."""
    if generation != 0 and not session.scalar(
        text("SELECT 1 FROM generations WHERE id = :g"), {"g": generation}
    ):
        raise NotFound("unknown_generation", generation=generation)
    community_id = session.scalar(
        text("SELECT id FROM areas WHERE level = 'community' AND code = :c"),
        {"c": community_code},
    )
    if community_id is None:
        raise NotFound("unknown_area", code=community_code)
    rows = session.execute(
        text(
            "SELECT id, code, name, households, population, generation_low, generation_high,"
            " ST_AsBinary(geom) AS g FROM grids"
            f" WHERE community_id = :c AND {live_sql('', ':n')} ORDER BY code"
        ),
        {"c": community_id, "n": generation},
    ).all()
    return {
        "type": "FeatureCollection",
        "generation": generation,
        "community_code": community_code,
        "features": [
            {
                "type": "Feature",
                "id": r.id,
                "geometry": mapping(wkb.loads(bytes(r.g))),
                "properties": {
                    "id": r.id,
                    "code": r.code,
                    "name": r.name,
                    "households": r.households,
                    "population": r.population,
                    "generation_low": r.generation_low,
                    "generation_high": r.generation_high,
                },
            }
            for r in rows
        ],
    }


@bp.get("/api/v1/generations/<int:generation>/grids")
@policy("generations.read")
def grids_at_generation(generation: int):
    """``?community=<12-digit code>``: that community's grids as they were at ``generation``."""
    code = request.args.get("community")
    if not code:
        raise BadRequest("missing_field", field="community")
    return jsonify(
        generation_grids(session=db_session(), generation=generation, community_code=code)
    )


@bp.get("/planner")
@policy("pages.planner")
def planner_page():
    """The planner map; ``?community=`` preselects a community, ``?draft=`` opens a draft."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    session = db_session()
    ui = strings(lang)
    generation = current_generation(session)
    communities = community_list(session, lang, generation)
    wanted = request.args.get("community")
    selected = wanted if any(c["code"] == wanted for c in communities) else None
    draft = request.args.get("draft", type=int)
    m = layers_map(
        bounds=data_bounds(session),
        settings=settings,
        ui=ui,
        layer_specs=[s for s in STANDARD_LAYERS if s["name"] == "buildings"],
        extra_js=(vendor(f"{GEOMAN}.js"),),
        extra_css=(vendor(f"{GEOMAN}.css"), *panel_css("css/planner.css")),
    )
    other = "en" if lang == "zh-CN" else "zh-CN"
    attach_script(
        m,
        url_for("assets.static", filename="js/planner.js"),
        "Minqing.planner",
        {
            "lang": lang,
            "crs": display_crs_for(settings.basemap),
            "communities": communities,
            "community": selected,
            "draft": draft,
            "generation": generation,
            "urls": {
                "drafts": url_for("drafts_api.list_drafts"),
                "draft": url_template("drafts_api.get_draft", "draft_id"),
                "edits": url_template("drafts_api.edit_draft", "draft_id"),
                "upload": url_template("drafts_api.upload_draft", "draft_id"),
                "impact": url_template("drafts_api.draft_impact", "draft_id"),
                "publish": url_template("drafts_api.publish_draft", "draft_id"),
                "generations": url_for("drafts_api.generations"),
                "restore": url_template("drafts_api.restore_generation", "generation"),
                "generation_grids": url_template("planner.grids_at_generation", "generation"),
                "login": url_for("pages.login", next=url_for("planner.planner_page")),
            },
            "labels": ui,
        },
    )
    nav = {
        "logout": url_for("pages.logout"),
        "switch": f"?lang={other}" + (f"&community={selected}" if selected else ""),
        "user": current_principal().username,
    }
    body = render_template(
        "planner_panel.html", ui=ui, lang=lang, nav=nav, communities=communities, selected=selected
    )
    body += render_template("planner_dialogs.html", ui=ui)
    html = render(m, title=t("planner_title", lang), lang=lang, body_html=body)
    return page_response(html, lang)
