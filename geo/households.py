"""Household counts of buildings (DESIGN §2).

When OpenStreetMap gives no count, a building is residential if tagged
``building=apartments|residential|house|dormitory``, or ``building=yes`` with no
``amenity`` / ``shop`` / ``office`` tag; its households are
``footprint m² × levels ÷ dwelling size`` (default 90 m², unknown levels = 5) and the value is
flagged as estimated. An explicit count (``building:flats``) is kept as given and not flagged.

Decision on tiny footprints: a residential building with a positive footprint holds at least
one household (a dwelling-tagged building is lived in), so the estimate is
``max(1, round_half_up(area × levels ÷ dwelling size))``. Non-residential buildings get 0.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

RESIDENTIAL_BUILDING_VALUES = frozenset({"apartments", "residential", "house", "dormitory"})
NON_RESIDENTIAL_KEYS = ("amenity", "shop", "office")
EXPLICIT_HOUSEHOLD_KEYS = ("building:flats",)
DEFAULT_DWELLING_SIZE_M2 = 90.0
DEFAULT_LEVELS = 5

_NUMBER_RE = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def _present(value: Any) -> bool:
    """True when a tag value is really set (not None, NaN, empty or ``no``)."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    text = str(value).strip().lower()
    return text not in ("", "no", "nan", "none")


def is_residential(tags: Mapping[str, Any]) -> bool:
    """Whether a building is residential by the DESIGN §2 tag rule.

    ``tags`` is an OSM tag mapping; missing / None / NaN / empty values count as absent.
    """
    building = tags.get("building")
    if not _present(building):
        return False
    value = str(building).strip().lower()
    if value in RESIDENTIAL_BUILDING_VALUES:
        return True
    if value == "yes":
        return not any(_present(tags.get(key)) for key in NON_RESIDENTIAL_KEYS)
    return False


def parse_osm_number(value: Any) -> float:
    """First number in an OSM tag value (``"5"``, ``"4;5"`` → 4, ``"3,5"`` → 3.5), else NaN."""
    if not _present(value):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    match = _NUMBER_RE.search(str(value))
    if match is None:
        return math.nan
    return float(match.group(0).replace(",", "."))


def estimate_households(
    footprint_area_m2: Any,
    levels: Any,
    residential_mask: Any,
    dwelling_size_m2: float = DEFAULT_DWELLING_SIZE_M2,
    default_levels: int = DEFAULT_LEVELS,
    known_households: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised households per building → ``(households int64, estimated bool)``.

    ``levels`` may hold NaN (or values ≤ 0) for unknown, replaced by ``default_levels``.
    ``known_households`` (optional, NaN where unknown) are explicit counts from OSM such as
    ``building:flats``; where given they are kept (rounded, ≥ 0) with ``estimated=False``,
    whatever the residential mask says. Everything else is estimated (``estimated=True``):
    residential buildings by footprint × levels ÷ dwelling size, at least 1 when the footprint
    is positive; non-residential buildings 0.
    """
    if dwelling_size_m2 <= 0:
        raise ValueError("dwelling_size_m2 must be positive")
    if default_levels <= 0:
        raise ValueError("default_levels must be positive")
    area_m2 = np.nan_to_num(np.atleast_1d(np.asarray(footprint_area_m2, dtype=float)), nan=0.0)
    n = area_m2.shape[0]
    levels_arr = np.broadcast_to(np.asarray(levels, dtype=float), (n,))
    mask = np.broadcast_to(np.asarray(residential_mask, dtype=bool), (n,))

    levels_arr = np.where(np.isfinite(levels_arr) & (levels_arr > 0), levels_arr, default_levels)
    raw = np.clip(area_m2, 0.0, None) * levels_arr / dwelling_size_m2
    estimate = np.floor(raw + 0.5).astype(np.int64)
    estimate = np.where(area_m2 > 0, np.maximum(estimate, 1), 0)
    households = np.where(mask, estimate, 0).astype(np.int64)
    estimated = np.ones(n, dtype=bool)

    if known_households is not None:
        known = np.asarray(known_households, dtype=float).reshape(-1)
        if known.shape[0] != n:
            raise ValueError("known_households must have the same length as footprint_area_m2")
        has_known = np.isfinite(known) & (known >= 0)
        households = np.where(
            has_known, np.floor(np.where(has_known, known, 0) + 0.5), households
        ).astype(np.int64)
        estimated = ~has_known
    return households, estimated


def _row_tags(row: Mapping[str, Any]) -> dict[str, Any]:
    """Tag dict of a pyrosm-style building row: its columns plus its JSON ``tags`` column."""
    tags: dict[str, Any] = {k: v for k, v in row.items() if k not in ("geometry", "tags")}
    extra = row.get("tags")
    if isinstance(extra, str) and extra:
        try:
            parsed = json.loads(extra)
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                tags.setdefault(key, value)
    elif isinstance(extra, Mapping):
        for key, value in extra.items():
            tags.setdefault(key, value)
    return tags


def households_for_osm_buildings(
    buildings_utm: Any,
    dwelling_size_m2: float = DEFAULT_DWELLING_SIZE_M2,
    default_levels: int = DEFAULT_LEVELS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Households of OSM buildings (GeoDataFrame in a metric CRS, pyrosm columns).

    Reads ``building``, ``amenity``, ``shop``, ``office``, ``building:levels`` and
    ``building:flats`` from columns or from the JSON ``tags`` column. Returns
    ``(households, estimated, residential)`` arrays aligned with the rows.
    """
    if buildings_utm.crs is not None and buildings_utm.crs.is_geographic:
        raise ValueError("buildings must be in a projected (metric) CRS, e.g. UTM")
    records = buildings_utm.drop(columns="geometry").to_dict("records")
    all_tags = [_row_tags(r) for r in records]
    residential = np.array([is_residential(t) for t in all_tags], dtype=bool)
    levels = np.array([parse_osm_number(t.get("building:levels")) for t in all_tags], dtype=float)
    known = np.array(
        [
            next(
                (
                    v
                    for v in (parse_osm_number(t.get(k)) for k in EXPLICIT_HOUSEHOLD_KEYS)
                    if not math.isnan(v)
                ),
                math.nan,
            )
            for t in all_tags
        ],
        dtype=float,
    )
    households, estimated = estimate_households(
        buildings_utm.geometry.area.to_numpy(),
        levels,
        residential,
        dwelling_size_m2=dwelling_size_m2,
        default_levels=default_levels,
        known_households=known,
    )
    logger.debug(
        "households for %d buildings: %d residential, %d explicit",
        len(all_tags),
        int(residential.sum()),
        int((~estimated).sum()),
    )
    return households, estimated, residential
