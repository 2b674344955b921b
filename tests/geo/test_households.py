"""Household rule of DESIGN §2."""

import math

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from geo.households import (
    estimate_households,
    households_for_osm_buildings,
    is_residential,
    parse_osm_number,
)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"building": "apartments"}, True),
        ({"building": "residential"}, True),
        ({"building": "house"}, True),
        ({"building": "dormitory"}, True),
        ({"building": "Apartments"}, True),
        ({"building": "yes"}, True),
        ({"building": "yes", "amenity": None, "shop": float("nan"), "office": ""}, True),
        ({"building": "yes", "amenity": "school"}, False),
        ({"building": "yes", "shop": "bakery"}, False),
        ({"building": "yes", "office": "government"}, False),
        ({"building": "apartments", "shop": "bakery"}, True),
        ({"building": "commercial"}, False),
        ({"building": "church"}, False),
        ({"building": "no"}, False),
        ({}, False),
    ],
)
def test_is_residential(tags, expected):
    assert is_residential(tags) is expected


def test_parse_osm_number():
    assert parse_osm_number("5") == 5.0
    assert parse_osm_number("4;5") == 4.0
    assert parse_osm_number("3,5") == 3.5
    assert parse_osm_number(7) == 7.0
    assert math.isnan(parse_osm_number(None))
    assert math.isnan(parse_osm_number("many"))


def test_estimate_follows_footprint_times_levels_over_dwelling_size():
    area = np.array([900.0, 900.0, 900.0, 900.0, 1000.0])
    levels = np.array([np.nan, 2.0, 0.0, np.nan, 3.0])
    residential = np.array([True, True, True, False, True])
    households, estimated = estimate_households(area, levels, residential)
    # unknown (NaN) and invalid (0) levels use 5; non-residential gets 0
    assert households.tolist() == [50, 20, 50, 0, 33]
    assert households.dtype == np.int64
    assert estimated.all()


def test_estimate_parameters_and_rounding():
    households, _ = estimate_households([100.0, 135.0], [1, 1], [True, True], dwelling_size_m2=60)
    assert households.tolist() == [2, 2]  # 1.67 → 2, 2.25 → 2
    households, _ = estimate_households([90.0], [np.nan], [True], default_levels=3)
    assert households.tolist() == [3]


def test_tiny_residential_building_has_at_least_one_household():
    households, _ = estimate_households([5.0, 0.0, 5.0], [1, 1, 1], [True, True, False])
    assert households.tolist() == [1, 0, 0]


def test_explicit_count_is_kept_and_not_flagged():
    households, estimated = estimate_households(
        [900.0, 900.0, 900.0],
        [np.nan, np.nan, np.nan],
        [True, False, True],
        known_households=[12, 8, np.nan],
    )
    assert households.tolist() == [12, 8, 50]
    assert estimated.tolist() == [False, False, True]


def test_estimate_rejects_bad_input():
    with pytest.raises(ValueError):
        estimate_households([1.0, 2.0], [1.0, 2.0, 3.0], [True, True])
    with pytest.raises(ValueError):
        estimate_households([1.0], [1.0], [True], dwelling_size_m2=0)


def test_households_for_osm_buildings_reads_columns_and_json_tags():
    gdf = gpd.GeoDataFrame(
        {
            "building": ["apartments", "yes", "yes", "school"],
            "amenity": [None, None, "cafe", None],
            "building:levels": ["4", None, None, "3"],
            "tags": [None, '{"building:flats": "42"}', None, None],
        },
        geometry=[
            box(0, 0, 30, 30),
            box(100, 0, 120, 20),
            box(200, 0, 220, 20),
            box(0, 100, 50, 150),
        ],
        crs="EPSG:32648",
    )
    households, estimated, residential = households_for_osm_buildings(gdf)
    assert residential.tolist() == [True, True, False, False]
    assert households.tolist() == [40, 42, 0, 0]  # 900 m² × 4 ÷ 90 = 40; flats kept
    assert estimated.tolist() == [True, False, True, True]


def test_households_for_osm_buildings_refuses_degrees():
    gdf = gpd.GeoDataFrame({"building": ["yes"]}, geometry=[box(0, 0, 0.001, 0.001)], crs=4326)
    with pytest.raises(ValueError):
        households_for_osm_buildings(gdf)
