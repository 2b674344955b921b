"""Transitional alias of :mod:`layers.catalogues` (the loader moved below ``layers``).

Kept only until ``layers/requests/rules.py``, ``layers/importers/requests_bulk.py`` and
``web/requests_api.py`` import ``layers.catalogues``; then delete this module. New code imports
``layers.catalogues``.
"""

from layers.catalogues import (
    LifeCircleRequirement,
    RequestCategory,
    VenueCategory,
    life_circle_requirements,
    parse_osm_tag_rules,
    request_categories,
    request_category_codes,
    venue_categories,
    venue_category_for_tags,
    venue_category_keys,
)

__all__ = [
    "LifeCircleRequirement",
    "RequestCategory",
    "VenueCategory",
    "life_circle_requirements",
    "parse_osm_tag_rules",
    "request_categories",
    "request_category_codes",
    "venue_categories",
    "venue_category_for_tags",
    "venue_category_keys",
]
