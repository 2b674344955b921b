"""Login and sessions in a browser (issue 16, item 3): a leader logs in, acts through the page's
fetch helper (which sends the session's CSRF token), logs out, and the cookie they had is
worth nothing afterwards; the account page signs out everywhere."""

from __future__ import annotations

import pytest

from tests.browser.conftest import DEMO_PASSWORD, leader_grid_point, log_in, screenshot
from tests.factories import submit_housing, token

pytestmark = pytest.mark.browser


@pytest.fixture
def leader_site(committed_db, committed_client, live_server):
    lon, lat = leader_grid_point(committed_db)
    admin = token(committed_client, "admin", DEMO_PASSWORD)
    created = submit_housing(committed_client, admin, lon, lat, "楼道堆放杂物")
    return live_server(committed_db), created


def _status(ctx, url: str) -> int:
    return ctx.request.get(url, max_redirects=0).status


def test_leader_acts_logs_out_and_the_old_cookie_is_refused(leader_site, open_page, browser):
    base, req = leader_site
    page, watch = open_page(f"{base}/login?next=/leader", "desktop")
    log_in(page, "leader1", then=f"{base}/leader")
    page.wait_for_function("() => Minqing.state.work && Minqing.state.work.loaded")

    # a page action through fetch: the helper sends the session's token, the server takes it
    page.locator(f"#mq-list li:has-text('{req['number']}')").click()
    popup = page.locator(".mq-req-popup")
    popup.locator("button[data-action=reply]").click()
    popup.locator("form[data-action=reply] textarea[name=note]").fill("已联系物业清理")
    with page.expect_response(lambda r: r.url.endswith("/reply")) as resp:
        popup.locator("form[data-action=reply] button[type=submit]").click()
    assert resp.value.status == 200, resp.value.text()
    sent = resp.value.request.headers
    assert sent.get("x-csrf-token") and len(sent["x-csrf-token"]) >= 40

    # the same write without the token, as another site's form would send it: refused
    forged = page.evaluate(
        """async url => {
             const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
               headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({note: '伪造'})});
             return [r.status, (await r.json()).error.code];
           }""",
        f"{base}/api/v1/requests/{req['id']}/reply",
    )
    assert forged == [403, "csrf_failed"]

    ctx = page.context
    kept = ctx.cookies()  # the cookie an attacker copied off this browser
    assert _status(ctx, f"{base}/api/v1/auth/whoami") == 200
    screenshot(page, "auth_leader_before_logout")
    with page.expect_navigation():
        page.locator("form[action='/logout'] button").click()
    assert _status(ctx, f"{base}/api/v1/auth/whoami") == 401

    replay = browser.new_context()
    try:
        replay.add_cookies(kept)
        assert _status(replay, f"{base}/api/v1/auth/whoami") == 401
        again = replay.new_page()
        again.goto(f"{base}/leader")
        assert "/login" in again.url
    finally:
        replay.close()
    assert watch.foreign_requests == [] and watch.dialogs == []
    assert all("403" in e for e in watch.console_errors), watch.console_errors


def test_the_account_page_signs_out_everywhere(leader_site, open_page):
    base, _req = leader_site
    phone, _pw = open_page(f"{base}/login?next=/leader", "phone")
    log_in(phone, "leader1", then=f"{base}/leader")
    desk, watch = open_page(f"{base}/login?next=/account", "desktop")
    log_in(desk, "leader1", then=f"{base}/account")
    assert desk.locator("#sessions li").count() == 2
    assert desk.locator("#sessions li.current").count() == 1
    screenshot(desk, "auth_account_page")
    with desk.expect_navigation():
        desk.locator("#sign-out-everywhere button").click()
    assert "/login" in desk.url
    assert _status(phone.context, f"{base}/api/v1/auth/whoami") == 401
    phone.goto(f"{base}/leader")
    assert "/login" in phone.url
    assert watch.foreign_requests == [] and watch.console_errors == []
