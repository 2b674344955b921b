"""CSRF protection for every write a browser's cookie authenticates, and for login.

A per-session token (the synchronizer pattern): it lives in the signed session cookie
(``web.auth.CSRF_KEY``), and a write must send it back, as the ``X-CSRF-Token`` header (the
pages' fetch helpers) or as the ``csrf_token`` field (HTML forms: login, logout, the account
page). Page scripts read it from the ``mq_csrf`` cookie, a readable copy this module keeps in
step with the session: another site can neither read it nor forge the signed session cookie,
so a ``mq_csrf`` cookie planted from elsewhere gains nothing.

Which writes need it:
- every unsafe method (POST, PUT, PATCH, DELETE) whose request carries a session id in its
  cookie, i.e. one the cookie may authenticate (staff and leader actions, drafts, logout, the
  account page, a signed-in resident's intake or ticket action);
- login, whose form carries a token tied to a pre-session cookie (set when the form is
  shown), so another site cannot sign a victim into the attacker's account.

Which do not: ``POST /api/v1/auth/token`` (``NO_AMBIENT_CREDENTIAL``), requests with ``Authorization: Bearer`` (the browser never attaches that
header by itself: there is no ambient credential to abuse, and such a request's cookie is
ignored, see ``web.auth``), and writes without a session cookie, such as anonymous intake or a
resident's ticket actions (the ticket in the URL is the credential; nothing ambient rides
along, and a forged anonymous request is one anyone could send directly).
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, Response, current_app, request, session

from layers.errors import Forbidden
from web.auth import CSRF_KEY, SID_KEY, new_csrf_token

logger = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "mq_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# views that check the token themselves (the login form answers a failure with a fresh form)
SELF_CHECKING = frozenset({"pages.login"})
# views the cookie plays no part in, whoever sends it: no ambient credential to abuse
NO_AMBIENT_CREDENTIAL = frozenset(
    {
        # a bearer token for the username and password in the JSON body (a cross-site form
        # cannot send JSON, and another site cannot read the answer)
        "api.auth_token",
    }
)


def csrf_token() -> str:
    """This session's token, made on first use (the login form's pre-session token)."""
    token = session.get(CSRF_KEY)
    return token if isinstance(token, str) and token else new_csrf_token()


def token_ok() -> bool:
    """Whether the request sends back this session's token (header, else form field)."""
    expected = session.get(CSRF_KEY)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = request.form.get(CSRF_FIELD)
    if not isinstance(expected, str) or not expected or not sent:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def _needs_token() -> bool:
    if request.method in SAFE_METHODS or request.routing_exception is not None:
        return False
    if request.endpoint in SELF_CHECKING or request.endpoint in NO_AMBIENT_CREDENTIAL:
        return False
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return False  # no ambient credential: the cookie is not what authenticates it
    return session.get(SID_KEY) is not None


def _protect() -> None:
    if _needs_token() and not token_ok():
        logger.warning("CSRF token missing or wrong: %s %s", request.method, request.path)
        raise Forbidden("csrf_failed")


def _mirror(resp: Response) -> Response:
    """Keep the readable ``mq_csrf`` copy in step with the session's token."""
    if not session.accessed:
        return resp
    token = session.get(CSRF_KEY)
    have = request.cookies.get(CSRF_COOKIE)
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure
    if token and have != token:
        resp.set_cookie(CSRF_COOKIE, token, samesite="Lax", secure=secure, httponly=False)
    elif not token and have:
        resp.delete_cookie(CSRF_COOKIE, samesite="Lax", secure=secure, httponly=False)
    return resp


def register(app: Flask) -> None:
    app.before_request(_protect)
    app.after_request(_mirror)
    app.jinja_env.globals["csrf_token"] = csrf_token
