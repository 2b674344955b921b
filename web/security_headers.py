"""Security headers on every response (issue 16, item 2): a nonce-based Content-Security-Policy
with ``strict-dynamic`` on pages, a closed one on everything else, nosniff, no framing, a
Referrer-Policy that keeps tickets out of Referer, a Permissions-Policy, HSTS over HTTPS,
``Cache-Control: no-store`` unless a view says its response may be cached, and Secure cookies
over HTTPS.

Pages put ``web.csp.csp_nonce()`` on every ``<script>``: Jinja templates through the
``csp_nonce()`` global, folium pages through ``web.csp.nonce_scripts`` (``web.maps.render``).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request, request_finished

from web.csp import csp_nonce
from web.log_redaction import redact_werkzeug
from web.maps import basemap_origins

logger = logging.getLogger(__name__)

# Everything a page may do. Scripts: only those carrying this response's nonce, and what they
# load (strict-dynamic); 'self' is only a fallback for browsers without nonces (CSP 1), which
# CSP 2+ browsers ignore next to a nonce. No 'unsafe-inline' / 'unsafe-eval' for scripts.
#
# Styles: 'unsafe-inline' on purpose. folium writes its map sizes as <style> blocks, and Leaflet,
# markercluster, VectorGrid and Geoman set style attributes on the elements they create; a
# nonce on the <style> blocks would make browsers ignore 'unsafe-inline' and so block those
# attributes (style-src-attr is not in every browser we serve). Inline CSS runs no script; what
# it could still do (restyle, or leak an attribute by a selector) needs markup injected into the
# page, which item 1 of issue 16 (text nodes only) shuts.
_PAGE_POLICY = (
    "default-src 'none'",
    "script-src 'nonce-{nonce}' 'strict-dynamic' 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:{tile_hosts}",  # basemap tiles come from their hosts by design
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    # nothing embeds our pages, the printable service card included (it is printed from a tab)
    "frame-ancestors 'none'",
)
# JSON, CSV, tiles, static files: nothing to run, nothing to embed
NON_PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'"

# "定位我" asks for the position; every other powerful feature is off for us and any frame
PERMISSIONS_POLICY = ", ".join(
    [
        "geolocation=(self)",
        *(
            f"{feature}=()"
            for feature in (
                "accelerometer",
                "autoplay",
                "camera",
                "display-capture",
                "encrypted-media",
                "fullscreen",
                "gyroscope",
                "magnetometer",
                "microphone",
                "midi",
                "payment",
                "picture-in-picture",
                "publickey-credentials-get",
                "screen-wake-lock",
                "usb",
                "xr-spatial-tracking",
            )
        ),
    ]
)
# one year; without includeSubDomains: other hosts of the deployment's domain are not ours
HSTS = "max-age=31536000"

# Resident tickets are secrets carried in URLs: pages and API answers under these send no
# Referer at all; elsewhere a Referer names only our origin to other sites.
TICKET_PATH_PREFIXES = ("/t/", "/api/v1/tickets/")


def page_policy(nonce: str, tile_hosts: tuple[str, ...] = ()) -> str:
    hosts = "".join(f" {h}" for h in tile_hosts)
    return "; ".join(_PAGE_POLICY).format(nonce=nonce, tile_hosts=hosts)


def _set_headers(response: Response) -> Response:
    headers = response.headers
    if response.mimetype == "text/html":
        settings = current_app.config["MINQING"]
        headers["Content-Security-Policy"] = page_policy(
            csp_nonce(), basemap_origins(settings.basemap)
        )
    else:
        headers["Content-Security-Policy"] = NON_PAGE_POLICY
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers without CSP 2
    headers["Permissions-Policy"] = PERMISSIONS_POLICY
    headers["Referrer-Policy"] = (
        "no-referrer"
        if request.path.startswith(TICKET_PATH_PREFIXES)
        else "strict-origin-when-cross-origin"
    )
    if request.is_secure:  # the scheme werkzeug's ProxyFix set, when the app trusts a proxy
        headers["Strict-Transport-Security"] = HSTS
    # what a view does not declare cacheable (static files, tiles) no cache keeps: personal
    # data, tickets, logins, and pages whose nonce must not be replayed
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    return response


def _secure_cookies(_app: Flask, response: Response, **_extra: object) -> None:
    """Over HTTPS every cookie is Secure. This runs on ``request_finished``, after the session
    cookie is written (Flask saves the session after the after_request functions)."""
    if not request.is_secure:
        return
    cookies = response.headers.getlist("Set-Cookie")
    if not cookies:
        return
    del response.headers["Set-Cookie"]
    for cookie in cookies:
        secure = any(p.strip().lower() == "secure" for p in cookie.split(";")[1:])
        response.headers.add("Set-Cookie", cookie if secure else f"{cookie}; Secure")


def register(app: Flask) -> None:
    """Add the headers to every response of ``app`` and ``csp_nonce()`` to its templates;
    werkzeug's request log (development and test servers) keeps tickets out."""
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_set_headers)
    request_finished.connect(_secure_cookies, app)
    redact_werkzeug()
