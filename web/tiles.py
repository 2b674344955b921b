"""Vector tiles: /tiles/<layer>/<z>/<x>/<y>.mvt (an empty tile is a 200, not an error)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from layers.display_crs import parse_display_crs
from layers.tiles import tile_mvt
from web.auth import policy
from web.db import db_session

logger = logging.getLogger(__name__)
bp = Blueprint("tiles", __name__, url_prefix="/tiles")

MVT_MIME = "application/vnd.mapbox-vector-tile"


@bp.get("/<layer>/<int:z>/<int:x>/<int:y>.mvt")
@policy("layers.read_public")
def tile(layer: str, z: int, x: int, y: int):
    data = tile_mvt(
        session=db_session(),
        layer=layer,
        z=z,
        x=x,
        y=y,
        display_crs=parse_display_crs(request.args.get("crs")),
    )
    resp = Response(data, mimetype=MVT_MIME)
    resp.headers["Cache-Control"] = "public, max-age=60"
    return resp
