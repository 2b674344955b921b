"""A resident reaches the page from a grid's QR code, drops a pin, submits, follows the ticket."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser

PAYLOAD = "<img src=x onerror=alert(1)> 楼道灯不亮"


@pytest.fixture
def resident_site(committed_db, live_server):
    with committed_db.session() as s:
        code = s.scalar(text("SELECT code FROM grids ORDER BY households DESC LIMIT 1"))
    return live_server(committed_db), code


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_submit_from_the_qr_page_and_follow_the_ticket(resident_site, open_page, viewport):
    base, code = resident_site
    page, watch = open_page(f"{base}/r?grid={code}", viewport)
    page.wait_for_function("() => window.Minqing && Minqing.pin")
    assert page.locator("#mq-category option").count() >= 9
    assert code in page.locator(".mq-grid").inner_text()
    # the nearest service points by walking distance, with routes and the 15-minute circle
    page.click("#mq-services button[data-code='clinic']")
    page.wait_for_function(
        "() => Minqing.state.resident.pending === 0 && Minqing.state.resident.nearest.length > 0"
    )
    items = page.locator("#mq-nearest li")
    assert items.count() >= 1
    assert " m · " in items.first.inner_text()
    assert page.evaluate("Minqing.state.resident.circle !== null")
    assert page.evaluate("Minqing.state.resident.nearest[0].route.type") == "LineString"
    screenshot(page, f"resident_{viewport}")
    page.select_option("#mq-category", "housing")
    page.fill("#mq-text", PAYLOAD)
    page.fill("#mq-phone", "13912345678")
    with page.expect_navigation(url="**/t/**"):
        page.click("#mq-submit")
    page.wait_for_selector("#timeline li")
    assert page.locator("#request-text").inner_text() == PAYLOAD
    assert page.locator("#request-text img").count() == 0
    assert page.locator("#status").inner_text() in ("已派单", "待分派")
    assert page.locator("#timeline li").count() >= 1
    screenshot(page, f"ticket_{viewport}")
    page.wait_for_timeout(300)
    assert watch.dialogs == []
    assert watch.foreign_requests == [] and watch.console_errors == []


def test_a_bad_submission_keeps_the_form_and_explains(resident_site, open_page):
    base, code = resident_site
    page, watch = open_page(f"{base}/r?grid={code}&lang=en", "phone")
    page.wait_for_function("() => window.Minqing && Minqing.pin")
    page.fill("#mq-text", "x" * 10)
    page.fill("#mq-phone", "not a phone")
    page.click("#mq-submit")
    page.wait_for_function("() => document.getElementById('mq-error').textContent.length > 0")
    assert "phone" in page.locator("#mq-error").inner_text().lower()
    assert page.input_value("#mq-text") == "x" * 10  # nothing lost
    assert "/r" in page.url
    assert (watch.foreign_requests == [] and watch.console_errors == []) or all(
        "400" in e for e in watch.console_errors
    )
