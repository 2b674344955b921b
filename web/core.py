"""Health check."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from web.auth import policy
from web.db import database, db_session

logger = logging.getLogger(__name__)
bp = Blueprint("core", __name__)


@bp.get("/health")
@policy("health.read")
def health():
    """200 with the database reachable, 503 ``db_unavailable`` otherwise."""
    database().ping()
    generation = db_session().scalar(text("SELECT coalesce(max(id), 0) FROM generations"))
    return jsonify({"status": "ok", "database": "ok", "generation": generation})
