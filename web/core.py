"""Health check."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from layers.grids.repo import current_generation
from web.auth import policy
from web.db import database, db_session

logger = logging.getLogger(__name__)
bp = Blueprint("core", __name__)


@bp.get("/health")
@policy("health.read")
def health():
    """200 with the database reachable, 503 ``db_unavailable`` otherwise."""
    database().ping()
    generation = current_generation(db_session())
    return jsonify({"status": "ok", "database": "ok", "generation": generation})
