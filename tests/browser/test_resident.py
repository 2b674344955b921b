"""A resident reaches the page from a grid's QR code, drops a pin, submits, follows the ticket."""

from __future__ import annotations

import re
import secrets

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


DRAFT = "minqing.resident.draft.v1"
SUBMIT_URL = "**/api/v1/requests"


def _requests_with_text(committed_db, text_: str) -> int:
    with committed_db.session() as s:
        return s.scalar(text("SELECT count(*) FROM requests WHERE text = :t"), {"t": text_})


def _draft(page) -> dict | None:
    return page.evaluate(f"JSON.parse(localStorage.getItem('{DRAFT}'))")


def test_a_double_tap_makes_one_request(resident_site, open_page, committed_db):
    base, code = resident_site
    page, watch = open_page(f"{base}/r?grid={code}", "phone")
    page.wait_for_function("() => window.Minqing && Minqing.pin")
    text_ = "双击只算一次 " + secrets.token_hex(4)
    page.fill("#mq-text", text_)
    draft = _draft(page)  # one key per draft, 128 random bits, kept with the draft
    assert re.fullmatch(r"[0-9a-f]{32}", draft["key"]) and draft["text"] == text_
    sent: list[tuple[str | None, str | None]] = []
    page.on(
        "request",
        lambda r: (
            sent.append((r.headers.get("idempotency-key"), r.post_data))
            if r.method == "POST" and r.url.endswith("/api/v1/requests")
            else None
        ),
    )
    with page.expect_navigation(url="**/t/**"):
        # two submits in one tick: the disabled button does not stop the second
        page.evaluate(
            "() => { const f = document.getElementById('mq-request');"
            " f.requestSubmit(); f.dispatchEvent(new Event('submit', {cancelable: true})); }"
        )
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0][0] == draft["key"]
    assert _requests_with_text(committed_db, text_) == 1
    # whichever of the two the server saw second, it was a replay of the first
    again = page.request.post(
        f"{base}/api/v1/requests",
        data=sent[0][1],
        headers={"Content-Type": "application/json", "Idempotency-Key": draft["key"]},
    )
    assert again.status == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["ticket"] in page.url
    assert _requests_with_text(committed_db, text_) == 1
    assert _draft(page) is None  # cleared after the successful submit
    assert watch.foreign_requests == [] and watch.dialogs == []


def _lose_the_answer(page) -> list[int]:
    """The next submission reaches the server, but its answer never reaches the page."""
    statuses: list[int] = []

    def lose(route) -> None:
        statuses.append(route.fetch().status)
        route.abort("connectionreset")

    page.route(SUBMIT_URL, lose, times=1)
    return statuses


@pytest.mark.parametrize("edit", [False, True])
def test_a_retry_after_a_lost_answer_makes_no_second_request(
    resident_site, open_page, committed_db, edit
):
    base, code = resident_site
    page, watch = open_page(f"{base}/r?grid={code}", "phone")
    page.wait_for_function("() => window.Minqing && Minqing.pin")
    text_ = "回执丢了 " + secrets.token_hex(4)
    page.fill("#mq-text", text_)
    page.fill("#mq-phone", "13912345678")
    statuses = _lose_the_answer(page)
    page.click("#mq-submit")
    page.wait_for_function("() => document.getElementById('mq-error').textContent.length > 0")
    assert statuses == [201] and _requests_with_text(committed_db, text_) == 1
    key = _draft(page)["key"]
    # the resident closes the page and comes back: the draft and its key are still there
    page.reload()
    page.wait_for_function("() => window.Minqing && Minqing.pin")
    assert page.input_value("#mq-text") == text_ and page.input_value("#mq-phone") == "13912345678"
    assert _draft(page)["key"] == key
    if edit:  # and edits it before sending again: the stored first one comes back
        page.fill("#mq-text", text_ + "（补充）")
    with page.expect_navigation(url="**/t/**"):
        page.click("#mq-submit")
    page.wait_for_selector("#timeline li")
    assert page.locator("#request-text").inner_text() == text_
    assert _requests_with_text(committed_db, text_) == 1
    assert _requests_with_text(committed_db, text_ + "（补充）") == 0
    assert _draft(page) is None
    assert watch.foreign_requests == [] and watch.dialogs == []
