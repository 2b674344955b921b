"""HTML pages: the district map and login."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
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
from web.maps import data_bounds, layers_map, page_response, render

logger = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)


@bp.get("/")
@policy("pages.district_map")
def district_map():
    """The district on a map: grids with code and households, buildings, venues."""
    lang = negotiate_locale()
    settings = current_app.config["MINQING"]
    m = layers_map(bounds=data_bounds(db_session()), settings=settings, ui=strings(lang))
    other = "en" if lang == "zh-CN" else "zh-CN"
    header = (
        f'<header class="mq-bar"><strong>{escape(t("app_name", lang))}</strong>'
        f'<a class="mq-lang" href="?lang={other}">{escape(t("language", lang))}</a>'
        f'<a href="{url_for("pages.login")}">{escape(t("login", lang))}</a></header>'
    )
    html = render(m, title=t("district_map", lang), lang=lang, body_html=header)
    return page_response(html, lang, personal=False)


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
