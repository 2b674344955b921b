"""Logging in: a delay per account name, a limit per address, one timing, an audit log.

- **Per account name, an exponential delay, never a lock.** The first ``free_failures``
  failures cost nothing; after that each attempt must wait ``delay_base_s``, then twice as
  long after each further failure, capped at ``delay_max_s``. The right password once the
  delay has passed always works (and forgets the failures), so an attacker can slow a grid
  leader's login by at most the cap, never lock it. Names that name no account are counted
  the same way, so a delay says nothing about which names exist.
- **Per client address, a limit**: at most ``address_failures`` failures per
  ``address_window_s`` window; then the address waits for the window to end.
- **An attempt counts before its password is checked** (one short transaction reserves it,
  under row locks), so 280 guesses sent at once get the free ones checked and the rest
  refused, instead of all racing past the counter.
- **One timing**: an unknown or deactivated account checks the password against a dummy hash
  made the same way, so a failure takes as long whether the name exists or not.
- **The audit log** (``login_events``): who, when, address, user agent, channel and outcome;
  never a password, and the name as typed only when it names an account.

The general rate limits (shared by every worker, issue 16 item 4) are another mechanism;
this one only counts failed logins, in its own table ``login_throttle``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from layers.auth.models import LoginEvent, LoginThrottle, User
from layers.errors import RateLimited, Unauthorized

logger = logging.getLogger(__name__)

MAX_USER_AGENT = 256
MAX_ADDRESS = 64


@dataclass(frozen=True)
class LoginPolicy:
    free_failures: int = 3
    delay_base_s: float = 1.0
    delay_max_s: float = 300.0
    address_failures: int = 30
    address_window_s: float = 900.0
    forget_after_s: float = 24 * 3600  # an account name's failures after a quiet day
    name_key: bytes = b""  # keys the hash of account names in login_throttle (app secret)

    def delay_after(self, failures: int) -> float:
        """How long an account name waits after its ``failures``-th failure in a row."""
        if failures <= self.free_failures:
            return 0.0
        return min(self.delay_max_s, self.delay_base_s * 2 ** (failures - self.free_failures - 1))


@dataclass(frozen=True)
class Client:
    """Where an attempt comes from, as the audit log keeps it."""

    address: str | None = None
    user_agent: str | None = None
    # what the address counts under in the per-address limit (an IPv6 address by its /64:
    # one client holds the whole prefix); the address itself when not given
    address_key: str | None = None


@functools.cache
def _dummy_hash() -> str:
    """A hash made like every account's (werkzeug's default method), of no one's password."""
    return generate_password_hash("minqing: no such account")


def password_matches(user: User | None, password: str) -> bool:
    """Whether ``password`` is ``user``'s, taking as long for an unknown or deactivated
    account (a dummy hash is checked) as for a wrong password."""
    if user is None or not user.active:
        check_password_hash(_dummy_hash(), password)
        return False
    return check_password_hash(user.password_hash, password)


def _name_key(policy: LoginPolicy, username: str) -> str:
    # keyed: a password typed into the name field must not sit here as a plain SHA-256
    digest = hmac.new(policy.name_key, username.strip().casefold().encode(), hashlib.sha256)
    return "u:" + digest.hexdigest()


def _address_key(client: Client) -> str:
    return "a:" + (client.address_key or client.address or "unknown")[:MAX_ADDRESS]


def record_event(
    session: Session,
    *,
    user: User | None,
    client: Client,
    channel: str,
    outcome: str,
    now: datetime | None = None,
) -> None:
    """Add one audit row (the caller commits)."""
    session.add(
        LoginEvent(
            at=now or datetime.now(UTC),
            user_id=user.id if user is not None else None,
            username=user.username if user is not None else None,
            address=(client.address or None) and client.address[:MAX_ADDRESS],
            user_agent=(client.user_agent or None) and client.user_agent[:MAX_USER_AGENT],
            channel=channel,
            outcome=outcome,
        )
    )


def _reserve(
    session: Session, keys: tuple[str, str], policy: LoginPolicy, now: datetime
) -> float | None:
    """Count one attempt for (address key, account key), or the seconds to wait when either
    refuses it now. Rows are locked in key order (no deadlock between two attempts)."""
    address_key, account_key = keys
    session.execute(
        pg_insert(LoginThrottle)
        .values(
            [
                {"key": k, "failures": 0, "window_start": now, "updated_at": now}
                for k in sorted(keys)
            ]
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    rows = {
        r.key: r
        for r in session.scalars(
            select(LoginThrottle)
            .where(LoginThrottle.key.in_(keys))
            .order_by(LoginThrottle.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    address, account = rows[address_key], rows[account_key]
    window = timedelta(seconds=policy.address_window_s)
    if now - address.window_start >= window:  # a new window for the address
        address.failures, address.window_start, address.next_allowed_at = 0, now, None
    if now - account.updated_at >= timedelta(seconds=policy.forget_after_s):
        account.failures, account.next_allowed_at = 0, None
    waits = [
        (r.next_allowed_at - now).total_seconds()
        for r in (address, account)
        if r.next_allowed_at is not None and r.next_allowed_at > now
    ]
    if waits:
        return max(waits)
    account.failures += 1
    delay = policy.delay_after(account.failures)
    account.next_allowed_at = now + timedelta(seconds=delay) if delay > 0 else None
    account.updated_at = now
    address.failures += 1
    address.updated_at = now
    if address.failures >= policy.address_failures:
        address.next_allowed_at = address.window_start + window
    return None


def _forgive(session: Session, keys: tuple[str, str], policy: LoginPolicy, now: datetime) -> None:
    """The right password: the account name's failures are forgotten and the attempt no
    longer counts against the address (its other failures still do)."""
    address_key, account_key = keys
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key))
    left = func.greatest(LoginThrottle.failures - 1, 0)
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == address_key)
        .values(
            failures=left,
            next_allowed_at=case(
                (left < policy.address_failures, None), else_=LoginThrottle.next_allowed_at
            ),
        )
        .execution_options(synchronize_session=False)
    )
    # rows nobody has used for a day (names tried once, addresses gone quiet)
    cutoff = now - timedelta(seconds=policy.forget_after_s)
    session.execute(delete(LoginThrottle).where(LoginThrottle.updated_at < cutoff))


def check_password(
    *,
    session: Session,
    username: str,
    password: str,
    client: Client,
    channel: str,
    policy: LoginPolicy,
    now: datetime | None = None,
    success_outcome: str | None = "success",
    failure_outcome: str = "failure",
) -> User:
    """The active account ``username`` if ``password`` is its own, through the throttle and
    into the audit log (a success only with ``success_outcome``); commits. 429 ``login_throttled`` (``retry_after_s``) while a delay
    or the address limit holds, 401 ``invalid_credentials`` otherwise."""
    now = now or datetime.now(UTC)
    user = session.scalar(select(User).where(User.username == username))
    keys = (_address_key(client), _name_key(policy, username))
    wait = _reserve(session, keys, policy, now)
    if wait is not None:
        record_event(
            session, user=user, client=client, channel=channel, outcome="throttled", now=now
        )
        session.commit()
        logger.warning("login throttled from %s (%s)", client.address, channel)
        raise RateLimited("login_throttled", retry_after_s=max(1, math.ceil(wait)))
    session.commit()  # the attempt counts before the (slow) password check
    if not password_matches(user, password):
        record_event(
            session, user=user, client=client, channel=channel, outcome=failure_outcome, now=now
        )
        session.commit()
        logger.info("failed login from %s (%s)", client.address, channel)
        raise Unauthorized("invalid_credentials")
    assert user is not None
    _forgive(session, keys, policy, now)
    if success_outcome is not None:
        record_event(
            session, user=user, client=client, channel=channel, outcome=success_outcome, now=now
        )
    session.commit()
    return user


def log_in(
    *,
    session: Session,
    username: str,
    password: str,
    client: Client,
    channel: str,
    policy: LoginPolicy,
    now: datetime | None = None,
) -> User:
    """A login through the form (``channel`` form) or for a bearer token (``token``)."""
    return check_password(
        session=session,
        username=username,
        password=password,
        client=client,
        channel=channel,
        policy=policy,
        now=now,
    )
