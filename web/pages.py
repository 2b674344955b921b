"""HTML pages: the district map and login."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import escape

from layers.auth.login import log_in
from layers.errors import Forbidden, MinqingError, RateLimited, Unauthorized
from web.auth import begin_session, client_info, end_browser_session, login_policy, policy
from web.csrf import token_ok
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


# Characters a ``next`` target may hold: printable ASCII without the backslash (browsers read
# "\\" as "/" and drop tabs and newlines, so "/\\evil" and "/<TAB>/evil" lead off-site).
_NEXT_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"\\"}


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site ("/staff?lang=en"), else None: not
    "//host", "/\\host", "https://host", nor anything with controls, spaces or backslashes."""
    if not target or len(target) > 2000 or not target.startswith("/"):
        return None
    if target.startswith("//") or not set(target) <= _NEXT_CHARS:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@policy("auth.login")
def login():
    """The login form. Its token is tied to a pre-session cookie (login CSRF); failures go
    through the throttle (a delay per account name, a limit per address: 429)."""
    lang = negotiate_locale()
    error: MinqingError | None = None
    if request.method == "POST":
        if not token_ok():
            error = Forbidden("csrf_failed")
        else:
            try:
                user = log_in(
                    session=db_session(),
                    username=request.form.get("username", ""),
                    password=request.form.get("password", ""),
                    client=client_info(),
                    channel="form",
                    policy=login_policy(),
                )
            except (Unauthorized, RateLimited) as err:
                error = err
            else:
                begin_session(user)
                target = safe_next(request.args.get("next"))
                return redirect(target or url_for("pages.district_map"))
    resp = make_response(
        render_template(
            "login.html", ui=strings(lang), lang=lang, error=error and error.message(lang)
        ),
        error.status if error else 200,
    )
    if error is not None and "retry_after_s" in error.details:
        resp.headers["Retry-After"] = str(error.details["retry_after_s"])
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/logout")
@policy("auth.logout")
def logout():
    """End this browser's session on the server (its CSRF token is checked by web.csrf)."""
    end_browser_session()
    return redirect(url_for("pages.district_map"))
