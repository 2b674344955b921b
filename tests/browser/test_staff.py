"""Community staff in a real browser: triage inbox synced with the map, actions through the API
without a reload, an expired session that loses nothing, and the dashboard (党建地图).

A triage request needs a point inside the community but in no grid. The demo's grids tile
every community, so the fixture carves a 40 m hole out of one grid (a new estate not yet
gridded) and submits a request there: intake really places it in community triage. A second
request is submitted inside leader1's grid and escalated by leader1 through the API, so the
community inbox also holds an escalation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot, wait_layers_idle
from tests.factories import grid_points, submit_housing, token

pytestmark = pytest.mark.browser

COMMUNITY = "990000001001"
LEADER_GRID = "990000001001001"
PAYLOAD = "<img src=x onerror=alert(1)> 新楼盘路灯不亮"


@dataclass
class Site:
    base: str
    triage: dict
    escalated: dict
    others: list[dict]


@pytest.fixture
def staff_site(committed_db, committed_client, live_server) -> Site:
    with committed_db.session() as s:
        hole_grid, hole_lon, hole_lat = grid_points(s, COMMUNITY, 2)[1]
        s.execute(
            text(
                "UPDATE grids SET geom = ST_Multi(ST_Difference(geom, ST_Buffer("
                "ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography, 40)::geometry))"
                " WHERE code = :g"
            ),
            {"x": hole_lon, "y": hole_lat, "g": hole_grid},
        )
        points = grid_points(s, COMMUNITY)
        s.commit()
    client = committed_client
    admin = token(client, "admin", DEMO_PASSWORD)
    leader = token(client, "leader1", DEMO_PASSWORD)
    triage = submit_housing(client, admin, hole_lon, hole_lat, PAYLOAD)
    assert triage["status"] == "triage", triage
    leader_point = next(p for p in points if p[0] == LEADER_GRID)
    escalated = submit_housing(
        client, admin, leader_point[1] + 0.0001, leader_point[2], "楼上漏水，多次协调未果"
    )
    assert escalated["grid"] is not None and escalated["grid"]["code"] == LEADER_GRID, escalated
    resp = client.post(
        f"/api/v1/requests/{escalated['id']}/escalate",
        json={"reason": "需社区协调"},
        headers=leader,
    )
    assert resp.status_code == 200 and resp.get_json()["owner_level"] == "community"
    others = [
        submit_housing(client, admin, lon, lat, f"第{i}号诉求")
        for i, (_code, lon, lat) in enumerate(points[2:8])
    ]
    with committed_db.session() as s:  # one request from three weeks ago, for the time filter
        s.execute(
            text("UPDATE requests SET created_at = now() - interval '20 days' WHERE id = :i"),
            {"i": others[0]["id"]},
        )
        s.commit()
    return Site(live_server(committed_db), triage, escalated, others)


def _login_at(page, base: str, path: str, username: str = "community1") -> None:
    page.wait_for_url(lambda url: "/login?next=" in url)
    log_in(page, username, then=f"{base}{path}")


def _wait_inbox(page) -> None:
    page.wait_for_function(
        "() => window.Minqing && Minqing.state.inbox && Minqing.state.inbox.loaded"
    )
    wait_layers_idle(page)


def _row(page, request_id: int):
    return page.locator(f'#mq-inbox li[data-id="{request_id}"]')


def test_inbox_triage_action_without_reload_and_expired_session(staff_site, open_page):
    site = staff_site
    page, watch = open_page(f"{site.base}/staff", "desktop")
    _login_at(page, site.base, "/staff")
    _wait_inbox(page)
    page.evaluate("() => { window.__sameDocument = true; }")
    rows = page.locator("#mq-inbox li[data-id]")
    assert rows.count() >= 2
    # triage first, the escalation in the list too; user text shown as text
    assert rows.first.get_attribute("data-id") == str(site.triage["id"])
    triage_row = _row(page, site.triage["id"])
    assert triage_row.locator(".text").inner_text() == PAYLOAD
    assert page.locator("#mq-inbox img").count() == 0
    assert _row(page, site.escalated["id"]).count() == 1
    assert "社区" in _row(page, site.escalated["id"]).inner_text()

    # a list row flies to the request and opens its popup: timeline + actions
    triage_row.click()
    popup = page.locator(f'.leaflet-popup .mq-detail[data-id="{site.triage["id"]}"]')
    popup.locator("ol.timeline li").first.wait_for()
    assert popup.locator(".text").inner_text() == PAYLOAD
    assert popup.locator("img").count() == 0
    assert "is-selected" in triage_row.get_attribute("class")
    options = popup.locator("select[name=action] option").evaluate_all("os => os.map(o => o.value)")
    assert "assign" in options and "reject" in options and "escalate" in options
    screenshot(page, "staff_inbox_desktop")

    # assign the triage request to a grid from the popup: it leaves the inbox, no reload
    popup.locator("select[name=action]").select_option("assign")
    target = popup.locator("select[name=grid_code] option").first.get_attribute("value")
    assert target.startswith(COMMUNITY)
    popup.locator("select[name=grid_code]").select_option(target)
    popup.locator("textarea[name=note]").fill("派到就近网格")
    popup.locator("button[type=submit]").click()
    page.wait_for_function(
        f"() => !document.querySelector('#mq-inbox li[data-id=\"{site.triage['id']}\"]')"
    )
    assert site.triage["number"] in page.locator("#mq-toast").inner_text()
    assert page.evaluate("() => window.__sameDocument === true")
    assert page.evaluate("() => Minqing.state.inbox.actions") == 1

    # clicking a marker highlights its row
    wait_layers_idle(page)
    point = page.evaluate(
        """id => { const m = Minqing.staff.rows[id].marker;
                   const p = Minqing.map.latLngToContainerPoint(m.getLatLng());
                   const r = Minqing.map.getContainer().getBoundingClientRect();
                   return [r.left + p.x, r.top + p.y]; }""",
        site.escalated["id"],
    )
    page.mouse.click(point[0], point[1])
    page.wait_for_function(
        f"() => document.querySelector('#mq-inbox li[data-id=\"{site.escalated['id']}\"]')"
        ".classList.contains('is-selected')"
    )
    popup = page.locator(f'.leaflet-popup .mq-detail[data-id="{site.escalated["id"]}"]')
    popup.locator("select[name=action]").wait_for()
    timeline = popup.locator("ol.timeline").inner_text()
    assert "需社区协调" in timeline and "leader1" in timeline

    # a half-filled form survives an expired session: drafts come back after the login
    popup.locator("select[name=action]").select_option("reject")
    popup.locator("textarea[name=reason]").fill("经核实：非本社区事项，草稿")
    assert watch.console_errors == [] and watch.dialogs == []
    page.context.clear_cookies()
    popup.locator("button[type=submit]").click()
    _login_at(page, site.base, "/staff")
    _wait_inbox(page)
    popup = page.locator(f'.leaflet-popup .mq-detail[data-id="{site.escalated["id"]}"]')
    popup.locator("textarea[name=reason]").wait_for()
    assert popup.locator("select[name=action]").input_value() == "reject"
    assert popup.locator("textarea[name=reason]").input_value() == "经核实：非本社区事项，草稿"
    assert popup.locator(".mq-restored").inner_text() != ""
    # only the one refused call (401) reached the console
    assert all("401" in e for e in watch.console_errors), watch.console_errors
    assert watch.foreign_requests == [] and watch.dialogs == []


def test_inbox_on_a_phone(staff_site, open_page):
    site = staff_site
    page, watch = open_page(f"{site.base}/staff?lang=en", "phone")
    _login_at(page, site.base, "/staff?lang=en")
    _wait_inbox(page)
    assert page.locator("h1").inner_text() == "Triage & escalations"
    row = _row(page, site.triage["id"])
    assert row.locator(".text").inner_text() == PAYLOAD
    assert "is-triage" in row.get_attribute("class")
    row.click()
    popup = page.locator(f'.leaflet-popup .mq-detail[data-id="{site.triage["id"]}"]')
    popup.locator("ol.timeline li").first.wait_for()
    assert popup.locator(".text").inner_text() == PAYLOAD
    page.wait_for_timeout(200)
    screenshot(page, "staff_inbox_phone")
    assert watch.dialogs == [] and watch.foreign_requests == [] and watch.console_errors == []


def _heat_count(page) -> int:
    return page.evaluate("() => Minqing.state.dashboard.heatCount")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_dashboard_choropleth_heat_filter_and_csv(staff_site, open_page, viewport):
    site = staff_site
    page, watch = open_page(f"{site.base}/staff/dashboard", viewport)
    _login_at(page, site.base, "/staff/dashboard")
    page.wait_for_function("() => window.Minqing && Minqing.state.dashboard")
    wait_layers_idle(page)
    drawn = page.evaluate("() => Minqing.state.layers.choropleth.count")
    assert drawn >= 10  # every grid of the community
    assert page.locator(".leaflet-overlay-pane path.leaflet-interactive").count() == drawn
    filled = page.locator(".leaflet-overlay-pane path.leaflet-interactive").evaluate_all(
        "ps => new Set(ps.map(p => p.getAttribute('fill'))).size"
    )
    assert filled >= 2  # grids with open requests differ from those without
    legend = page.locator("#mq-legend")
    assert legend.is_visible() and legend.locator(".legend-row").count() == 6
    assert page.locator("canvas.leaflet-heatmap-layer").count() == 1
    # the heat canvas sits on the map (no zoom-animation scale left over), its points in scope
    transform = page.get_attribute("canvas.leaflet-heatmap-layer", "style")
    assert "scale(" not in transform or "scale(1)" in transform, transform
    outside = page.evaluate(
        """() => { const b = Minqing.state.layers.choropleth.layer.getBounds();
                   return Minqing.state.layers.heat.layer._latlngs
                     .filter(p => !b.contains(L.latLng(p[0], p[1]))).length; }"""
    )
    assert outside == 0
    month = _heat_count(page)
    assert month >= len(site.others) + 1  # at least ours (history may add more)
    rows = page.locator("#mq-table tbody tr[data-code]")
    assert rows.count() >= 5
    screenshot(page, f"staff_dashboard_{viewport}")

    # the time filter: the last two days drop the request from three weeks ago
    two_days_ago = dt.date.fromisoformat(page.input_value("#mq-to")) - dt.timedelta(days=2)
    page.fill("#mq-from", two_days_ago.isoformat())
    page.click("#mq-apply")
    page.wait_for_function(f"() => Minqing.state.dashboard.heatCount < {month}")
    wait_layers_idle(page)
    assert month - _heat_count(page) >= 1

    # per community: one polygon, the community's own
    page.check("input[name=level][value=community]")
    page.wait_for_function("() => Minqing.state.layers.choropleth.count === 1")
    wait_layers_idle(page)
    assert (
        page.locator("#mq-table tbody tr[data-code]").first.get_attribute("data-code") == COMMUNITY
    )
    page.select_option("#mq-metric", "on_time_rate")
    assert "按期结案率" in legend.inner_text()

    if viewport == "desktop" and page.locator("#mq-coverage-note").count() == 0:
        # service coverage (GET /api/v1/coverage, once the service circles exist)
        page.select_option("#mq-metric", "coverage")
        page.wait_for_function(
            "() => document.getElementById('mq-legend').textContent.includes('服务覆盖率')"
        )
        wait_layers_idle(page, timeout_ms=60000)
        assert page.locator("#mq-error").inner_text() == ""
        share = page.evaluate("() => Minqing.state.dashboard.coverage.community")
        assert 0 <= share[COMMUNITY] <= 1  # the API covers every unit; the map draws ours

    if viewport == "desktop":
        href = page.get_attribute("#mq-csv", "href")
        assert "level=community" in href and f"from={two_days_ago.isoformat()}" in href
        with page.expect_download() as info:
            page.click("#mq-csv")
        body = Path(info.value.path()).read_bytes()
        assert body.startswith("\ufeff".encode())
        lines = body.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("编码,名称,受理数")
        assert lines[1].startswith(COMMUNITY + ",")
    assert watch.dialogs == [] and watch.foreign_requests == [] and watch.console_errors == []


def test_staff_reply_and_resolve_an_assigned_request_and_see_whom_it_waits_for(
    staff_site, committed_db, committed_client, open_page
):
    """Community staff are offered every action the API allows them on an escalated
    (assigned) request — reply and resolve among them, never claim or withdraw; a reply needs
    its text; a dispatch to a named volunteer shows "待<姓名>接单"."""
    site = staff_site
    rid = site.escalated["id"]
    page, watch = open_page(f"{site.base}/staff", "desktop")
    _login_at(page, site.base, "/staff")
    _wait_inbox(page)
    _row(page, rid).click()
    popup = page.locator(f'.leaflet-popup .mq-detail[data-id="{rid}"]')
    popup.locator("select[name=action]").wait_for()
    options = popup.locator("select[name=action] option").evaluate_all("os => os.map(o => o.value)")
    allowed = page.evaluate(
        "async url => (await (await fetch(url, {credentials: 'same-origin'})).json())"
        ".allowed_actions",
        f"{site.base}/api/v1/requests/{rid}",
    )
    assert options == allowed
    assert {"reply", "resolve", "reassign", "reject", "escalate"} <= set(options)
    assert "claim" not in options and "withdraw" not in options

    # a reply needs its text: refused on the page, nothing sent; then sent and in the timeline
    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    popup.locator("select[name=action]").select_option("reply")
    popup.locator("button[type=submit]").click()
    assert "请填写" in popup.locator(".mq-error").inner_text()
    assert posted == []
    popup.locator("textarea[name=note]").fill("已联系物业，明天上午维修")
    with page.expect_response(lambda r: r.url.endswith("/reply")) as resp:
        popup.locator("button[type=submit]").click()
    assert resp.value.status == 200
    popup.locator("ol.timeline", has_text="已联系物业，明天上午维修").wait_for()
    popup.locator("select[name=action]").select_option("resolve")
    assert popup.locator("textarea[name=note]").get_attribute("required") == "required"

    # dispatched to a named volunteer of the community: the inbox shows whom it waits for
    with committed_db.session() as s:
        vid, name = s.execute(
            text(
                "SELECT v.id, v.name FROM volunteers v JOIN areas c ON c.id = v.community_id"
                " WHERE c.code = :c AND v.active AND 'housing' = ANY(v.skills)"
                " AND v.active_load < v.load_limit ORDER BY v.id LIMIT 1"
            ),
            {"c": COMMUNITY},
        ).one()
    staff = token(committed_client, "community1", DEMO_PASSWORD)
    resp = committed_client.post(
        f"/api/v1/requests/{rid}/reassign",
        json={"volunteer_id": vid, "reason": "请该志愿者上门查看", "override": True},
        headers=staff,
    )
    assert resp.status_code == 200, resp.get_json()
    page.locator(".leaflet-popup-close-button").click()
    page.evaluate("() => Minqing.staff.reload()")
    _wait_inbox(page)
    _row(page, rid).click()
    popup = page.locator(f'.leaflet-popup .mq-detail[data-id="{rid}"]')
    popup.locator(".badge-awaiting").wait_for()
    assert popup.locator(".badge-awaiting").inner_text() == f"待{name}接单"  # staff: unmasked
    screenshot(page, "staff_awaiting_desktop")
    assert watch.foreign_requests == [] and watch.dialogs == [] and watch.console_errors == []

    # on a phone: the reassign form names volunteers and grids, the override needs a tick
    phone, pwatch = open_page(f"{site.base}/staff", "phone")
    _login_at(phone, site.base, "/staff")
    _wait_inbox(phone)
    _row(phone, rid).click()
    popup = phone.locator(f'.leaflet-popup .mq-detail[data-id="{rid}"]')
    popup.locator("select[name=action]").select_option("reassign")
    groups = popup.locator("select[name=target] optgroup").evaluate_all(
        "gs => gs.map(g => g.label)"
    )
    assert groups[0] == "辖区内有此技能的志愿者" and len(groups) >= 2, groups
    assert f"v:{vid}" not in popup.locator("select[name=target]").evaluate(
        "s => Array.from(s.options).map(o => o.value)"
    )  # not the one it already waits for
    assert popup.locator("input[name=override][type=checkbox]").count() == 1
    popup.locator("textarea[name=reason]").scroll_into_view_if_needed()
    phone.wait_for_timeout(300)
    screenshot(phone, "staff_reassign_phone")
    assert pwatch.foreign_requests == [] and pwatch.console_errors == []


def test_lateness_stays_visible_in_the_inbox(staff_site, committed_db, open_page):
    """Issue 14: a request escalated for lateness shows 曾超期 at the new level; one past its
    deadline shows 已超期; the count names both; each row says how long ago it came in."""
    site = staff_site
    with committed_db.session() as s:
        s.execute(
            text("UPDATE requests SET was_overdue = true WHERE id = :i"),
            {"i": site.escalated["id"]},
        )
        s.execute(
            text("UPDATE requests SET deadline_at = now() - interval '2 hours' WHERE id = :i"),
            {"i": site.triage["id"]},
        )
        s.commit()
    page, watch = open_page(f"{site.base}/staff", "phone")
    _login_at(page, site.base, "/staff")
    _wait_inbox(page)
    assert _row(page, site.triage["id"]).locator(".badge-overdue").inner_text() == "已超期"
    assert _row(page, site.escalated["id"]).locator(".badge-late").inner_text() == "曾超期"
    assert "分钟前" in _row(page, site.escalated["id"]).locator(".meta").inner_text()
    items = page.evaluate(
        "() => Minqing.state.inbox.items.map(i => [i.id, i.overdue, i.was_overdue])"
    )
    overdue = {i for i, now, _ in items if now}
    late = {i for i, now, was in items if was and not now}
    assert site.triage["id"] in overdue and site.escalated["id"] in late
    count = page.locator("#mq-count").inner_text()
    assert f"超期 {len(overdue)} 件，曾超期 {len(late)} 件" in count, count
    page.locator('[data-filter="overdue"]').click()
    shown = page.locator("#mq-inbox li[data-id]").evaluate_all(
        "ls => ls.filter(l => l.offsetParent !== null).map(l => Number(l.dataset.id))"
    )
    assert set(shown) == overdue | late
    screenshot(page, "staff-inbox-lateness-phone")
    assert not watch.console_errors, watch.console_errors
