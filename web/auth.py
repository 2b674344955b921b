"""Who is asking, and whether the permission table lets them (one decorator on every route).

Pages use a server-side session (``layers.auth.sessions``): the signed Flask session cookie
holds its random id (``sid``) and the session's CSRF token (``web.csrf``), nothing else; a
logout, a timeout or "sign out everywhere" ends it on the server, so a copy of the cookie is
worth nothing afterwards. The API also accepts ``Authorization: Bearer <token>``: tokens are
signed with the app secret and carry the account's token version, so a password change or
reset, sign out everywhere or a deactivation revokes them at once.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

from layers.auth.login import Client, LoginPolicy
from layers.auth.models import User
from layers.auth.permissions import Grant, Principal, grant_for
from layers.auth.service import load_principal
from layers.auth.sessions import SessionPolicy, end_session, resolve_session, start_session
from layers.errors import Forbidden, Unauthorized
from web.db import db_session
from web.ratelimit import address_key, client_address

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
ANONYMOUS_PRINCIPAL = Principal()


SID_KEY = "sid"  # the server-side session's id, in the signed session cookie
CSRF_KEY = "csrf"  # the session's CSRF token (web.csrf), in the same cookie


def session_policy() -> SessionPolicy:
    settings = current_app.config["MINQING"]
    return SessionPolicy(idle_s=settings.session_idle_s, max_age_s=settings.session_max_age_s)


def login_policy() -> LoginPolicy:
    settings = current_app.config["MINQING"]
    return LoginPolicy(
        free_failures=settings.login_free_failures,
        delay_base_s=settings.login_delay_base_s,
        delay_max_s=settings.login_delay_max_s,
        address_failures=settings.login_address_failures,
        address_window_s=settings.login_address_window_s,
        name_key=str(current_app.config["SECRET_KEY"]).encode(),
    )


def client_info() -> Client:
    """The caller as the login throttle and the audit log see it: the address the trusted
    proxies saw (``web.ratelimit``, MINQING_TRUSTED_PROXIES), counted like the shared rate
    limits count it (IPv6 by its /64), and the user agent."""
    address = client_address()
    return Client(
        address=address,
        user_agent=request.user_agent.string or None,
        address_key=address_key(address),
    )


def new_csrf_token() -> str:
    """A fresh CSRF token in the session cookie (at login and for a pre-session)."""
    session[CSRF_KEY] = token = secrets.token_urlsafe(32)
    return token


def begin_session(user: User) -> None:
    """Sign ``user`` in: a new server-side session and CSRF token in a fresh cookie (nothing
    of the pre-login cookie survives: no session fixation)."""
    sid = start_session(
        session=db_session(), user=user, client=client_info(), policy=session_policy()
    )
    session.clear()
    session[SID_KEY] = sid
    new_csrf_token()


def current_session_id() -> str | None:
    return session.get(SID_KEY)


def end_browser_session() -> None:
    """Logout: the server-side session ends, the cookie is emptied."""
    sid = session.get(SID_KEY)
    if sid is not None:
        end_session(session=db_session(), token=sid, client=client_info())
    session.clear()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="minqing-api-token")


def issue_token(user_id: int, token_version: int) -> str:
    return _serializer().dumps({"uid": user_id, "tv": token_version})


def _principal_from_request() -> Principal:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        max_age = current_app.config["MINQING"].token_max_age_s
        try:
            data = _serializer().loads(header[7:].strip(), max_age=max_age)
        except BadSignature:
            raise Unauthorized("unauthorized") from None
        principal = load_principal(
            session=db_session(), user_id=data["uid"], token_version=data["tv"]
        )
        if principal is None:
            raise Unauthorized("unauthorized")
        return principal
    sid = session.get(SID_KEY)
    if sid is not None:
        principal = resolve_session(session=db_session(), token=sid, policy=session_policy())
        if principal is not None:
            return principal
        session.clear()  # ended, idle or expired: the browser forgets it too
    return ANONYMOUS_PRINCIPAL


def current_principal() -> Principal:
    if "principal" not in g:
        g.principal = _principal_from_request()
    return g.principal


def require(action: str) -> Grant:
    """The caller's grant for ``action``; 401 for anonymous callers, 403 for others."""
    principal = current_principal()
    grant = grant_for(action, principal)
    if grant is None:
        raise (Forbidden("forbidden") if principal.authenticated else Unauthorized("unauthorized"))
    return grant


def policy(action: str) -> Callable[[F], F]:
    """Attach ``action`` to a view and check it before the view runs."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.grant = require(action)
            return view(*args, **kwargs)

        wrapper.minqing_policy = action  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
