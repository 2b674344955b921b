"""A planner in a real browser: log in, open a draft of a demo community, split a grid by drawing
a line with Leaflet-Geoman (real mouse clicks on the map), watch the validation list and the
impact table change, publish, see the history grow, undo, and compare two generations.

The line is drawn with ``page.mouse`` clicks at the pixels Leaflet gives for the line's lon/lat
ends (``map.latLngToContainerPoint`` plus the map's position on the page), then a second click
on the last vertex finishes it — the way a planner draws it, not through Geoman's JS API.
"""

from __future__ import annotations

import json

import pytest
import shapely
from shapely.geometry import mapping, shape
from sqlalchemy import text

from geo.validation import UtmProjector
from tests.browser.conftest import log_in, screenshot, wait_layers_idle
from tests.drafts.conftest import community_geom, live_grids, split_line_through

pytestmark = pytest.mark.browser

COMMUNITY = "990000002001"  # 公园社区: 5 grids
TARGET = "990000002001005"
NEW_CODE = "990000002001006"

IDLE = "() => Minqing.state.planner && Minqing.state.planner.pending === 0"


@pytest.fixture
def planner_site(committed_db, live_server):
    with committed_db.session() as s:
        grids = live_grids(s, COMMUNITY)
        proj = UtmProjector(community_geom(s, COMMUNITY))
        target_geom = grids[TARGET][1]
        inside = s.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids"
                " WHERE code = :c AND generation_high IS NULL) x"
            ),
            {"c": TARGET},
        ).one()
    line = split_line_through(target_geom, proj)
    return live_server(committed_db), list(line.coords), (inside[0], inside[1])


def _pixel(page, lon: float, lat: float) -> tuple[float, float]:
    """Page coordinates of a lon/lat point on the planner map."""
    xy = page.evaluate(
        """([lon, lat]) => {
            const p = Minqing.map.latLngToContainerPoint([lat, lon]);
            const r = Minqing.map.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [lon, lat],
    )
    return xy[0], xy[1]


def _log_in_as_planner(page, then: str) -> None:
    """Log in on the form the page shows and wait until the planner page at ``then`` is ready."""
    log_in(page, "planner", then=then)
    page.wait_for_function(
        "() => window.Minqing && Minqing.state.planner && Minqing.state.planner.ready"
    )


def _wait_idle(page) -> None:
    page.wait_for_function(IDLE, timeout=30000)


def _history_ids(page) -> list[int]:
    return page.evaluate("() => Minqing.state.planner.history.map(g => g.id)")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_split_publish_undo_and_compare(planner_site, open_page, viewport):
    base, line, inside = planner_site
    page, watch = open_page(f"{base}/planner", viewport)
    assert "/login" in page.url  # not logged in: the login form, coming back here after
    _log_in_as_planner(page, "**/planner")
    assert page.locator("h1").first.inner_text() == "网格规划"
    history0 = _history_ids(page)

    # ---- open (create) a draft of the community
    page.select_option("#mq-community", COMMUNITY)
    page.click("#mq-open")
    page.wait_for_function(
        "() => Minqing.state.planner.doc && Minqing.state.planner.impact && "
        "Minqing.state.planner.live",
        timeout=30000,
    )
    _wait_idle(page)
    assert page.evaluate("() => Minqing.state.planner.doc.grids.features.length") == 5
    assert page.evaluate("() => Minqing.state.planner.live.grids") == 5
    assert page.locator(".mq-grid-label").count() == 5  # the draft grids labelled on the map
    assert page.locator("#mq-impact-table tbody tr").count() == 5
    assert page.locator("#mq-impact-table tbody tr.is-added").count() == 0
    findings_before = page.locator("#mq-findings li").all_inner_texts()
    assert page.is_disabled("#mq-publish") is False  # the copy of the live grids is publishable
    wait_layers_idle(page)
    screenshot(page, f"planner_draft_{viewport}")

    # ---- select the grid with a click, then split it with a line drawn on the map
    page.mouse.click(*_pixel(page, *inside))
    page.wait_for_function(
        f"() => document.getElementById('mq-selected').textContent.includes('{TARGET}')"
    )
    assert page.input_value("#mq-rename-code") == TARGET
    redraws = page.evaluate("() => Minqing.state.planner.redraws")
    page.click("#mq-tool-split")
    assert page.evaluate("() => Minqing.state.planner.mode") == "split"
    page.wait_for_timeout(300)
    start, end = _pixel(page, *line[0]), _pixel(page, *line[-1])
    vertices = "() => Minqing.map.pm.Draw.Line._markers.length"
    page.mouse.move(*start, steps=4)
    page.mouse.click(*start)
    page.wait_for_function(f"{vertices} === 1")
    page.wait_for_timeout(400)
    page.mouse.move(*end, steps=8)
    page.mouse.click(*end)
    page.wait_for_function(f"{vertices} === 2")
    page.wait_for_timeout(400)
    page.mouse.click(*end)  # a click on the last vertex finishes the line
    page.wait_for_function(
        f"() => Minqing.state.planner.redraws > {redraws} && "
        "Minqing.state.planner.doc.grids.features.length === 6",
        timeout=30000,
    )
    page.wait_for_function(
        "() => Minqing.state.planner.impact && Minqing.state.planner.impact.totals.grids_added === 1",
        timeout=30000,
    )
    _wait_idle(page)
    assert page.evaluate("() => location.pathname") == "/planner"  # no reload
    assert page.evaluate("() => Minqing.state.planner.lastEdit.op") == "split"
    assert page.evaluate("() => Minqing.state.planner.lastEdit.created") == [NEW_CODE]
    # the validation list follows the edit: the halves fall below the households range
    findings_after = page.locator("#mq-findings li").all_inner_texts()
    assert findings_after != findings_before
    assert page.locator("#mq-findings li[data-code=households_out_of_range]").count() >= 1
    assert page.locator("#mq-findings li[data-severity=blocking]").count() == 0
    # ... and the impact table: the new grid added, the split one changed
    added = page.locator("#mq-impact-table tbody tr.is-added")
    assert added.count() == 1 and NEW_CODE in added.inner_text()
    changed = page.locator(f"#mq-impact-table tbody tr[data-code='{TARGET}']")
    assert "is-changed" in changed.get_attribute("class")
    hh = page.evaluate(
        "codes => Minqing.state.planner.impact.grids.filter(g => codes.includes(g.code))"
        ".map(g => [g.households_before, g.households_after])",
        [TARGET, NEW_CODE],
    )
    assert sum(b for b, _ in hh) == sum(a for _, a in hh) > 0  # households only moved
    # a finding clicked in the list is zoomed to and highlighted on the map
    first = page.locator("#mq-findings li").first
    first.click()
    assert "is-selected" in first.get_attribute("class")
    assert page.evaluate("() => Minqing.state.planner.focus") == 0
    page.wait_for_timeout(400)
    screenshot(page, f"planner_split_{viewport}")

    # ---- publish, through the in-page confirmation
    page.click("#mq-publish")
    page.wait_for_selector("#mq-confirm[open]")
    assert "发布" in page.locator("#mq-confirm-text").inner_text()
    page.click("#mq-confirm-yes")
    page.wait_for_function(
        f"() => Minqing.state.planner.history.length === {len(history0) + 1} && "
        "Minqing.state.planner.doc.draft.status === 'published'",
        timeout=30000,
    )
    _wait_idle(page)
    published = max(_history_ids(page))
    assert page.is_disabled("#mq-publish") and page.is_disabled("#mq-tool-split")
    page.wait_for_function(
        f"() => Minqing.state.planner.live && Minqing.state.planner.live.generation === {published}"
    )
    assert page.evaluate("() => Minqing.state.planner.live.grids") == 6
    assert page.locator("#mq-history li").count() == len(history0) + 1
    assert f"第 {published} 版" in page.locator("#mq-message").inner_text()
    screenshot(page, f"planner_published_{viewport}")

    # ---- undo: the previous generation's grids published again
    assert page.is_enabled("#mq-undo")
    page.click("#mq-undo")
    page.wait_for_selector("#mq-confirm[open]")
    page.click("#mq-confirm-yes")
    page.wait_for_function(
        f"() => Minqing.state.planner.history.length === {len(history0) + 2}", timeout=30000
    )
    page.wait_for_function(
        f"() => Minqing.state.planner.live && Minqing.state.planner.live.generation === {published + 1}"
        " && Minqing.state.planner.live.grids === 5",
        timeout=30000,
    )
    _wait_idle(page)
    assert page.locator("#mq-history li").count() == len(history0) + 2

    # ---- compare the two newest generations side by side (6 grids vs 5 again)
    page.click("#mq-compare")
    page.wait_for_function("() => Minqing.state.planner.compared", timeout=30000)
    assert page.evaluate("() => Minqing.state.planner.compared") == [published, published + 1, 6, 5]
    assert page.is_visible("#mq-compare-a") and page.is_visible("#mq-compare-b")
    page.wait_for_timeout(300)
    screenshot(page, f"planner_compare_{viewport}")
    page.click("#mq-compare-close")
    assert page.is_hidden("#mq-compare-view")

    page.wait_for_timeout(300)
    assert watch.dialogs == []
    assert watch.foreign_requests == []
    assert watch.console_errors == []


def test_english_page_upload_and_a_bad_edit_explained(planner_site, open_page, tmp_path):
    base, _, _ = planner_site
    page, watch = open_page(f"{base}/login?next=/planner%3Flang%3Den", "desktop")
    _log_in_as_planner(page, "**/planner?lang=en")
    assert page.locator("h1").first.inner_text() == "Grid planning"
    page.select_option("#mq-community", COMMUNITY)
    page.click("#mq-open")
    page.wait_for_function("() => Minqing.state.planner.doc && Minqing.state.planner.impact")
    _wait_idle(page)
    # replace the draft's grids from a GeoJSON file: the live grids with the first two merged
    live = page.evaluate(
        "c => fetch('/api/v1/generations/1/grids?community=' + c).then(r => r.json())", COMMUNITY
    )
    feats = live["features"]
    merged = shapely.union_all([shape(feats[0]["geometry"]), shape(feats[1]["geometry"])])
    upload = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": mapping(merged),
             "properties": {"code": feats[0]["properties"]["code"], "name": "合并"}},
            *({"type": "Feature", "geometry": f["geometry"],
               "properties": {"code": f["properties"]["code"]}} for f in feats[2:]),
        ],
    }  # fmt: skip
    path = tmp_path / "grids.geojson"
    path.write_text(json.dumps(upload), encoding="utf-8")
    page.set_input_files("#mq-upload-file", str(path))
    page.select_option("#mq-upload-crs", "wgs84")
    page.click("#mq-upload-go")
    page.wait_for_function(
        "() => Minqing.state.planner.lastEdit && Minqing.state.planner.lastEdit.op === 'replace_upload'"
        f" && Minqing.state.planner.doc.grids.features.length === {len(feats) - 1}",
        timeout=30000,
    )
    page.wait_for_function(
        "() => Minqing.state.planner.impact && Minqing.state.planner.impact.totals.grids_removed === 1",
        timeout=30000,
    )
    _wait_idle(page)
    assert "Updated" in page.locator("#mq-message").inner_text()
    assert page.locator("#mq-impact-table tbody tr.is-removed").count() == 1
    # merging needs two grids: the page says so without calling the API
    page.click("#mq-tool-merge")
    assert "two" in page.locator("#mq-error").inner_text()
    # a grid code that does not start with the community's code is a blocking finding
    page.evaluate(
        "() => Minqing.state.planner.selected.push(Minqing.state.planner.doc.grids.features[0].properties.id)"
    )
    page.evaluate("() => document.getElementById('mq-rename-code').value = '990000001001999'")
    page.click("#mq-rename-save")
    page.wait_for_function("() => Minqing.state.planner.doc.validation.blocking > 0", timeout=30000)
    _wait_idle(page)
    assert page.locator("#mq-findings li[data-severity=blocking]").count() >= 1
    assert "Blocking" in page.locator("#mq-findings li[data-severity=blocking]").first.inner_text()
    assert page.is_disabled("#mq-publish")
    assert "Blocking" in page.locator("#mq-publish-hint").inner_text()
    assert watch.foreign_requests == [] and watch.console_errors == [] and watch.dialogs == []
