"""Server-side browser sessions: logout ends one, "sign out everywhere" ends them all.

The browser's cookie holds a random session id; the table ``auth_sessions`` keeps only its
SHA-256, the account, the account's token version at login, when it was last used and when it
ends. A session counts while it is not revoked, was used within ``idle_s``, is younger than
``max_age_s`` and its token version is the account's: moving the version (password change or
reset, sign out everywhere, deactivation) ends every session and every bearer token at once.

Keyword-only functions; each owns its transaction.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from layers.auth.login import Client, LoginPolicy, check_password, record_event
from layers.auth.models import AuthSession, User
from layers.auth.permissions import Principal
from layers.auth.service import check_new_password, load_principal
from layers.errors import Forbidden, NotFound, Unauthorized

logger = logging.getLogger(__name__)

PURGE_AFTER = timedelta(days=1)  # ended sessions are deleted this long after their end


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 8 * 3600
    max_age_s: float = 24 * 3600
    touch_s: float = 60.0  # last_seen_at is written at most this often (idle precision)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _alive(row: AuthSession, user: User, policy: SessionPolicy, now: datetime) -> bool:
    return (
        row.revoked_at is None
        and now < row.expires_at
        and now - row.last_seen_at < timedelta(seconds=policy.idle_s)
        and user.active
        and user.token_version == row.token_version
    )


def start_session(
    *,
    session: Session,
    user: User,
    client: Client,
    policy: SessionPolicy,
    now: datetime | None = None,
) -> str:
    """A new session for ``user`` (already authenticated); returns the id for the cookie."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    session.add(
        AuthSession(
            token_sha256=_digest(token),
            user_id=user.id,
            token_version=user.token_version,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=policy.max_age_s),
            address=client.address and client.address[:64],
            user_agent=client.user_agent and client.user_agent[:256],
        )
    )
    session.execute(delete(AuthSession).where(AuthSession.expires_at < now - PURGE_AFTER))
    session.commit()
    return token


def resolve_session(
    *, session: Session, token: str, policy: SessionPolicy, now: datetime | None = None
) -> Principal | None:
    """The principal of a live session, or None (unknown, ended, idle, expired, or the
    account changed since). Marks it used (at most once per ``touch_s``)."""
    now = now or datetime.now(UTC)
    found = session.execute(
        select(AuthSession, User)
        .join(User, User.id == AuthSession.user_id)
        .where(AuthSession.token_sha256 == _digest(token))
    ).first()
    if found is None:
        return None
    row, user = found
    if not _alive(row, user, policy, now):
        return None
    if now - row.last_seen_at >= timedelta(seconds=policy.touch_s):
        row.last_seen_at = now
        session.commit()
    # the account is in the session already (the join): no second read
    return load_principal(session=session, user_id=user.id, token_version=row.token_version)


def end_session(
    *, session: Session, token: str, client: Client, now: datetime | None = None
) -> None:
    """Logout: the session ends now (a copy of its cookie is worth nothing from here on)."""
    now = now or datetime.now(UTC)
    row = session.scalar(select(AuthSession).where(AuthSession.token_sha256 == _digest(token)))
    if row is None or row.revoked_at is not None:
        return
    row.revoked_at = now
    user = session.get(User, row.user_id)
    record_event(session, user=user, client=client, channel="form", outcome="logout", now=now)
    session.commit()


def _end_all(session: Session, user: User, now: datetime, keep: str | None = None) -> int:
    """Revoke every live session of ``user`` but ``keep``'s and move the token version (every
    bearer token and every other session ends); the caller commits."""
    stmt = update(AuthSession).where(
        AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(AuthSession.token_sha256 != _digest(keep))
    ended = session.execute(
        stmt.values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount
    user.token_version += 1
    if keep is not None:  # the session the change was made from goes on, with the new version
        session.execute(
            update(AuthSession)
            .where(AuthSession.token_sha256 == _digest(keep))
            .values(token_version=user.token_version)
            .execution_options(synchronize_session=False)
        )
    return ended


def sign_out_everywhere(
    *,
    session: Session,
    user_id: int,
    client: Client,
    channel: str,
    now: datetime | None = None,
) -> int:
    """End every session and every bearer token of the account; the number of sessions
    that were live."""
    now = now or datetime.now(UTC)
    user = session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise NotFound("unknown_user", username=str(user_id))
    ended = _end_all(session, user, now)
    record_event(
        session, user=user, client=client, channel=channel, outcome="signed_out_everywhere", now=now
    )
    session.commit()
    logger.info("%s signed out everywhere (%d sessions)", user.username, ended)
    return ended


def change_password(
    *,
    session: Session,
    user_id: int,
    current_password: str,
    new_password: str,
    keep_token: str | None,
    client: Client,
    login_policy: LoginPolicy,
    now: datetime | None = None,
) -> int:
    """Set a new password; the current one is required (through the login throttle, so a
    stolen session cannot guess it fast). Every other session and every bearer token ends;
    the session ``keep_token`` goes on. Returns the number of sessions ended."""
    now = now or datetime.now(UTC)
    check_new_password(new_password)
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise Unauthorized("unauthorized")
    try:
        check_password(
            session=session,
            username=user.username,
            password=current_password,
            client=client,
            channel="account",
            policy=login_policy,
            now=now,
            success_outcome=None,  # written below, with the change
            failure_outcome="password_change_failed",
        )
    except Unauthorized:
        raise Forbidden("wrong_password") from None
    user = session.get(User, user_id, with_for_update=True, populate_existing=True)
    assert user is not None
    user.password_hash = generate_password_hash(new_password)
    ended = _end_all(session, user, now, keep=keep_token)
    record_event(
        session, user=user, client=client, channel="account", outcome="password_changed", now=now
    )
    session.commit()
    logger.info("%s changed their password (%d other sessions ended)", user.username, ended)
    return ended


def live_sessions(
    *, session: Session, user_id: int, policy: SessionPolicy, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The account's live sessions, newest first (the account page lists them)."""
    now = now or datetime.now(UTC)
    user = session.get(User, user_id)
    if user is None:
        return []
    rows = session.scalars(
        select(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .order_by(AuthSession.last_seen_at.desc())
    ).all()
    return [
        {
            "id": r.id,
            "created_at": r.created_at,
            "last_seen_at": r.last_seen_at,
            "address": r.address,
            "user_agent": r.user_agent,
            "token_sha256": r.token_sha256,
        }
        for r in rows
        if _alive(r, user, policy, now)
    ]


def is_token(row: dict[str, Any], token: str | None) -> bool:
    """Whether a row of ``live_sessions`` is the session ``token`` names."""
    return token is not None and row["token_sha256"] == _digest(token)
