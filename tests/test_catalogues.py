"""Catalogues load, are consistent, and map OSM tags to venue categories."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from layers import catalogues
from layers.catalogues import (
    life_circle_requirements,
    parse_osm_tag_rules,
    request_categories,
    venue_categories,
    venue_category_for_tags,
)

CODE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def _check_codes_and_names(items: tuple) -> None:
    codes = [c.code for c in items]
    assert len(codes) == len(set(codes)), "duplicate codes"
    for c in items:
        assert CODE_RE.match(c.code) and c.code.isascii(), c.code
        assert CJK_RE.search(c.name_zh), f"{c.code}: name_zh has no Chinese"
        assert c.name_en and c.name_en.isascii(), f"{c.code}: name_en missing or not ASCII"


def test_request_categories() -> None:
    cats = request_categories()
    _check_codes_and_names(cats)
    names_zh = {c.name_zh for c in cats}
    for required in (
        "扶危解困",
        "就业创业",
        "文化科普",
        "百姓安居",
        "医疗卫生",
        "养老服务",
        "居民事务代办",
        "信访问题代理",
        "矛盾纠纷调处",
    ):
        assert required in names_zh
    for c in cats:
        assert 24 <= c.deadline_hours <= 168, c
    assert request_categories() is cats  # cached


def test_venue_categories() -> None:
    cats = venue_categories()
    _check_codes_and_names(cats)
    priorities = [c.priority for c in cats]
    assert priorities == sorted(priorities)
    assert len(set(priorities)) == len(priorities), "priorities must be unambiguous"
    for c in cats:
        assert c.rules, c.code


def test_life_circle_requirements_reference_existing_categories() -> None:
    reqs = life_circle_requirements()
    venue_codes = {c.code for c in venue_categories()}
    budgets = {}
    seen = set()
    for r in reqs:
        assert r.category_code in venue_codes, r
        assert (r.tier, r.category_code) not in seen, f"duplicate row {r}"
        seen.add((r.tier, r.category_code))
        budgets.setdefault(r.tier, set()).add(r.budget_m)
    assert {t: b.pop() for t, b in budgets.items() if len(b) == 1} == {
        "5min": 300.0,
        "10min": 500.0,
        "15min": 1000.0,
    }


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"amenity": "clinic", "name": "玉林社区卫生服务站"}, "clinic"),
        ({"amenity": "doctors"}, "clinic"),
        ({"amenity": "pharmacy"}, "pharmacy"),
        ({"amenity": "social_facility", "social_facility": "nursing_home"}, "elderly_care"),
        ({"amenity": "social_facility", "social_facility": "assisted_living"}, "elderly_care"),
        ({"amenity": "nursing_home"}, "elderly_care"),
        # a generic social facility is a community service point, not elderly care
        ({"amenity": "social_facility", "social_facility": "food_bank"}, "community_centre"),
        ({"amenity": "community_centre", "name": "党群服务中心"}, "community_centre"),
        ({"amenity": "library"}, "library"),
        ({"amenity": "kindergarten"}, "kindergarten"),
        ({"amenity": "school", "building": "yes"}, "school"),
        ({"amenity": "marketplace"}, "market"),
        ({"shop": "supermarket"}, "market"),
        ({"shop": "convenience"}, "convenience"),
        ({"leisure": "park"}, "park"),
        ({"amenity": "police"}, "police"),
        ({"amenity": "post_office"}, "post_office"),
        # priority: a hospital that also has a pharmacy tag is a hospital
        ({"amenity": "hospital", "healthcare": "pharmacy"}, "hospital"),
        ({"amenity": "restaurant"}, None),
        ({"building": "apartments"}, None),
        ({"shop": "clothes"}, None),
        ({}, None),
    ],
)
def test_venue_category_for_tags(tags: dict, expected: str | None) -> None:
    assert venue_category_for_tags(tags) == expected


def test_parse_osm_tag_rules() -> None:
    assert parse_osm_tag_rules("a=b&c=d; e=*") == ((("a", "b"), ("c", "d")), (("e", "*"),))
    with pytest.raises(ValueError):
        parse_osm_tag_rules("amenity")
    with pytest.raises(ValueError):
        parse_osm_tag_rules(" ; ")


def test_loader_reads_the_csvs_without_importing_data(tmp_path) -> None:
    """layers sits below data: the loader finds ``data/catalogues/*.csv`` by path and never
    imports the ``data`` package (not even its ``__init__``), from any working directory."""
    code = (
        "import sys, layers.catalogues as c;"
        "assert c.request_categories() and c.venue_categories() and c.life_circle_requirements();"
        "loaded = sorted(m for m in sys.modules if m == 'data' or m.startswith('data.'));"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def test_loader_finds_the_csvs_beside_an_installed_layers(tmp_path) -> None:
    """The layout of a wheel install: ``layers`` and ``data/catalogues`` side by side in one
    site-packages directory, far from the source tree."""
    site = tmp_path / "site"
    (site / "layers").mkdir(parents=True)
    (site / "layers" / "__init__.py").write_text("")
    shutil.copy(catalogues.__file__, site / "layers" / "catalogues.py")
    shutil.copytree(catalogues.CATALOGUE_DIR, site / "data" / "catalogues")
    code = (
        "import layers.catalogues as c;"
        f"assert c.CATALOGUE_DIR == __import__('pathlib').Path({str(site.resolve())!r}) / 'data' / 'catalogues';"
        "print(len(c.request_categories()), len(c.venue_categories()))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(len(request_categories())), str(len(venue_categories()))]
