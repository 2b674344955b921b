"""No script from data (issue 16), in a real browser: every imported and user-supplied field
holds markup that would run script (venue, building, grid, area and volunteer names, building
codes and leaders, request text and contact, the reason of an escalation, a draft grid's code
and name); each page that shows one opens the tooltips, popups and list rows showing it and
finds the markup there as literal text, no element made from it, ``window.__pwned``
untouched and no ``securitypolicyviolation`` fired (an inline handler the CSP refused)."""

from __future__ import annotations

import pytest
from shapely import wkb
from shapely.geometry import Point, mapping
from sqlalchemy import text

from geo.validation import UtmProjector
from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot, wait_layers_idle
from tests.drafts.conftest import community_geom, split_line_through
from tests.factories import building, token

pytestmark = pytest.mark.browser

IMG = '<img src=x onerror="window.__pwned=1">'
SVG = '"><svg onload=window.__pwned=1>'
CODE = "<svg onload=__pwned=1>"  # 22 characters: a building code holds 24
# grid and area names also travel in the JSON a page's script starts from (web/maps.py): there
# they must not end the script, nor open a comment that would swallow the page after it
SCRIPT = "</script><!--<script>"
IN_CONFIG = {"grid", "community", "street"}
# every community and street: a volunteer may live in the next community
AREAS = "UPDATE areas SET name = CAST(:v AS text) || code, name_en = CAST(:v AS text) || code"


def evil(kind: str) -> str:
    """The value a field of ``kind`` holds: its name, then the payloads."""
    return f"{kind}{IMG}{SVG}" + (SCRIPT if kind in IN_CONFIG else "")


# Installed before any page script: what a payload would do, counted where it cannot hide.
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
}, true);
"""
# elements a payload would have made (none of ours has an inline handler)
MADE = 'img[src="x"], svg[onload], [onerror], [onload]'

# Open every tooltip bound on the map, then one by one every popup of a feature whose
# properties hold a payload; count the elements a payload made while each is open.
OPEN_ALL = """
([made, marker]) => {
  const out = { tooltips: [], popups: [], made: 0 };
  const layers = [];
  Minqing.map.eachLayer(l => layers.push(l));
  layers.forEach(l => {
    const t = l.getTooltip && l.getTooltip();
    if (!t) return;
    l.openTooltip();
    if (t.getElement()) out.tooltips.push(t.getElement().textContent);
  });
  out.made += document.querySelectorAll(made).length;
  layers.forEach(l => {
    const p = l.getPopup && l.getPopup();
    if (!p || !l.feature || !JSON.stringify(l.feature.properties).includes(marker)) return;
    l.openPopup();
    out.popups.push(p.getElement().querySelector('.leaflet-popup-content').textContent);
    out.made += document.querySelectorAll(made).length;
    l.closePopup();
  });
  return out;
}
"""


def open_all(page) -> dict:
    return page.evaluate(OPEN_ALL, [MADE, "__pwned"])


def assert_clean(page, watch) -> None:
    """No payload ran or was refused, and none is an element now."""
    page.wait_for_timeout(150)  # an <img>'s error event comes after its request
    state = page.evaluate(
        "made => ({pwned: typeof window.__pwned, violations: window.__violations,"
        " made: document.querySelectorAll(made).length})",
        MADE,
    )
    assert state == {"pwned": "undefined", "violations": [], "made": 0}, (page.url, state)
    assert watch.dialogs == [] and watch.foreign_requests == [] and watch.console_errors == []


def has(texts: list[str], value: str) -> bool:
    return any(value in t for t in texts)


@pytest.fixture
def site(committed_db, committed_client, live_server):
    """The demo district with a payload in every field a page shows, a request from a
    resident (text and contact name), one escalated to the community with a payload reason,
    and a planner's draft that splits the leader's grid and renames the new grid."""
    client = committed_client
    with committed_db.session() as s:
        grid = s.execute(
            text(
                "SELECT g.code, g.community_id, c.code AS community, c.parent_id AS street,"
                " ST_AsBinary(g.geom) AS geom FROM role_bindings b"
                " JOIN users u ON u.id = b.user_id AND u.username = 'leader1'"
                " JOIN grids g ON g.code = b.grid_code AND g.generation_high IS NULL"
                " JOIN areas c ON c.id = g.community_id"
            )
        ).one()
        geom = wkb.loads(bytes(grid.geom))
        proj = UtmProjector(community_geom(s, grid.community))
        line = split_line_through(geom, proj)
        # two buildings with payload codes, one each side of the line that will split it
        part = max(geom.geoms, key=lambda p: p.area)
        inside = part.representative_point()
        x, y = line.interpolate(line.project(inside)).coords[0]
        spots = [(x - 0.0004, y), (x + 0.0004, y)]
        for i, (bx, by) in enumerate(spots):
            assert geom.contains(Point(bx, by)), "the payload buildings must be in the grid"
            building(s, f"{CODE}{i}", bx, by, households=20, residential=True)
        for sql, kind in (
            ("UPDATE grids SET name = :v WHERE code = :g AND generation_high IS NULL", "grid"),
            (AREAS + " WHERE level = 'community'", "community"),
            (AREAS + " WHERE level = 'street'", "street"),
            ("UPDATE venues SET name = CAST(:v AS text) || id", "venue"),
            ("UPDATE volunteers SET name = CAST(:v AS text) || id", "volunteer"),
            ("UPDATE users SET display_name = :v WHERE username NOT LIKE 'vol%'", "user"),
            (
                "UPDATE buildings b SET name = CAST(:v AS text),"
                " leader_name = CAST(:v AS text) || 'leader'"
                " FROM grids g WHERE g.code = :g AND g.generation_high IS NULL"
                " AND ST_Covers(g.geom, b.rep_point)",
                "building",
            ),
        ):
            s.execute(
                text(sql),
                {"v": evil(kind), "g": grid.code, "c": grid.community_id, "s": grid.street},
            )
        s.commit()

    def resident_request(kind: str) -> dict:
        resp = client.post(
            "/api/v1/requests",
            json={
                "lon": inside.x,
                "lat": inside.y,
                "category": "housing",
                "text": evil(kind),
                "contact": {"name": evil(kind + "-contact"), "phone": "13912345678"},
            },
        )
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()

    offered = resident_request("request")
    escalated = resident_request("request2")
    leader = token(client, "leader1", DEMO_PASSWORD)
    resp = client.post(
        f"/api/v1/requests/{escalated['id']}/escalate",
        json={"reason": evil("reason")},
        headers=leader,
    )
    assert resp.status_code == 200, resp.get_json()

    planner = token(client, "planner", DEMO_PASSWORD)
    doc = client.post("/api/v1/drafts", json={"community_code": grid.community}, headers=planner)
    assert doc.status_code == 201, doc.get_json()
    draft = doc.get_json()["draft"]["id"]
    target = next(
        f["properties"]["id"]
        for f in doc.get_json()["grids"]["features"]
        if f["properties"]["code"] == grid.code
    )
    split = client.post(
        f"/api/v1/drafts/{draft}/edits",
        json={"op": "split", "grid": target, "line": mapping(line)},
        headers=planner,
    )
    assert split.status_code == 200, split.get_json()
    before = {f["properties"]["id"] for f in doc.get_json()["grids"]["features"]}
    created = [
        f["properties"]["id"]
        for f in split.get_json()["grids"]["features"]
        if f["properties"]["id"] not in before
    ]
    assert created, split.get_json()["edit"]
    for grid_id, code in zip(created, (IMG, SVG), strict=False):  # the new grids, renamed
        renamed = client.post(
            f"/api/v1/drafts/{draft}/edits",
            json={"op": "rename", "grid": grid_id, "code": code, "name": evil("draft")},
            headers=planner,
        )
        assert renamed.status_code == 200, renamed.get_json()

    with committed_db.session() as s:
        volunteer = s.scalar(
            text(
                "SELECT u.username FROM request_offers o"
                " JOIN volunteers v ON v.id = o.volunteer_id JOIN users u ON u.id = v.user_id"
                " WHERE o.request_id = :r ORDER BY o.volunteer_id LIMIT 1"
            ),
            {"r": offered["id"]},
        )
    return {
        "base": live_server(committed_db),
        "grid": grid.code,
        "community": grid.community,
        "offered": offered,
        "escalated": escalated,
        "volunteer": volunteer,
        "buildings": spots,
    }


def _open(open_page, site, path: str, username: str | None = None, viewport: str = "desktop"):
    """``path`` with the watch installed first, after logging in as ``username``."""
    base = site["base"]
    page, watch = open_page(f"{base}/login?next={path}", viewport)
    page.add_init_script(WATCH)
    if username:
        log_in(page, username, then=f"{base}{path}")
    else:
        page.goto(f"{base}{path}")
    return page, watch


def test_public_pages_show_imported_and_resident_text_as_text(site, open_page):
    base, code = site["base"], site["grid"]
    # the district map: grid and venue popups, a building's vector-tile popup
    page, watch = _open(open_page, site, "/")
    wait_layers_idle(page)
    shown = open_all(page)
    assert has(shown["popups"], evil("grid")) and has(shown["popups"], evil("venue"))
    assert shown["made"] == 0
    bx, by = site["buildings"][0]  # (a popup's auto-pan is stopped by a view set at once)
    page.evaluate(f"Minqing.map.setView([{by}, {bx}], 18, {{animate: false}})")
    page.wait_for_timeout(300)
    wait_layers_idle(page)
    point = page.evaluate(f"Minqing.map.latLngToContainerPoint([{by}, {bx}])")
    box = page.locator(".folium-map").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert CODE in popup.inner_text() and evil("building") in popup.inner_text()
    assert_clean(page, watch)

    # the resident page: the grid's name, the nearest venues (list and map tooltips)
    page.goto(f"{base}/r?grid={code}")
    page.wait_for_function(
        "() => window.Minqing && Minqing.state.resident &&"
        " Minqing.state.resident.pending === 0 && Minqing.state.resident.nearest.length > 0"
    )
    assert evil("grid") in page.locator(".mq-grid").inner_text()
    assert evil("venue") in page.locator("#mq-nearest li").first.inner_text()
    assert has(open_all(page)["tooltips"], evil("venue"))
    assert_clean(page, watch)
    screenshot(page, "xss_resident")
    # ... and what a resident types comes back on the ticket page as typed
    page.select_option("#mq-category", "housing")
    page.fill("#mq-text", evil("typed"))
    page.fill("#mq-name", evil("typed-name")[:100])
    with page.expect_navigation(url="**/t/**"):
        page.click("#mq-submit")
    page.wait_for_selector("#timeline li")
    assert page.locator("#request-text").inner_text() == evil("typed")
    assert_clean(page, watch)

    # the printable service card: grid, street and community names
    page.goto(f"{base}/grids/{code}/card")
    assert page.locator("h1").inner_text() == evil("grid")
    where = page.locator(".where").inner_text()
    assert evil("street") in where and evil("community") in where
    assert_clean(page, watch)

    # and the watch itself sees a payload that is put into the page as HTML
    page.evaluate(
        "html => { const d = document.createElement('div'); d.innerHTML = html;"
        " document.body.appendChild(d); }",
        IMG + SVG,
    )
    page.wait_for_timeout(300)
    state = page.evaluate(
        "made => ({pwned: window.__pwned, violations: window.__violations.length,"
        " made: document.querySelectorAll(made).length})",
        MADE,
    )
    assert state["made"] >= 2
    assert state["pwned"] == 1 or state["violations"] >= 1, state


def test_leader_and_volunteer_pages(site, open_page):
    number = site["offered"]["number"]
    page, watch = _open(open_page, site, "/leader", "leader1")
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    wait_layers_idle(page)
    row = page.locator(f"#mq-list li[data-id='{site['offered']['id']}']")
    assert evil("request") in row.inner_text() and evil("grid") in row.inner_text()
    row.click()
    popup = page.locator(".mq-req-popup")
    popup.locator(".mq-act-buttons button").first.wait_for()
    assert evil("request") in popup.inner_text()
    assert evil("request-contact") in popup.inner_text()
    if popup.locator("button[data-action=reassign]").count():  # volunteers by name
        popup.locator("button[data-action=reassign]").click()
        assert evil("volunteer") in popup.locator("select[name=target]").inner_text()
    assert_clean(page, watch)
    page.evaluate("Minqing.map.closePopup(); Minqing.map.setZoom(15, {animate: false})")
    page.wait_for_timeout(300)
    wait_layers_idle(page)
    shown = open_all(page)  # grids, buildings (name, leader), venues, volunteers
    for kind in ("grid", "building", "volunteer"):
        assert has(shown["popups"], evil(kind)), kind
    assert shown["made"] == 0
    assert_clean(page, watch)
    screenshot(page, "xss_leader")

    # the volunteer the request is offered to: name, community, the offer's text and grid
    assert site["volunteer"], "the request was offered to no one"
    page, watch = _open(open_page, site, "/v", site["volunteer"], "phone")
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    who = page.locator(".mq-who").inner_text()
    assert evil("volunteer") in who and evil("community") in who
    offer = page.locator(f"#mq-offers li[data-id='{site['offered']['id']}']")
    assert evil("request") in offer.inner_text() and evil("grid") in offer.inner_text()
    assert number in " ".join(open_all(page)["tooltips"])
    assert_clean(page, watch)


def test_staff_inbox_and_dashboard(site, open_page):
    page, watch = _open(open_page, site, "/staff", "community1")
    page.wait_for_function("() => Minqing.state.inbox && Minqing.state.inbox.loaded")
    assert evil("community") in page.locator(".mq-scope").inner_text()
    row = page.locator(f"#mq-inbox li[data-id='{site['escalated']['id']}']")
    assert evil("request2") in row.inner_text() and evil("grid") in row.inner_text()
    row.click()
    detail = page.locator(".mq-detail")
    detail.locator("dl").wait_for()
    text_ = detail.inner_text()
    for value in (evil("request2"), evil("grid"), evil("community"), evil("reason")):
        assert value in text_, value
    assert evil("request2-contact") in text_
    assert_clean(page, watch)
    assert site["escalated"]["number"] in " ".join(open_all(page)["tooltips"])
    assert_clean(page, watch)

    page.goto(f"{site['base']}/staff/dashboard")
    wait_layers_idle(page, 30000)
    assert evil("grid") in page.locator("#mq-table tbody").inner_text()
    assert has(open_all(page)["tooltips"], evil("grid"))
    assert_clean(page, watch)
    page.check("#mq-level input[value=community]")
    page.wait_for_function(
        "() => Minqing.state.dashboard.level === 'community' &&"
        " Object.values(Minqing.state.layers).every(l => l.loaded)"
    )
    assert evil("community") in page.locator("#mq-table tbody").inner_text()
    assert has(open_all(page)["tooltips"], evil("community"))
    assert_clean(page, watch)


def test_planner(site, open_page):
    page, watch = _open(open_page, site, f"/planner?community={site['community']}", "planner")
    page.wait_for_function(
        "() => Minqing.state.planner && Minqing.state.planner.ready &&"
        " Minqing.state.planner.doc && Minqing.state.planner.impact &&"
        " Minqing.state.planner.pending === 0",
        timeout=30000,
    )
    assert evil("community") in page.locator("#mq-community").inner_text()
    assert evil("community") in page.locator("#mq-drafts").inner_text()
    # the new grids' codes label them on the map, and name where buildings and people go
    labels = page.locator(".mq-grid-label", has_text="__pwned")
    assert labels.count() >= 1
    assert set(labels.all_inner_texts()) <= {IMG, SVG}
    shown = open_all(page)
    assert has(shown["tooltips"], CODE)  # a building that moves, by its code
    impact = page.locator("#mq-impact-lists").text_content()
    assert IMG in impact or SVG in impact
    assert_clean(page, watch)
    # a renamed grid, selected: its name and code in the form and the selection
    label = labels.first.bounding_box()
    page.mouse.click(label["x"] + label["width"] / 2, label["y"] + label["height"] + 4)
    page.wait_for_function("() => Minqing.state.planner.selected.length === 1")
    assert page.locator("#mq-rename-name").input_value() == evil("draft")
    assert labels.first.inner_text() in page.locator("#mq-selected").inner_text()
    assert_clean(page, watch)
    screenshot(page, "xss_planner")
