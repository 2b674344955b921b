"""A live app server in a thread and a headless Debian Chromium driven by Playwright.

Every request to a host other than the app is aborted and recorded; tests assert none happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from layers.config import PROJECT_ROOT, Settings
from layers.db import Database

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
# a 1x1 transparent PNG, standing in for basemap tiles a test must not fetch
BLANK_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
DEMO_PASSWORD = "minqing-demo"  # every account of the demo district
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# Beijing railway station: published WGS84 and GCJ-02 positions (see tests/geo/test_crs.py)
STATION_WGS84 = (116.42079, 39.90105)
STATION_GCJ02 = (116.42703, 39.90245)


@dataclass
class LiveServer:
    url: str
    server: object
    thread: threading.Thread


@pytest.fixture
def live_server() -> Iterator[Callable[[Database], str]]:
    """Start the app on a free loopback port over ``database``; returns its base URL."""
    from web import create_app

    started: list[LiveServer] = []

    def start(database: Database, **settings_kw: object) -> str:
        settings = Settings(database_url="postgresql://unused", secret_key="browser", **settings_kw)
        app = create_app(settings, database=database)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        live = LiveServer(f"http://127.0.0.1:{server.server_port}", server, thread)
        started.append(live)
        return live.url

    yield start
    for live in started:
        live.server.shutdown()


@dataclass
class PageWatch:
    """What a page did that a test must check: console errors, foreign requests, dialogs."""

    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    stubbed: list[str] = field(default_factory=list)  # basemap tiles answered locally


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: ./run.sh installs Debian's chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """Open ``url`` at a viewport with a route guard; returns (page, watch)."""
    contexts = []

    def open_(url: str, viewport: str = "desktop", stub_hosts: tuple[str, ...] = ()):
        ctx = browser.new_context(viewport=VIEWPORTS[viewport], locale="zh-CN")
        contexts.append(ctx)
        page = ctx.new_page()
        watch = PageWatch()
        origin = url.split("/", 3)[:3]
        app_origin = "/".join(origin)

        def guard(route):
            req_url = route.request.url
            host = req_url.split("/")[2] if "://" in req_url else ""
            if req_url.startswith(app_origin) or req_url.startswith("data:"):
                route.continue_()
            elif any(host.endswith(h) for h in stub_hosts):
                watch.stubbed.append(req_url)
                route.fulfill(status=200, content_type="image/png", body=BLANK_PNG)
            else:
                watch.foreign_requests.append(req_url)
                route.abort()

        page.route("**/*", guard)
        page.on(
            "console",
            lambda msg: watch.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: watch.console_errors.append(str(exc)))

        def on_dialog(dialog):
            watch.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url)
        return page, watch

    yield open_
    for ctx in contexts:
        ctx.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def wait_layers_idle(page, timeout_ms: int = 15000) -> None:
    page.wait_for_function(
        "() => window.Minqing && Minqing.state.pending === 0 && "
        "Object.values(Minqing.state.layers).every(l => l.loaded)",
        timeout=timeout_ms,
    )


def log_in(page, username: str, *, then: str | None = None) -> None:
    """Submit the login form ``page`` shows as a demo account and wait for the page it leads
    to (the one matching ``then``, a URL or glob, when given)."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    with page.expect_navigation(url=then):
        page.click("button[type=submit]")


def leader_grid_point(db: Database, username: str = "leader1") -> tuple[float, float]:
    """(lon, lat) of a point inside the live grid ``username`` leads (for a request there)."""
    from sqlalchemy import text

    with db.session() as s:
        lon, lat = s.execute(
            text(
                "SELECT ST_X(ST_PointOnSurface(g.geom)), ST_Y(ST_PointOnSurface(g.geom))"
                " FROM role_bindings b JOIN users u ON u.id = b.user_id"
                " JOIN grids g ON g.code = b.grid_code AND g.generation_high IS NULL"
                " WHERE u.username = :u"
            ),
            {"u": username},
        ).one()
    return lon, lat
