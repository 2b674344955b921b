"""The leader's popup offers every action the API says the leader may take now, each asking
for the reason or note it needs; a dispatch to a named volunteer shows whom the request waits
for (待<姓名>接单) to the leader and only "待志愿者接单" to the resident."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.browser.conftest import DEMO_PASSWORD, leader_grid_point, log_in, screenshot
from tests.factories import submit_housing, token

pytestmark = pytest.mark.browser

REASON = "经核实系邻里私人纠纷，不属于网格受理范围"


@pytest.fixture
def leader_site(committed_db, committed_client, live_server):
    lon, lat = leader_grid_point(committed_db)
    admin = token(committed_client, "admin", DEMO_PASSWORD)

    def submit(body_text: str) -> dict:
        created = submit_housing(committed_client, admin, lon, lat, body_text)
        assert created["status"] == "assigned", created
        return created

    return live_server(committed_db), committed_db, submit


def _leader_popup(page, base: str, number: str, viewport_login: bool = True):
    if viewport_login:
        page.goto(f"{base}/login?next=/leader")
        log_in(page, "leader1")
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    page.locator(f"#mq-list li:has-text('{number}')").click()
    popup = page.locator(".mq-req-popup")
    popup.locator(".mq-act-buttons button").first.wait_for()
    return popup


def _detail(page, base: str, request_id: int) -> dict:
    return page.evaluate(
        """async url => (await fetch(url, {credentials: 'same-origin'})).json()""",
        f"{base}/api/v1/requests/{request_id}",
    )


def test_leader_rejects_with_a_reason_from_the_popup(leader_site, open_page):
    base, _db, submit = leader_site
    req = submit("楼下邻居装修噪音")
    other = submit("小区门口路灯不亮")
    page, watch = open_page(f"{base}/login", "desktop")
    popup = _leader_popup(page, base, req["number"])
    # every action the API allows this leader, and no other (no claim, no withdraw)
    shown = popup.locator(".mq-act-buttons button").evaluate_all(
        "bs => bs.map(b => b.dataset.action)"
    )
    allowed = _detail(page, base, req["id"])["allowed_actions"]
    assert shown == allowed
    assert {"reject", "mark_duplicate", "reassign", "escalate", "resolve", "reply"} <= set(shown)
    assert "claim" not in shown and "withdraw" not in shown

    # the reason is required: a blank one is refused on the page, nothing is sent
    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    popup.locator("button[data-action=reject]").click()
    popup.locator("form[data-action=reject] button[type=submit]").click()
    assert "请填写" in popup.locator(".mq-msg").inner_text()
    assert popup.locator("textarea[name=reason]").get_attribute("aria-invalid") == "true"
    assert posted == []
    popup.locator("textarea[name=reason]").fill(REASON)
    with page.expect_response(lambda r: r.url.endswith("/reject")) as resp:
        popup.locator("form[data-action=reject] button[type=submit]").click()
    assert resp.value.status == 200
    page.wait_for_function("() => Minqing.state.pending === 0")
    assert page.locator(f"#mq-list li:has-text('{req['number']}')").count() == 0  # closed

    # the timeline carries the reason: the leader's detail and the resident's ticket page
    last = _detail(page, base, req["id"])["timeline"][-1]
    assert (last["action"], last["note"]) == ("reject", REASON)
    ticket, twatch = open_page(f"{base}/t/{req['ticket']}", "phone")
    assert REASON in ticket.locator("#timeline li").last.inner_text()
    assert "不予受理" in ticket.locator("#timeline li").last.inner_text()

    # what the server still refuses is shown as it words it
    popup = _leader_popup(page, base, other["number"], viewport_login=False)
    popup.locator("button[data-action=mark_duplicate]").click()
    popup.locator("input[name=duplicate_of]").fill("000000-999999")
    popup.locator("textarea[name=reason]").fill("与前一件相同")
    with page.expect_response(lambda r: r.url.endswith("/mark_duplicate")) as resp:
        popup.locator("form[data-action=mark_duplicate] button[type=submit]").click()
    assert resp.value.status in (400, 404, 422)
    message = resp.value.json()["error"]["message"]
    page.wait_for_function(
        "m => document.querySelector('.mq-req-popup .mq-msg').textContent === m", arg=message
    )
    screenshot(page, "leader_popup_refused_desktop")
    for w in (watch, twatch):
        assert w.foreign_requests == [] and w.dialogs == []
    assert all("422" in e or "400" in e or "404" in e for e in watch.console_errors), (
        watch.console_errors
    )


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_dispatch_to_a_named_volunteer_shows_who_is_awaited(leader_site, open_page, viewport):
    base, database, submit = leader_site
    req = submit("独居老人家中水管漏水")
    page, watch = open_page(f"{base}/login", viewport)
    popup = _leader_popup(page, base, req["number"])
    offers = _detail(page, base, req["id"])["offers"]
    assert len(offers) >= 2, offers  # the intake offered it to the nearest few
    assert popup.locator(".mq-badge.awaiting").inner_text() == f"待志愿者接单（{len(offers)} 人）"

    # the targets: offered volunteers of the leader's scope first, then others with the skill
    popup.locator("button[data-action=reassign]").click()
    target = popup.locator("select[name=target] optgroup").first.locator("option").first
    volunteer_id = int(target.get_attribute("value")[2:])
    popup.locator("select[name=target]").select_option(f"v:{volunteer_id}")
    popup.locator("textarea[name=reason]").fill("该志愿者熟悉水电维修")
    screenshot(page, f"leader_reassign_form_{viewport}")
    with page.expect_response(lambda r: r.url.endswith("/reassign")) as resp:
        popup.locator("form[data-action=reassign] button[type=submit]").click()
    assert resp.value.status == 200, resp.value.json()

    # the popup opens again on the same request: it waits for that volunteer, by name
    with database.session() as s:
        name = s.scalar(text("SELECT name FROM volunteers WHERE id = :v"), {"v": volunteer_id})
    shown = _detail(page, base, req["id"])["offers"]
    assert [o["volunteer_id"] for o in shown] == [volunteer_id]
    assert shown[0]["name"] == name  # a grid leader sees names unmasked
    page.locator(".mq-req-popup .mq-badge.awaiting", has_text=f"待{name}接单").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.mq-req-popup').length === 1")
    assert page.locator(".mq-req-popup .mq-badge.awaiting").inner_text() == f"待{name}接单"
    # and the reason stands in the timeline
    assert "该志愿者熟悉水电维修" in page.locator(".mq-req-popup .mq-timeline").inner_text()
    page.wait_for_timeout(300)
    screenshot(page, f"leader_awaiting_{viewport}")

    # the resident is told a volunteer is awaited, never who
    ticket, twatch = open_page(f"{base}/t/{req['ticket']}", "phone")
    assert ticket.locator("#awaiting").inner_text() == "待志愿者接单"
    assert ticket.locator("#status").inner_text() == "已派单"
    assert name not in ticket.content() and name[0] + "*" not in ticket.content()
    for w in (watch, twatch):
        assert w.foreign_requests == [] and w.dialogs == [] and w.console_errors == []


def test_volunteer_declines_an_offer_and_gives_work_back_with_a_reason(leader_site, open_page):
    base, database, submit = leader_site
    first = submit("帮忙取药")
    second = submit("帮忙搬运旧家具")
    with database.session() as s:
        vid, username = s.execute(
            text(
                "SELECT v.id, u.username FROM request_offers o JOIN volunteers v"
                " ON v.id = o.volunteer_id JOIN users u ON u.id = v.user_id"
                " WHERE o.request_id = :a AND EXISTS (SELECT 1 FROM request_offers p"
                " WHERE p.request_id = :b AND p.volunteer_id = v.id) ORDER BY o.rank LIMIT 1"
            ),
            {"a": first["id"], "b": second["id"]},
        ).one()
    page, watch = open_page(f"{base}/login?next=/v", "phone")
    log_in(page, username)
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")
    # 婉拒: the reason is optional, the offer goes away
    offer = page.locator(f"#mq-offers li:has-text('{first['number']}')")
    offer.locator("input[name=note]").fill("本周外出")
    with page.expect_response(lambda r: r.url.endswith("/decline_offer")) as resp:
        offer.locator("button[data-action=decline_offer]").click()
    assert resp.value.status == 200
    page.wait_for_function("() => Minqing.state.pending === 0")
    assert page.locator(f"#mq-offers li:has-text('{first['number']}')").count() == 0

    # 退回: claimed work goes back to the grid only with a reason
    offer = page.locator(f"#mq-offers li:has-text('{second['number']}')")
    with page.expect_response(lambda r: r.url.endswith("/claim")):
        offer.locator("button[data-action=claim]").click()
    mine = page.locator(f"#mq-mine li:has-text('{second['number']}')")
    mine.wait_for()
    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    mine.locator("button[data-action=give_back]").click()
    assert "请填写" in mine.locator(".mq-msg").inner_text()
    assert posted == []
    screenshot(page, "volunteer_give_back_phone")
    mine.locator("input[name=reason]").fill("家中临时有事，无法上门")
    with page.expect_response(lambda r: r.url.endswith("/give_back")) as resp:
        mine.locator("button[data-action=give_back]").click()
    assert resp.value.status == 200
    page.wait_for_function("() => Minqing.state.pending === 0")
    assert page.locator(f"#mq-mine li:has-text('{second['number']}')").count() == 0
    with database.session() as s:
        row = s.execute(
            text(
                "SELECT r.status, r.assignee_id, e.note FROM requests r JOIN request_events e"
                " ON e.request_id = r.id WHERE r.id = :r ORDER BY e.id DESC LIMIT 1"
            ),
            {"r": second["id"]},
        ).one()
    assert tuple(row) == ("assigned", None, "家中临时有事，无法上门")
    assert vid is not None
    assert watch.foreign_requests == [] and watch.dialogs == [] and watch.console_errors == []
