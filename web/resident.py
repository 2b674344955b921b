"""Pages residents reach without an account (from a grid's QR code)."""

from __future__ import annotations

import logging

import segno
from flask import Blueprint, current_app, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy.orm import Session

from layers.catalogues import venue_categories
from layers.coverage.service import venue_categories_present
from layers.grids.service import grid_bounds, grid_card
from layers.requests.offers import offer_count
from layers.requests.service import ticket_view
from web.auth import policy
from web.db import db_session
from web.i18n import (
    UI,
    catalogue_name,
    category_name,
    category_names,
    negotiate_locale,
    strings,
    t,
)
from web.maps import (
    attach_script,
    data_bounds,
    display_crs_for,
    layers_map,
    page_response,
    panel_css,
    render,
)

# services a resident looks for first (venue category codes of data/catalogues)
RESIDENT_SERVICES = (
    "community_centre",
    "clinic",
    "pharmacy",
    "elderly_care",
    "market",
    "convenience",
    "kindergarten",
    "school",
    "library",
    "park",
)

logger = logging.getLogger(__name__)
bp = Blueprint("resident", __name__)


@bp.get("/grids/<code>/card")
@policy("pages.service_card")
def service_card(code: str):
    """A printable service card: QR code to the resident page with this grid preselected."""
    lang = negotiate_locale()
    card = grid_card(session=db_session(), code=code)
    target = url_for("resident.home", grid=card.code, _external=True)
    qr = segno.make(target, error="m")
    # segno renders the SVG from our own URL; nothing user-supplied reaches this markup
    qr_svg = Markup(qr.svg_inline(scale=4, border=2, omitsize=True))
    return render_template(
        "service_card.html", card=card, qr_svg=qr_svg, target=target, ui=strings(lang), lang=lang
    )


def _services(session: Session, lang: str) -> list[dict[str, str]]:
    """The service chips, in ``RESIDENT_SERVICES`` order: those with venues in the data (a
    chip that finds nothing nearby helps no one), or all of them when there are none yet."""
    by_code = {v.code: v for v in venue_categories()}
    codes = [c for c in RESIDENT_SERVICES if c in by_code]
    present = venue_categories_present(session)
    codes = [c for c in codes if c in present] or codes
    return [{"code": c, "name": catalogue_name(by_code[c], lang)} for c in codes]


def _tz() -> str:
    return current_app.config["MINQING"].timezone


@bp.get("/r")
@policy("pages.resident")
def home():
    """Where am I, the nearest service points, my 15-minute circle, and a request form."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    session = db_session()
    grid = None
    code = request.args.get("grid")
    if code:
        grid = grid_card(session=session, code=code)  # unknown grid: the friendly 404 page
    bounds = grid_bounds(session, grid.code) if grid else data_bounds(session)
    ui = strings(lang)
    m = layers_map(
        bounds=bounds,
        settings=settings,
        ui=ui,
        extra_css=panel_css("css/resident.css"),
    )
    start = grid.centroid_lonlat if grid else None
    attach_script(
        m,
        url_for("assets.static", filename="js/resident.js"),
        "Minqing.resident",
        {
            "lang": lang,
            "crs": display_crs_for(settings.basemap),
            "grid": {"code": grid.code, "name": grid.name} if grid else None,
            "start": start,
            "categories": [
                {"code": code, "name": name} for code, name in category_names(lang).items()
            ],
            "services": _services(session, lang),
            "urls": {
                "nearest": url_for("circles_api.nearest_venues")
                if "circles_api.nearest_venues" in current_app.view_functions
                else None,
                "submit": url_for("requests_api.create_request"),
                "ticket": url_for("resident.ticket_page", ticket="TICKET"),
            },
            "labels": ui,
        },
    )
    html = render(
        m,
        title=t("resident_title", lang),
        lang=lang,
        body_html=render_template("resident_panel.html", ui=ui, grid=grid, lang=lang),
    )
    return page_response(html, lang, personal=False)


@bp.get("/t/<ticket>")
@policy("pages.resident")
def ticket_page(ticket: str):
    """The resident's ticket: status, timeline and, once resolved, a 1–5 star rating."""
    lang = negotiate_locale()
    session = db_session()
    view = ticket_view(session=session, ticket=ticket, tz=_tz())
    # dispatched to a volunteer (or offered to several) and not taken yet: "待志愿者接单", no names
    awaiting = (
        view["status"] == "assigned"
        and not view.get("assignee")
        and offer_count(session, view["id"]) > 0
    )
    return render_template(
        "ticket.html",
        view=view,
        awaiting_volunteer=awaiting,
        ticket=ticket,
        ui=strings(lang),
        lang=lang,
        status_label=lambda s: t(f"status_{s}", lang),
        action_label=lambda a: t(f"action_{a}", lang) if f"action_{a}" in UI else a,
        category_name=category_name(view.get("category"), lang),
        rate_url=url_for("requests_api.ticket_rate", ticket=ticket),
        withdraw_url=url_for("requests_api.ticket_withdraw", ticket=ticket),
    )
