"""Parsing of bbox query values (minLon,minLat,maxLon,maxLat in WGS84)."""

from __future__ import annotations

import math

from layers.errors import BadRequest

BBox = tuple[float, float, float, float]


def parse_bbox(raw: str | None, *, max_deg: float) -> BBox | None:
    """Validate a bbox string; None when absent. Raises 400 with a stable code."""
    if raw is None or raw == "":
        return None
    parts = raw.split(",")
    if len(parts) != 4:
        raise BadRequest("invalid_bbox", reason=f"expected 4 numbers, got {len(parts)}")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise BadRequest("invalid_bbox", reason="not numbers") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise BadRequest("invalid_bbox", reason="values must be finite")
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise BadRequest("invalid_bbox", reason="outside lon −180..180 / lat −90..90")
    if x0 >= x1 or y0 >= y1:
        raise BadRequest("invalid_bbox", reason="min must be smaller than max")
    if x1 - x0 > max_deg or y1 - y0 > max_deg:
        raise BadRequest(
            "bbox_too_large", width=round(x1 - x0, 4), height=round(y1 - y0, 4), max_deg=max_deg
        )
    return (x0, y0, x1, y1)
