"""The account page: one's signed-in devices, sign out everywhere, password change."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for

from layers.auth.sessions import change_password, is_token, live_sessions, sign_out_everywhere
from layers.errors import BadRequest, MinqingError
from web.auth import (
    client_info,
    current_principal,
    current_session_id,
    end_browser_session,
    login_policy,
    policy,
    session_policy,
)
from web.db import db_session
from web.i18n import negotiate_locale, strings

logger = logging.getLogger(__name__)
bp = Blueprint("account", __name__)


def _page(lang: str, *, error: MinqingError | None = None, done: str | None = None):
    principal = current_principal()
    sid = current_session_id()
    tz = ZoneInfo(current_app.config["MINQING"].timezone)
    rows = live_sessions(session=db_session(), user_id=principal.user_id, policy=session_policy())
    sessions = [
        {
            "created_at": r["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "last_seen_at": r["last_seen_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "address": r["address"] or "",
            "user_agent": r["user_agent"] or "",
            "current": is_token(r, sid),
        }
        for r in rows
    ]
    html = render_template(
        "account.html",
        ui=strings(lang),
        lang=lang,
        username=principal.username,
        sessions=sessions,
        error=error.message(lang) if error else None,
        done=done,
    )
    resp = make_response(html, error.status if error else 200)
    resp.headers["Cache-Control"] = "no-store"
    if error is not None and "retry_after_s" in error.details:
        resp.headers["Retry-After"] = str(error.details["retry_after_s"])
    return resp


@bp.get("/account")
@policy("pages.account")
def account_page():
    done = request.args.get("done")
    return _page(negotiate_locale(), done=done if done == "password" else None)


@bp.post("/account/password")
@policy("auth.password_change")
def password():
    """Change the password (the current one required); every other session and every
    bearer token of the account ends, this session goes on."""
    lang = negotiate_locale()
    form = request.form
    new = form.get("new_password", "")
    try:
        if new != form.get("confirm_password", ""):
            raise BadRequest("passwords_differ")
        change_password(
            session=db_session(),
            user_id=current_principal().user_id,
            current_password=form.get("current_password", ""),
            new_password=new,
            keep_token=current_session_id(),
            client=client_info(),
            login_policy=login_policy(),
        )
    except MinqingError as err:
        return _page(lang, error=err)
    return redirect(url_for("account.account_page", done="password"))


@bp.post("/account/sessions/revoke")
@policy("auth.sessions_revoke")
def sign_out_all():
    """Sign out everywhere (as POST /api/v1/auth/sessions/revoke), then the login page."""
    sign_out_everywhere(
        session=db_session(),
        user_id=current_principal().user_id,
        client=client_info(),
        channel="account",
    )
    end_browser_session()
    return redirect(url_for("pages.login"))
