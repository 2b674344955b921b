"""Output in a display CRS other than WGS84, for basemaps drawn in GCJ-02 (AMap) or BD-09.

Storage stays WGS84 (DESIGN §5); only what a map page draws over such a basemap is shifted,
and only when the page asks for it (``crs=gcj02``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from geo.crs import from_wgs84, to_wgs84
from layers.bbox import BBox
from layers.errors import BadRequest

logger = logging.getLogger(__name__)

DISPLAY_CRS = ("wgs84", "gcj02", "bd09")
BBOX_PAD_DEG = 0.002  # the shift varies by < 1 m across a view; pad so edges are not lost


def parse_display_crs(raw: str | None) -> str:
    value = (raw or "wgs84").lower()
    if value not in DISPLAY_CRS:
        raise BadRequest("unknown_crs", crs=raw, available=", ".join(DISPLAY_CRS))
    return value


def lonlat_to_display(lon: Any, lat: Any, crs: str) -> tuple[Any, Any]:
    """WGS84 lon/lat (scalars or arrays) in ``crs``."""
    return (lon, lat) if crs == "wgs84" else from_wgs84(lon, lat, crs)


def geometry_to_display(geojson: dict[str, Any], crs: str) -> dict[str, Any]:
    """A GeoJSON geometry with every vertex moved from WGS84 to ``crs``."""
    if crs == "wgs84":
        return geojson
    geom = shapely.transform(
        shape(geojson), lambda xy: np.column_stack(lonlat_to_display(xy[:, 0], xy[:, 1], crs))
    )
    return mapping(geom)


def bbox_to_wgs84(bbox: BBox | None, crs: str) -> BBox | None:
    """The WGS84 window covering a bbox given in the display CRS."""
    if bbox is None or crs == "wgs84":
        return bbox
    xs, ys = to_wgs84(
        np.array([bbox[0], bbox[2], bbox[0], bbox[2]]),
        np.array([bbox[1], bbox[1], bbox[3], bbox[3]]),
        crs,
    )
    return (
        float(xs.min()) - BBOX_PAD_DEG,
        float(ys.min()) - BBOX_PAD_DEG,
        float(xs.max()) + BBOX_PAD_DEG,
        float(ys.max()) + BBOX_PAD_DEG,
    )


def display_offset_3857(lon: float, lat: float, crs: str) -> tuple[float, float]:
    """Web-Mercator metres by which ``crs`` shifts the point (lon, lat); smooth over a tile."""
    if crs == "wgs84":
        return 0.0, 0.0
    x_lon, y_lat = from_wgs84(lon, lat, crs)
    r = 6378137.0
    dx = np.radians(x_lon - lon) * r
    dy = r * (
        np.log(np.tan(np.pi / 4 + np.radians(y_lat) / 2))
        - np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))
    )
    return float(dx), float(dy)
