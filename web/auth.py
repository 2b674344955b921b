"""Who is asking, and whether the permission table lets them (one decorator on every route).

Pages use the Flask session cookie; the API also accepts ``Authorization: Bearer <token>``.
Tokens are signed with the app secret and carry the account's token version, so a password
reset or a deactivation revokes them at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

from layers.auth.permissions import Grant, Principal, grant_for
from layers.auth.service import load_principal
from layers.errors import Forbidden, Unauthorized
from web.db import db_session

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
ANONYMOUS_PRINCIPAL = Principal()


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
    uid, tv = session.get("uid"), session.get("tv")
    if uid is not None:
        principal = load_principal(session=db_session(), user_id=uid, token_version=tv)
        if principal is not None:
            return principal
        session.clear()
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
