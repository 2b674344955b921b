"""Rate limits shared by every worker and process, and the client address they key on.

- The client address is ``REMOTE_ADDR``; with ``MINQING_TRUSTED_PROXIES=N`` (N reverse proxies
  in front of the app, each appending to X-Forwarded-For) it is the N-th entry from the right
  of X-Forwarded-For, and the scheme the N-th from the right of X-Forwarded-Proto (werkzeug's
  ``ProxyFix``). With 0 (the default) both headers are ignored: a client cannot choose its
  address. Set it to the number of proxies that really stand in front, never more.
- ``hit(bucket, key, limit, window_s) -> (allowed, retry_after_s)`` counts in PostgreSQL
  (``layers.ratelimits``: one statement); ``enforce`` raises 429 ``rate_limited`` whose
  ``retry_after_s`` becomes the Retry-After header (``web.errors``).
- Intake (``limit_intake``): anonymous submissions count per client address
  (``MINQING_INTAKE_RATE_LIMIT``, default 30/60), signed-in ones per account
  (``MINQING_INTAKE_ACCOUNT_RATE_LIMIT``, default 30/60). IPv6 addresses count per /64 (one
  subscriber's prefix), IPv4 per address.

Settings are read as the intake limit always was: ``app.config`` (tests), then the settings'
``extra``, then the environment.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from layers.auth.permissions import Principal
from layers.errors import RateLimited
from layers.ratelimits import service
from layers.ratelimits.service import Decision, Rule, parse_rule
from web.db import db_session

logger = logging.getLogger(__name__)

TRUSTED_PROXIES = "MINQING_TRUSTED_PROXIES"
INTAKE_RATE_LIMIT = "MINQING_INTAKE_RATE_LIMIT"
INTAKE_ACCOUNT_RATE_LIMIT = "MINQING_INTAKE_ACCOUNT_RATE_LIMIT"
DEFAULTS = {
    TRUSTED_PROXIES: "0",
    INTAKE_RATE_LIMIT: "30/60",
    INTAKE_ACCOUNT_RATE_LIMIT: "30/60",
}
IPV6_PREFIX = 64

StartResponse = Callable[..., Any]


def _setting(app: Flask, name: str) -> str:
    extra_key = name.removeprefix("MINQING_").lower()
    value = (
        app.config.get(name)
        or app.config["MINQING"].extra.get(extra_key)
        or os.environ.get(name)
        or DEFAULTS[name]
    )
    return str(value)


@functools.lru_cache(maxsize=32)
def _rule(raw: str) -> Rule:
    return parse_rule(raw)


def rule(name: str) -> Rule:
    """The configured rule ``name`` (e.g. ``INTAKE_RATE_LIMIT``) of the current app."""
    return _rule(_setting(current_app, name))


# -- the client address -------------------------------------------------------------------------
class TrustedProxies:
    """``ProxyFix`` with the trusted count read from the app's config at each request (so a
    test can change it); 0 passes the request through untouched."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app
        self._fixes: dict[int, ProxyFix] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        n = int(self.app.config.get(TRUSTED_PROXIES) or 0)
        if n <= 0:
            return self.wsgi_app(environ, start_response)
        fix = self._fixes.get(n)
        if fix is None:
            fix = self._fixes[n] = ProxyFix(self.wsgi_app, x_for=n, x_proto=n)
        return fix(environ, start_response)


def install(app: Flask) -> None:
    """Trust ``MINQING_TRUSTED_PROXIES`` proxies; refuse to start on a malformed limit."""
    n = int(_setting(app, TRUSTED_PROXIES))
    if n < 0:
        raise ValueError(f"{TRUSTED_PROXIES} must be ≥ 0, not {n}")
    app.config[TRUSTED_PROXIES] = n
    for name in (INTAKE_RATE_LIMIT, INTAKE_ACCOUNT_RATE_LIMIT):
        _rule(_setting(app, name))
    app.wsgi_app = TrustedProxies(app)  # type: ignore[method-assign]


def address_key(address: str) -> str:
    """The key one client's address counts under: IPv4 as is, IPv6 by its /64 prefix (an
    IPv4-mapped one as the IPv4 address); anything unparseable as given."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def client_address() -> str:
    """The client's address as the trusted proxies (if any) saw it."""
    return request.remote_addr or "unknown"


# -- counting -----------------------------------------------------------------------------------
def hit(bucket: str, key: str, limit: int, window_s: float) -> Decision:
    """Count one hit of ``key`` in ``bucket`` across every worker: (allowed, retry_after_s)."""
    return service.hit(session=db_session(), bucket=bucket, key=key, limit=limit, window_s=window_s)


def enforce(bucket: str, key: str, limit: int, window_s: float) -> None:
    """Count one hit; 429 ``rate_limited`` (with Retry-After) when over the limit."""
    allowed, retry_after_s = hit(bucket, key, limit, window_s)
    if not allowed:
        logger.debug("rate limited: %s %s", bucket, key)
        raise RateLimited("rate_limited", retry_after_s=round(retry_after_s, 1))


def limit_intake(principal: Principal) -> None:
    """Intake: a signed-in account counts per account, anyone else per client address."""
    if principal.authenticated:
        r = rule(INTAKE_ACCOUNT_RATE_LIMIT)
        enforce("intake.account", str(principal.user_id), r.limit, r.window_s)
    else:
        r = rule(INTAKE_RATE_LIMIT)
        enforce("intake.address", address_key(client_address()), r.limit, r.window_s)
