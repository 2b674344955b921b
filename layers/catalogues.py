"""Typed loaders for the catalogues in ``data/catalogues/*.csv`` (DESIGN §2).

Catalogues are data, not code: request categories (with deadlines), venue categories (with the
OSM tags that map to them) and the facilities each life-circle tier requires (GB 50180-2018).
Each loader is cached: it returns the same tuple on every call.

The loader lives in ``layers`` (below ``data``, which builds districts from these catalogues)
while the CSV files stay in ``data/catalogues/``. They are read as files by path, from the
directory beside this package: ``layers`` and ``data`` are sibling top-level packages of one
distribution, so ``<root>/data/catalogues`` is the source tree in a clone or an editable install
and ``site-packages/data/catalogues`` in a wheel install (package-data ``*.csv``). The path is
used rather than ``importlib.resources.files("data")`` because that imports the ``data``
package: its ``__init__`` would then run below ``layers`` (a cycle invisible to import-linter
the day it grows an import), and a generic top-level name like ``data`` can be shadowed by
another ``data`` package earlier on ``sys.path``. The path depends on neither.

Venue tag rules (``osm_tags`` column): alternatives are separated by ``;``, an alternative is a
conjunction of ``key=value`` terms joined by ``&`` (``key=*`` means "any value"). A POI maps to
at most one category: the first whose rule matches, in ascending ``priority``.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CATALOGUE_DIR = Path(__file__).resolve().parents[1] / "data" / "catalogues"


@dataclass(frozen=True)
class RequestCategory:
    """A category of resident request; volunteers' skills are these codes."""

    code: str
    name_zh: str
    name_en: str
    deadline_hours: int
    description: str


@dataclass(frozen=True)
class VenueCategory:
    """A category of venue / service point and the OSM tag rules that select it."""

    code: str
    name_zh: str
    name_en: str
    osm_tags: str
    priority: int
    rules: tuple[tuple[tuple[str, str], ...], ...]  # alternatives of (key, value) conjunctions

    def matches(self, tags: Mapping[str, Any]) -> bool:
        """Whether any alternative of this category's tag rule holds for ``tags``."""
        return any(_conjunction_holds(rule, tags) for rule in self.rules)

    @property
    def keys(self) -> frozenset[str]:
        """OSM keys mentioned by this category's rule."""
        return frozenset(key for rule in self.rules for key, _ in rule)


@dataclass(frozen=True)
class LifeCircleRequirement:
    """One facility category required within a life-circle tier's distance budget."""

    tier: str
    budget_m: float
    category_code: str
    gb_facility_zh: str


def _conjunction_holds(rule: tuple[tuple[str, str], ...], tags: Mapping[str, Any]) -> bool:
    for key, value in rule:
        actual = tags.get(key)
        if actual is None:
            return False
        if value == "*":
            if str(actual).strip() in ("", "no"):
                return False
        elif str(actual).strip() != value:
            return False
    return True


def parse_osm_tag_rules(text: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Parse ``"a=b&c=d;e=f"`` into ``(((a, b), (c, d)), ((e, f),))``."""
    alternatives = []
    for alternative in text.split(";"):
        alternative = alternative.strip()
        if not alternative:
            continue
        terms = []
        for term in alternative.split("&"):
            key, sep, value = term.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise ValueError(f"bad OSM tag term {term!r} in {text!r}")
            terms.append((key, value))
        alternatives.append(tuple(terms))
    if not alternatives:
        raise ValueError(f"empty OSM tag rule {text!r}")
    return tuple(alternatives)


def catalogue_rows(filename: str) -> list[dict[str, str]]:
    """The rows of ``data/catalogues/<filename>`` as dicts, keys and values stripped."""
    path = CATALOGUE_DIR / filename
    logger.debug("reading catalogue %s", path)
    text = path.read_text(encoding="utf-8")
    return [
        {k.strip(): (v or "").strip() for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


@functools.cache
def request_categories() -> tuple[RequestCategory, ...]:
    """All request categories, in file order."""
    return tuple(
        RequestCategory(
            code=r["code"],
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            deadline_hours=int(r["deadline_hours"]),
            description=r["description"],
        )
        for r in catalogue_rows("request_categories.csv")
    )


@functools.cache
def venue_categories() -> tuple[VenueCategory, ...]:
    """All venue categories, sorted by ascending priority (the matching order)."""
    cats = [
        VenueCategory(
            code=r["code"],
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            osm_tags=r["osm_tags"],
            priority=int(r["priority"]),
            rules=parse_osm_tag_rules(r["osm_tags"]),
        )
        for r in catalogue_rows("venue_categories.csv")
    ]
    return tuple(sorted(cats, key=lambda c: (c.priority, c.code)))


@functools.cache
def life_circle_requirements() -> tuple[LifeCircleRequirement, ...]:
    """Required facility categories per life-circle tier (one entry per tier × category)."""
    return tuple(
        LifeCircleRequirement(
            tier=r["tier"],
            budget_m=float(r["budget_m"]),
            category_code=r["category_code"],
            gb_facility_zh=r.get("gb_facility_zh", ""),
        )
        for r in catalogue_rows("life_circle_requirements.csv")
    )


@functools.cache
def venue_category_keys() -> frozenset[str]:
    """Every OSM key that some venue category rule looks at."""
    return frozenset().union(*(c.keys for c in venue_categories()))


def venue_category_for_tags(tags: Mapping[str, Any]) -> str | None:
    """Code of the first venue category (by priority) whose tag rule matches, else None."""
    for category in venue_categories():
        if category.matches(tags):
            return category.code
    return None


def request_category_codes() -> frozenset[str]:
    """Codes of all request categories (valid volunteer skills)."""
    return frozenset(c.code for c in request_categories())
