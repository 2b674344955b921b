"""Flask app factory: thin blueprints over the layers' services (DESIGN §4)."""

from __future__ import annotations

import logging

from flask import Flask

from layers.config import Settings, settings_from_env
from layers.db import Database
from layers.errors import Misconfigured

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Flask:
    """Build the app; ``database`` overrides the engine made from ``settings.database_url``."""
    from web import (
        account,
        api,
        assets,
        circles_api,
        core,
        csrf,
        drafts_api,
        pages,
        planner,
        ratelimit,
        requests_api,
        resident,
        security_headers,
        staff,
        tiles,
        work,
    )
    from web.db import close_session
    from web.errors import register_error_handlers

    settings = settings or settings_from_env()
    if not settings.secret_key:  # no fallback key: a known one would let anyone sign sessions
        raise Misconfigured("secret_key_missing")
    if database is None:
        if not settings.database_url:
            raise RuntimeError("create_app needs settings.database_url or a database")
        database = Database.from_url(settings.database_url)
    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MINQING=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["minqing.db"] = database
    app.teardown_appcontext(close_session)
    for bp in (
        core.bp,
        assets.bp,
        api.bp,
        pages.bp,
        tiles.bp,
        requests_api.bp,
        resident.bp,
        drafts_api.bp,
        circles_api.bp,
        staff.bp,
        work.bp,
        planner.bp,
        account.bp,
    ):
        app.register_blueprint(bp)
    from web import bench_floor

    if bench_floor.enabled():  # bench-only route, never in production (MINQING_BENCH_FLOOR=1)
        bench_floor.register(app)
    register_error_handlers(app)
    csrf.register(app)  # every cookie-authenticated write and login carry the session's token
    security_headers.register(app)
    ratelimit.install(app)  # MINQING_TRUSTED_PROXIES; the limits checked at start
    return app
