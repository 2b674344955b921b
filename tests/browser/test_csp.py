"""Every page under its Content-Security-Policy in Chromium (issue 16, item 2): no policy
violation, no console error, and the maps still load their layers; "定位我" may still locate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from sqlalchemy import text

from tests.browser.conftest import log_in, screenshot, wait_layers_idle
from tests.factories import grid_points, submit_housing

pytestmark = pytest.mark.browser

COMMUNITY = "990000001001"  # leader1's and community1's community in the demo district

# before any script of the page: every violation the document reports
WATCH_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push([e.effectiveDirective, e.blockedURI,
    e.sourceFile + ":" + e.lineNumber, e.sample].join(" | "));
});
"""

# page, account (None: anonymous), what shows the page is ready
PAGES = [
    ("/", None, "map"),
    ("/r", None, "map"),
    ("/r?grid={grid}", None, "map"),
    ("/t/{ticket}", None, "#timeline li"),
    ("/grids/{grid}/card", None, "svg.segno"),
    ("/login", None, "form button[type=submit]"),
    ("/leader", "leader1", "() => Minqing.state.work && Minqing.state.work.loaded"),
    ("/v", "vol0001", "() => Minqing.state.work && Minqing.state.work.loaded"),
    ("/staff", "community1", "() => Minqing.state.inbox && Minqing.state.inbox.loaded"),
    ("/staff/dashboard", "community1", "() => Minqing.state.dashboard"),
    ("/planner", "planner", "() => Minqing.state.planner && Minqing.state.planner.ready"),
    ("/account", "leader1", "#sign-out-everywhere button"),
]


@dataclass
class Site:
    base: str
    grid: str
    ticket: str
    point: tuple[float, float]


@pytest.fixture
def site(committed_db, committed_client, live_server) -> Site:
    with committed_db.session() as s:
        grid, lon, lat = grid_points(s, COMMUNITY, 1)[0]
    ticket = submit_housing(committed_client, {}, lon, lat)["ticket"]
    return Site(live_server(committed_db), grid, ticket, (lon, lat))


def _violations(page) -> list[str]:
    return page.evaluate("() => window.__cspViolations")


def _open(open_page, base: str, path: str, username: str | None, viewport: str = "desktop"):
    """``path`` in a fresh context watched for violations, logged in as ``username`` first."""
    page, watch = open_page(f"{base}/login?next={quote(path)}", viewport)
    page.context.add_init_script(WATCH_VIOLATIONS)
    if username:
        log_in(page, username, then=base + path)
    else:
        page.goto(base + path)
    return page, watch


def _ready(page, ready: str) -> None:
    if ready == "map":
        page.wait_for_function("() => window.Minqing && Minqing.map")
    elif ready.startswith("() =>"):
        page.wait_for_function(ready, timeout=30000)
    else:
        page.wait_for_selector(ready)
    if page.evaluate("() => !!(window.Minqing && Minqing.map)"):
        wait_layers_idle(page, timeout_ms=30000)
        # the layers did load: the grids' outlines are drawn (or their tiles, zoomed out)
        layers = page.evaluate(
            "() => Object.fromEntries(Object.entries(Minqing.state.layers)"
            ".map(([k, l]) => [k, [l.loaded, l.count || 0, l.tiles || 0]]))"
        )
        assert layers and all(loaded for loaded, _c, _t in layers.values()), layers
        assert page.locator(".leaflet-overlay-pane path, .leaflet-overlay-pane canvas").count()


@pytest.mark.parametrize(("path", "username", "ready"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_runs_under_its_policy_without_violations(
    site, open_page, path, username, ready
):
    name = "csp_" + (re.sub(r"[^a-z]+", "_", path).strip("_") or "district")  # no ticket in it
    path = path.format(grid=site.grid, ticket=site.ticket)
    page, watch = _open(open_page, site.base, path, username)
    assert page.url == site.base + path, page.url
    _ready(page, ready)
    page.wait_for_timeout(300)  # a late script or style would report by now
    header = page.evaluate(
        """async () => (await fetch(location.href)).headers.get("content-security-policy")"""
    )
    assert "'strict-dynamic'" in header and "'unsafe-inline'" not in header.split(";")[1]
    screenshot(page, name)
    assert _violations(page) == []
    assert watch.console_errors == [] and watch.foreign_requests == []
    assert watch.dialogs == []


def test_the_service_card_prints_from_its_button(site, open_page):
    page, watch = _open(open_page, site.base, f"/grids/{site.grid}/card", None)
    page.evaluate("() => { window.print = () => { window.__printed = true; }; }")
    page.click("#print")
    assert page.evaluate("() => window.__printed") is True
    assert _violations(page) == [] and watch.console_errors == []


def test_where_am_i_may_locate_and_nothing_else_is_allowed(site, open_page):
    page, watch = _open(open_page, site.base, f"/r?grid={site.grid}", None, "phone")
    page.wait_for_function("() => window.Minqing && Minqing.pin")
    allowed = page.evaluate(
        "() => ['geolocation', 'camera', 'microphone', 'payment', 'usb']"
        ".filter(f => document.featurePolicy.allowsFeature(f))"
    )
    assert allowed == ["geolocation"]
    lon, lat = site.point
    page.context.grant_permissions(["geolocation"])
    page.context.set_geolocation({"longitude": lon + 0.0003, "latitude": lat + 0.0002})
    page.click("#mq-locate")
    page.wait_for_function(
        f"() => Math.abs(Minqing.pin.getLatLng().lat - {lat + 0.0002}) < 1e-9"
        f" && Math.abs(Minqing.pin.getLatLng().lng - {lon + 0.0003}) < 1e-9"
    )
    wait_layers_idle(page)
    assert _violations(page) == [] and watch.console_errors == []


@pytest.mark.parametrize(
    ("basemap", "host"), [("osm", "openstreetmap.org"), ("amap", "autonavi.com")]
)
def test_a_configured_basemap_loads_its_tiles_under_the_policy(
    committed_db, live_server, open_page, basemap, host
):
    with committed_db.session() as s:
        code = s.scalar(text("SELECT code FROM grids WHERE generation_high IS NULL LIMIT 1"))
    base = live_server(committed_db, basemap=basemap)
    page, watch = open_page(f"{base}/login", stub_hosts=(host,))
    page.context.add_init_script(WATCH_VIOLATIONS)
    page.goto(f"{base}/r?grid={code}")
    page.wait_for_function("() => window.Minqing && Minqing.map")
    wait_layers_idle(page)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length > 0")
    assert watch.stubbed and all(host in u for u in watch.stubbed)
    assert _violations(page) == []
    assert watch.console_errors == [] and watch.foreign_requests == []


def test_the_policy_stops_a_handler_slipped_into_the_page(site, open_page):
    """The issue's payload, were it ever inserted as HTML: the policy refuses its handler and
    the page reports it (so the zero counts above are counted by a live listener)."""
    page, watch = _open(open_page, site.base, f"/r?grid={site.grid}", None)
    page.wait_for_function("() => window.Minqing && Minqing.map")
    page.evaluate(
        """() => { const d = document.createElement("div");
                   d.innerHTML = '<img src="data:," onerror="window.__pwned = 1">';
                   document.body.appendChild(d); }"""
    )
    page.wait_for_function("() => window.__cspViolations.length > 0")
    assert page.evaluate("() => window.__pwned") is None
    assert any(v.startswith("script-src") for v in _violations(page)), _violations(page)
    watch.console_errors.clear()  # Chromium also logs the refusal as an error
