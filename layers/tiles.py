"""Mapbox vector tiles straight from PostGIS (ST_AsMVT) for the big layers.

Tiles carry no personal data: building leaders and request contacts stay in the GeoJSON API,
where they are masked per role. A building leader's public contact — published with their
consent for residents (``layers.contacts``) — is in the buildings' tiles as it is.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.contacts.service import public_contact_join
from layers.display_crs import display_offset_3857
from layers.errors import BadRequest, NotFound
from layers.grids.repo import live_sql

logger = logging.getLogger(__name__)

MAX_ZOOM = 22
EXTENT = 4096
BUFFER = 64

# layer -> (FROM with alias t, properties select list, WHERE)
TILE_LAYERS: dict[str, tuple[str, str, str]] = {
    "buildings": (
        f"buildings t {public_contact_join('t.leader_user_id')}",
        "t.id, t.code, t.name, t.levels, t.residential, t.households, t.households_estimated,"
        " pc.display_name AS leader_public_name, pc.work_phone AS leader_public_phone",
        "TRUE",
    ),
    "grids": (
        "grids t",
        "t.id, t.code, t.name, t.households, t.population",
        live_sql("t"),
    ),
    "venues": ("venues t", "t.id, t.category, t.name", "t.active"),
    "service_circles": (
        "service_circles t",
        "t.id, t.venue_id, t.category, t.tier, t.budget_m, t.method",
        "TRUE",
    ),
}


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= MAX_ZOOM:
        raise BadRequest("invalid_tile", reason=f"zoom must be 0–{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise BadRequest("invalid_tile", reason=f"x and y must be 0–{n - 1} at zoom {z}")


def tile_center_lonlat(z: int, x: int, y: int) -> tuple[float, float]:
    n = 1 << z
    lon = (x + 0.5) / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / n))))
    return lon, lat


def tile_mvt(
    *, session: Session, layer: str, z: int, x: int, y: int, display_crs: str = "wgs84"
) -> bytes:
    """The MVT bytes of one tile; an empty tile is b'' (still a valid, empty MVT).

    With ``display_crs`` gcj02 / bd09 the tile is cut from the shifted plane: geometries are
    translated by the shift at the tile's centre (it varies by centimetres across a tile).
    """
    if layer not in TILE_LAYERS:
        raise NotFound("unknown_layer", layer=layer, available=", ".join(TILE_LAYERS))
    check_tile(z, x, y)
    from_sql, columns, where = TILE_LAYERS[layer]
    dx, dy = display_offset_3857(*tile_center_lonlat(z, x, y), display_crs)
    sql = f"""
        WITH bounds AS (SELECT ST_TileEnvelope(:z, :x, :y) AS env),
        mvtgeom AS (
            SELECT ST_AsMVTGeom(ST_Translate(ST_Transform(t.geom, 3857), :dx, :dy),
                                bounds.env, {EXTENT}, {BUFFER}, true) AS geom, {columns}
            FROM {from_sql}, bounds
            WHERE t.geom && ST_Transform(ST_Translate(bounds.env, -:dx, -:dy), 4326)
              AND {where}
        )
        SELECT ST_AsMVT(mvtgeom.*, :layer, {EXTENT}, 'geom', 'id') FROM mvtgeom
    """
    params = {"z": z, "x": x, "y": y, "layer": layer, "dx": dx, "dy": dy}
    data = session.execute(text(sql), params).scalar_one()
    return bytes(data or b"")
