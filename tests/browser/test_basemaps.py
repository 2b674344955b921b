"""Basemaps: none by default (offline); AMap draws in GCJ-02, so overlays shift to match."""

from __future__ import annotations

import pytest
from shapely.geometry import MultiPolygon, box

from tests.browser.conftest import STATION_GCJ02, STATION_WGS84, screenshot, wait_layers_idle
from tests.factories import ewkt, venue

pytestmark = pytest.mark.browser


@pytest.fixture
def beijing(committed_db):
    from layers.areas.models import Area

    with committed_db.session() as s:
        s.add(
            Area(
                code="110101",
                name="东城区",
                level="district",
                geom=ewkt(MultiPolygon([box(116.40, 39.89, 116.44, 39.91)])),
            )
        )
        venue(s, "北京站", "community_centre", *STATION_WGS84)
        s.commit()
    return committed_db


def _marker_pixel(page) -> dict:
    return page.evaluate(
        """() => { const m = Minqing.state.layers.venues.layer.getLayers()[0];
                   const p = Minqing.map.latLngToContainerPoint(m.getLatLng());
                   return {x: p.x, y: p.y}; }"""
    )


def test_amap_basemap_puts_a_known_point_on_its_gcj02_pixel(beijing, live_server, open_page):
    base = live_server(beijing, basemap="amap")
    page, watch = open_page(base + "/", stub_hosts=("autonavi.com",))
    page.evaluate(f"() => {{ Minqing.map.setView([{STATION_GCJ02[1]}, {STATION_GCJ02[0]}], 18); }}")
    page.wait_for_timeout(500)
    wait_layers_idle(page)
    assert watch.stubbed, "the AMap basemap was not requested"
    marker = _marker_pixel(page)
    expected = page.evaluate(
        f"""() => {{ const p = Minqing.map.latLngToContainerPoint([{STATION_GCJ02[1]},
                                                                   {STATION_GCJ02[0]}]);
                    return {{x: p.x, y: p.y}}; }}"""
    )
    # at zoom 18 a pixel is ~0.46 m here; the published points are rounded to ~1 m
    assert abs(marker["x"] - expected["x"]) <= 3 and abs(marker["y"] - expected["y"]) <= 3
    # and the WGS84 position is far (hundreds of pixels) from where the basemap has the station
    raw = page.evaluate(
        f"""() => {{ const p = Minqing.map.latLngToContainerPoint([{STATION_WGS84[1]},
                                                                   {STATION_WGS84[0]}]);
                    return {{x: p.x, y: p.y}}; }}"""
    )
    assert abs(raw["x"] - expected["x"]) > 500
    screenshot(page, "basemap_amap_station")
    assert watch.foreign_requests == [] and watch.console_errors == []


def test_default_basemap_is_none_and_overlays_stay_wgs84(beijing, live_server, open_page):
    base = live_server(beijing)
    page, watch = open_page(base + "/", stub_hosts=("autonavi.com",))
    page.evaluate(f"() => {{ Minqing.map.setView([{STATION_WGS84[1]}, {STATION_WGS84[0]}], 18); }}")
    page.wait_for_timeout(500)
    wait_layers_idle(page)
    latlng = page.evaluate("() => Minqing.state.layers.venues.layer.getLayers()[0].getLatLng()")
    assert latlng["lng"] == pytest.approx(STATION_WGS84[0], abs=1e-7)
    assert latlng["lat"] == pytest.approx(STATION_WGS84[1], abs=1e-7)
    assert watch.stubbed == [] and watch.foreign_requests == []
    assert page.locator(".leaflet-tile-pane img").count() == 0
