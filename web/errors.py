"""One handler renders every error as the DESIGN §7 envelope (HTML pages get a page)."""

from __future__ import annotations

import logging
import math

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from layers.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    MinqingError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from web.i18n import negotiate_locale

logger = logging.getLogger(__name__)

# Retry-After on every 429 and 503: the error's own ``retry_after_s`` (a rate limit's window,
# a login delay) or, for a 503, how soon the service may be back (a database restart).
RETRY_AFTER_S = {"db_unavailable": 5}
DEFAULT_RETRY_AFTER_S = 30

_HTTP_TO_ERROR: dict[int, type[MinqingError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def _wants_json() -> bool:
    path = request.path
    if path.startswith(("/api/", "/health", "/tiles/")) or path.endswith((".json", ".csv")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_error(err: MinqingError) -> Response:
    locale = negotiate_locale()
    if err.status == 401 and not _wants_json() and request.method == "GET":
        # a page that needs a login (or whose session expired): log in, then come back
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    if _wants_json():
        resp = jsonify(err.to_dict(locale))
    else:
        resp = Response(
            render_template("error.html", error=err, message=err.message(locale), locale=locale),
            mimetype="text/html",
        )
    resp.status_code = err.status
    resp.headers["Content-Language"] = locale
    if err.status in (429, 503):
        resp.headers["Retry-After"] = retry_after(err)
    return resp


def retry_after(err: MinqingError) -> str:
    """Whole seconds, at least 1 (RFC 9110 delay-seconds)."""
    seconds = err.details.get("retry_after_s")
    if seconds is None:
        seconds = RETRY_AFTER_S.get(err.code, DEFAULT_RETRY_AFTER_S)
    return str(max(1, math.ceil(float(seconds))))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(MinqingError)
    def _minqing(err: MinqingError) -> Response:
        return render_error(err)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        cls = _HTTP_TO_ERROR.get(exc.code or 500)
        if cls is PayloadTooLarge:
            return render_error(PayloadTooLarge(limit_bytes=app.config["MAX_CONTENT_LENGTH"]))
        if cls is BadRequest:
            return render_error(BadRequest(reason=exc.description or "malformed request"))
        if cls is not None:
            return render_error(cls())
        logger.warning("unmapped HTTP error %s on %s", exc.code, request.path)
        err = MinqingError("bad_request", reason=exc.name)
        err.status = exc.code or 500
        return render_error(err)

    @app.errorhandler(OperationalError)
    def _db_down(exc: OperationalError) -> Response:
        logger.error("database error on %s: %s", request.path, exc.orig)
        return render_error(ServiceUnavailable("db_unavailable"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error on %s", request.path)
        return render_error(InternalError())
