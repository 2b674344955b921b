"""The district map in a real headless Chromium: local assets only, layers load, popups escape."""

from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot, wait_layers_idle
from tests.factories import X0, Y0, building, mini_district, venue

pytestmark = pytest.mark.browser


def click_lonlat(page, lon: float, lat: float) -> None:
    """Click the map at a geographic position (as a person taps it)."""
    point = page.evaluate(f"Minqing.map.latLngToContainerPoint([{lat}, {lon}])")
    box = page.locator(".folium-map").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])


@pytest.fixture
def served(committed_db, live_server):
    with committed_db.session() as s:
        m = mini_district(s)
        for i in range(4):
            building(
                s,
                f"BB{i}",
                X0 + 0.003 + i * 0.002,
                Y0 + 0.005,
                households=40 + i,
                name="<img src=x onerror=alert(1)>" if i == 0 else f"{i}号楼",
            )
        venue(s, "社区卫生服务站", "clinic", X0 + 0.006, Y0 + 0.004)
        s.commit()
        codes = (m.west.code, m.east.code)
    return live_server(committed_db), codes


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_district_map_loads_every_layer_from_the_app_only(served, open_page, viewport) -> None:
    base, _codes = served
    page, watch = open_page(base + "/", viewport)
    wait_layers_idle(page)
    page.evaluate(f"Minqing.map.setView([{Y0 + 0.005:f}, {X0 + 0.006:f}], 16)")
    page.wait_for_timeout(400)
    wait_layers_idle(page)
    counts = page.evaluate(
        "() => Object.fromEntries(Object.entries(Minqing.state.layers)"
        ".map(([k, v]) => [k, v.count]))"
    )
    assert counts["grids"] == 2
    assert counts["venues"] == 1
    assert page.evaluate("Minqing.state.layers.buildings.tiles") >= 1
    assert page.locator("path.leaflet-interactive").count() >= 3
    assert page.locator("canvas.leaflet-tile").count() >= 1
    assert page.title() == "辖区地图"
    screenshot(page, f"district_map_{viewport}")
    assert watch.foreign_requests == []
    assert watch.console_errors == []


def test_popup_shows_user_text_as_text(served, open_page) -> None:
    base, _ = served
    page, watch = open_page(base + "/?lang=en")
    wait_layers_idle(page)
    page.evaluate(f"Minqing.map.setView([{Y0 + 0.005:f}, {X0 + 0.003:f}], 18)")
    page.wait_for_timeout(400)
    wait_layers_idle(page)
    # click the building (drawn from a vector tile) whose name is an HTML payload
    click_lonlat(page, X0 + 0.003, Y0 + 0.005)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert "<img src=x onerror=alert(1)>" in popup.inner_text()
    assert popup.locator("img").count() == 0
    assert "Households" in popup.inner_text() and "BB0" in popup.inner_text()
    assert page.evaluate("Minqing.state.lastTileClick.code") == "BB0"
    page.wait_for_timeout(300)
    assert watch.dialogs == []
    assert watch.foreign_requests == [] and watch.console_errors == []
    screenshot(page, "district_map_popup_en")


def test_demo_district_map_on_real_osm(test_db_url, live_server, open_page) -> None:
    from layers.db import Database

    database = Database.from_url(test_db_url)
    try:
        base = live_server(database)
        page, watch = open_page(base + "/")
        wait_layers_idle(page)
        grids = page.evaluate("Minqing.state.layers.grids.count")
        assert grids >= 20  # the demo has 53 grids; the first view shows most of them
        page.evaluate("() => { Minqing.map.setZoom(16); }")
        page.wait_for_timeout(500)
        wait_layers_idle(page)
        assert page.evaluate("Minqing.state.layers.buildings.tiles") >= 1
        screenshot(page, "district_map_demo_z16")
        assert watch.foreign_requests == [] and watch.console_errors == []
    finally:
        database.engine.dispose()
