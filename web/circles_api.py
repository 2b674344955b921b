"""一刻钟服务圈 API: coverage figures and gaps (planners), nearest service points (residents)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from layers.bbox import parse_bbox
from layers.circles.service import nearest
from layers.coverage.service import coverage, gaps
from web.api import parse_limit
from web.auth import policy
from web.db import db_session

logger = logging.getLogger(__name__)
bp = Blueprint("circles_api", __name__, url_prefix="/api/v1")


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


@bp.get("/coverage")
@policy("coverage.read")
def coverage_figures():
    """Shares of homes and households with each required facility within each tier."""
    settings = current_app.config["MINQING"]
    level = request.args.get("level", "grid")
    items = coverage(
        db_session(),
        level=level,
        category=request.args.get("category") or None,
        tier=request.args.get("tier") or None,
        settings=settings,
    )
    return jsonify({"level": level, "items": items})


@bp.get("/coverage/gaps")
@policy("coverage.read")
def coverage_gaps():
    """Homes without the facility within the tier, as GeoJSON, farthest first."""
    settings = current_app.config["MINQING"]
    bbox = parse_bbox(request.args.get("bbox"), max_deg=settings.bbox_max_deg)
    fc = gaps(
        db_session(),
        category=request.args.get("category", ""),
        tier=request.args.get("tier", ""),
        bbox=bbox,
        limit=parse_limit(request.args.get("limit") or str(settings.api_max_limit)),
        settings=settings,
    )
    return jsonify(fc)


@bp.get("/nearest")
@policy("nearest.read")
def nearest_venues():
    """The k nearest venues by walking distance, with routes; ``circle=1`` adds the caller's
    own 15-minute circle."""
    settings = current_app.config["MINQING"]
    result = nearest(
        db_session(),
        lon=request.args.get("lon"),
        lat=request.args.get("lat"),
        crs=request.args.get("crs", "wgs84"),
        category=request.args.get("category"),
        k=request.args.get("k", "5"),
        circle=_flag("circle"),
        minutes=request.args.get("minutes"),
        settings=settings,
    )
    return jsonify(result)
