"""End to end in a real browser: a resident submits, the leader dispatches on the map, the
volunteer claims and resolves on the phone page, the resident rates, the metrics change."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.browser.conftest import (
    STATION_GCJ02,
    STATION_WGS84,
    log_in,
    screenshot,
    wait_layers_idle,
)

pytestmark = pytest.mark.browser

PAYLOAD = "<img src=x onerror=alert(1)> 3号楼电梯坏了"


def login(page, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    log_in(page, username)


@pytest.fixture
def site(committed_db, live_server):
    with committed_db.session() as s:
        code, lon, lat = s.execute(
            text(
                "SELECT b.grid_code, ST_X(ST_PointOnSurface(g.geom)), ST_Y(ST_PointOnSurface(g.geom))"
                " FROM role_bindings b JOIN users u ON u.id = b.user_id"
                " JOIN grids g ON g.code = b.grid_code AND g.generation_high IS NULL"
                " WHERE u.username = 'leader1'"
            )
        ).one()
    return live_server(committed_db), committed_db, code, lon, lat


def _metrics(client_page, base, code):
    return client_page.evaluate(
        """async ([url, code]) => {
             const r = await fetch(url, {credentials: 'same-origin'});
             const b = await r.json();
             return b.rows.find(x => x.code === code);
           }""",
        [f"{base}/api/v1/metrics?level=grid", code],
    )


def test_resident_leader_volunteer_round_trip(site, browser, open_page):
    base, database, code, _lon, _lat = site
    # 0. the leader is at work; the grid's figures before
    leader, lwatch = open_page(f"{base}/login", "desktop")
    login(leader, base, "leader1", "/leader")
    leader.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    before = _metrics(leader, base, code)
    # 1. the resident submits from the grid's QR page
    resident, rwatch = open_page(f"{base}/r?grid={code}", "phone")
    resident.wait_for_function("() => window.Minqing && Minqing.pin")
    resident.select_option("#mq-category", "housing")
    resident.fill("#mq-text", PAYLOAD)
    with resident.expect_navigation(url="**/t/**"):
        resident.click("#mq-submit")
    ticket_url = resident.url
    number = resident.locator("#number").inner_text()

    # 2. it appears on the leader's map in the right grid; the leader dispatches
    leader.evaluate("() => Minqing.leaderRefresh()")
    leader.wait_for_function("() => Minqing.state.pending === 0")
    wait_layers_idle(leader)
    row = leader.locator(f"#mq-list li:has-text('{number}')")
    assert row.count() == 1
    assert (
        leader.locator("#mq-list li .txt", has_text="3号楼电梯坏了").first.inner_text() == PAYLOAD
    )
    row.click()
    popup = leader.locator(".mq-req-popup")
    popup.wait_for()
    leader.wait_for_selector(".mq-req-popup button[data-action]")
    screenshot(leader, "leader_popup_desktop")
    assert popup.locator("img").count() == 0
    # dispatch to the nearest offered volunteer, with the reason a handoff needs
    popup.locator("button[data-action=reassign]").click()
    target = popup.locator("select[name=target] option[value^='v:']").first.get_attribute("value")
    volunteer_id = int(target[2:])
    popup.locator("select[name=target]").select_option(target)
    popup.locator("textarea[name=reason]").fill("就近志愿者上门")
    with leader.expect_response(lambda r: r.url.endswith("/reassign")) as resp:
        popup.locator("form[data-action=reassign] button[type=submit]").click()
    assert resp.value.status == 200
    leader.wait_for_function("() => Minqing.state.pending === 0")
    with database.session() as s:
        offered = s.scalars(
            text(
                "SELECT o.volunteer_id FROM request_offers o JOIN requests r ON r.id = o.request_id "
                "WHERE r.number = :n"
            ),
            {"n": number},
        ).all()
        username = s.scalar(
            text(
                "SELECT u.username FROM volunteers v JOIN users u ON u.id = v.user_id WHERE v.id = :v"
            ),
            {"v": volunteer_id},
        )
    assert offered == [volunteer_id]  # dispatched: the chosen volunteer is the sole offer

    # 3. the volunteer claims, starts and resolves on the phone page
    vol, vwatch = open_page(f"{base}/login", "phone")
    login(vol, base, username, "/v")
    vol.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    offer = vol.locator(f"#mq-offers li:has-text('{number}')")
    assert "步行" in offer.locator(".meta").inner_text()  # walking distance
    routed = vol.evaluate(
        f"Minqing.state.work.data.offers.find(o => o.number === '{number}').route"
    )
    assert routed["type"] == "LineString" and len(routed["coordinates"]) >= 2
    with vol.expect_response(lambda r: r.url.endswith("/claim")) as claimed:
        offer.locator("button[data-action=claim]").click()
    assert claimed.value.status == 200
    mine = vol.locator(f"#mq-mine li:has-text('{number}')")
    mine.wait_for()
    with vol.expect_response(lambda r: r.url.endswith("/start")):
        mine.locator("button[data-action=start]").click()
    vol.wait_for_function("() => Minqing.state.pending === 0")
    mine = vol.locator(f"#mq-mine li:has-text('{number}')")
    assert mine.locator(".mq-badge").inner_text() == "办理中"
    mine.locator("input[name=note]").fill("已联系物业修好电梯")
    mine.locator("button[data-action=resolve]").click()
    vol.wait_for_selector(f"#mq-history li:has-text('{number}')")
    screenshot(vol, "volunteer_phone")
    assert int(vol.locator("#mq-points").inner_text()) > 0

    # 4. the resident rates it on the ticket page
    resident.goto(ticket_url)
    resident.check("input[name=rating][value='5']")
    with resident.expect_navigation():
        resident.click("#rate button[type=submit]")
    assert resident.locator("#status").inner_text() == "已关闭"
    screenshot(resident, "ticket_rated_phone")

    # 5. the leader's figures changed accordingly
    after = _metrics(leader, base, code)
    assert after["received"] == before["received"] + 1
    assert after["closed"] == before["closed"] + 1
    for w in (rwatch, lwatch, vwatch):
        assert w.dialogs == [] and w.foreign_requests == [] and w.console_errors == []


def test_leader_page_needs_login_and_keeps_the_target(site, open_page):
    base, *_ = site
    page, watch = open_page(f"{base}/leader", "phone")
    assert "/login" in page.url and "next=/leader" in page.url
    login(page, base, "leader1", "/leader")
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    wait_layers_idle(page)
    screenshot(page, "leader_phone")
    assert watch.foreign_requests == [] and watch.console_errors == []


def test_leader_markers_sit_on_an_amap_basemap(site, live_server, open_page):
    """Over AMap (drawn in GCJ-02) the leader's request markers are placed in GCJ-02: the
    list is asked for in the basemap's CRS. A request of the leader's grid is moved to a
    point whose GCJ-02 position is published."""
    _base, database, code, _lon, _lat = site
    with database.session() as s:
        rid = s.execute(
            text(
                "SELECT r.id FROM requests r JOIN grids g ON g.id = r.grid_id"
                " WHERE g.code = :c AND r.status = 'assigned' ORDER BY r.id LIMIT 1"
            ),
            {"c": code},
        ).scalar()
        assert rid is not None, "the demo's leader grid has no assigned request"
        s.execute(
            text("UPDATE requests SET geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326) WHERE id = :i"),
            {"x": STATION_WGS84[0], "y": STATION_WGS84[1], "i": rid},
        )
        s.commit()
    base = live_server(database, basemap="amap")
    page, watch = open_page(f"{base}/login", "desktop", stub_hosts=("autonavi.com",))
    login(page, base, "leader1", "/leader")
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    latlng = page.evaluate(f"() => Minqing.state.work.markers[{rid}].getLatLng()")
    # the published points are rounded to ~1 m (1e-5 degrees)
    assert latlng["lng"] == pytest.approx(STATION_GCJ02[0], abs=2e-5)
    assert latlng["lat"] == pytest.approx(STATION_GCJ02[1], abs=2e-5)
    assert watch.foreign_requests == [] and watch.console_errors == []
