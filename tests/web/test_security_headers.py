"""Security headers (issue 16, item 2): a nonce CSP with strict-dynamic on every page, the
nonce on every <script>, a closed CSP on the API, nosniff, no framing, Referrer-Policy (none
from ticket URLs), Permissions-Policy, HSTS and Secure cookies over HTTPS only, no-store on
personal data and tickets while static files keep their caching."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import text

from tests.factories import grid_points, submit_housing, token

DEMO_PASSWORD = "minqing-demo"
COMMUNITY = "990000001001"  # community1's community in the demo district

# every page and who may open it (None: anyone)
PAGES = [
    ("/", None),
    ("/r", None),
    ("/r?grid={grid}", None),
    ("/t/{ticket}", None),
    ("/grids/{grid}/card", None),
    ("/login", None),
    ("/leader", "leader1"),
    ("/v", "vol0001"),
    ("/staff", "community1"),
    ("/staff/dashboard", "community1"),
    ("/planner", "planner"),
]


class _Scripts(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append(dict(attrs))


def _directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def _nonce(policy: str) -> str:
    nonces = [v for v in _directives(policy)["script-src"] if v.startswith("'nonce-")]
    assert len(nonces) == 1, policy
    return nonces[0][len("'nonce-") : -1]


def _post_login(client, username: str, password: str = DEMO_PASSWORD, **kw):
    """The login form as a browser sends it: shown first, posted with its hidden fields."""
    form = client.get("/login", **kw).get_data(as_text=True)
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    return client.post("/login", data={**hidden, "username": username, "password": password}, **kw)


def _login(client, username: str) -> None:
    resp = _post_login(client, username)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]


@pytest.fixture
def ticket(client, session) -> str:
    _code, lon, lat = grid_points(session, COMMUNITY, 1)[0]
    return submit_housing(client, {}, lon, lat)["ticket"]


@pytest.fixture
def grid(session) -> str:
    return session.scalar(text("SELECT code FROM grids WHERE generation_high IS NULL LIMIT 1"))


def _get_page(client, path: str, username: str | None):
    if username:
        _login(client, username)
    resp = client.get(path, headers={"Accept": "text/html"})
    assert resp.status_code == 200, (path, resp.status_code, resp.headers.get("Location"))
    assert resp.mimetype == "text/html"
    return resp


@pytest.mark.parametrize(("path", "username"), PAGES)
def test_every_page_has_a_nonce_policy_and_the_nonce_on_every_script(
    client, ticket, grid, path, username
):
    path = path.format(ticket=ticket, grid=grid)
    first = _get_page(client, path, username)
    second = client.get(path, headers={"Accept": "text/html"})
    policies = [r.headers["Content-Security-Policy"] for r in (first, second)]
    nonces = [_nonce(p) for p in policies]
    assert nonces[0] != nonces[1], "the nonce must differ per response"
    assert all(len(n) >= 22 for n in nonces)  # ≥ 128 bits, base64url
    for resp, policy, nonce in zip((first, second), policies, nonces, strict=True):
        d = _directives(policy)
        assert "'strict-dynamic'" in d["script-src"]
        assert "'unsafe-inline'" not in d["script-src"]
        assert "'unsafe-eval'" not in d["script-src"]
        assert d["default-src"] == ["'none'"]
        assert d["object-src"] == ["'none'"]
        assert d["base-uri"] == ["'none'"]
        assert d["frame-ancestors"] == ["'none'"]
        assert d["connect-src"] == ["'self'"]
        assert d["style-src"] == ["'self'", "'unsafe-inline'"]  # the stated style policy
        assert d["img-src"] == ["'self'", "data:", "blob:"]  # basemap none: offline
        html = resp.get_data(as_text=True)
        scripts = _Scripts(html).scripts
        assert [s.get("nonce") for s in scripts] == [nonce] * len(scripts), path
        assert html.count(nonce) == len(scripts)  # the nonce is nowhere else in the page
        assert " on" not in " ".join(f" {a}" for s in scripts for a in s)  # no inline handlers
    if path.startswith(("/t/", "/grids/")):
        assert scripts, "the ticket and card pages load their script with the nonce"
    elif path != "/login":
        # folium's inline scripts (map, layers, init) and our script tags, all with the nonce
        assert any("src" not in s for s in scripts) and any("src" in s for s in scripts)


def test_no_page_markup_has_inline_event_handlers(client, ticket, grid):
    for path, username in PAGES:
        html = _get_page(client, path.format(ticket=ticket, grid=grid), username).get_data(
            as_text=True
        )
        assert "onclick=" not in html and "javascript:" not in html, path


def test_basemap_tile_hosts_are_the_only_foreign_images(settings, db):
    from web import create_app

    expected = {
        "osm": ["https://tile.openstreetmap.org"],
        "amap": [f"https://webrd0{s}.is.autonavi.com" for s in "1234"],
        "tianditu": ["https://t0.tianditu.gov.cn"],
    }
    for basemap, hosts in expected.items():
        app = create_app(settings.with_(basemap=basemap), database=db)
        resp = app.test_client().get("/")
        img_src = _directives(resp.headers["Content-Security-Policy"])["img-src"]
        assert img_src == ["'self'", "data:", "blob:", *hosts], basemap


def test_every_response_has_the_common_headers(client, ticket):
    for path in ("/", "/health", "/api/v1/categories", f"/api/v1/tickets/{ticket}", "/nope"):
        resp = client.get(path)
        h = resp.headers
        assert h["X-Content-Type-Options"] == "nosniff", path
        assert h["X-Frame-Options"] == "DENY", path
        permissions = [p.strip() for p in h["Permissions-Policy"].split(",")]
        assert "geolocation=(self)" in permissions
        assert all(p.endswith("=()") for p in permissions if p != "geolocation=(self)")
        assert {"camera=()", "microphone=()", "payment=()", "usb=()"} <= set(permissions)
        assert "Strict-Transport-Security" not in h, "HSTS only over HTTPS"


def test_api_and_other_non_page_responses_get_a_closed_policy(client, ticket):
    for path in (
        "/api/v1/categories",
        "/api/v1/layers",
        f"/api/v1/tickets/{ticket}",
        "/health",
        "/static/js/layers.js",
        "/api/v1/requests",  # 401 JSON
    ):
        resp = client.get(path)
        assert resp.mimetype != "text/html", path
        policy = resp.headers["Content-Security-Policy"]
        assert _directives(policy) == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}


def test_ticket_urls_send_no_referrer_and_others_only_the_origin(client, ticket):
    for path in (f"/t/{ticket}", f"/api/v1/tickets/{ticket}"):
        assert client.get(path).headers["Referrer-Policy"] == "no-referrer", path
    for path in ("/", "/r", "/login", "/api/v1/categories"):
        assert client.get(path).headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_personal_data_tickets_and_logins_are_never_stored(client, session, ticket):
    _code, lon, lat = grid_points(session, COMMUNITY, 1)[0]
    auth = token(client, "community1", DEMO_PASSWORD)
    created = submit_housing(client, auth, lon, lat)
    anonymous = [
        ("GET", f"/t/{ticket}", None),
        ("GET", f"/api/v1/tickets/{ticket}", None),
        ("POST", f"/api/v1/tickets/{ticket}/withdraw", {}),
        ("GET", "/login", None),
        ("POST", "/api/v1/auth/token", {"username": "community1", "password": DEMO_PASSWORD}),
        ("POST", "/api/v1/auth/token", {"username": "community1", "password": "wrong"}),
        ("GET", "/", None),  # public, but its nonce must not be replayed from a cache
    ]
    for method, path, body in anonymous:
        resp = client.open(path, method=method, json=body)
        assert resp.headers["Cache-Control"] == "no-store", (method, path, resp.status_code)
    resp = _post_login(client, "community1", "wrong")
    assert resp.status_code == 401 and resp.headers["Cache-Control"] == "no-store"
    resp = _post_login(client, "community1")
    assert resp.status_code == 302 and resp.headers["Cache-Control"] == "no-store"
    signed_in = [
        "/api/v1/requests",
        f"/api/v1/requests/{created['id']}",
        "/api/v1/auth/whoami",
        "/api/v1/metrics",
        "/staff",
        "/staff/metrics.csv",
        "/staff/heat.json",
        "/api/v1/layers/volunteers",
    ]
    for path in signed_in:
        resp = client.get(path, headers=auth)
        assert resp.status_code == 200, (path, resp.status_code)
        assert resp.headers["Cache-Control"] == "no-store", path
    _login(client, "vol0001")
    resp = client.get("/api/v1/me/volunteer")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"


def test_public_static_files_and_tiles_keep_their_caching(client):
    for path in ("/static/js/layers.js", "/vendor/leaflet/dist/leaflet.js", "/favicon.ico"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert "max-age=" in resp.headers["Cache-Control"], path
        assert "no-store" not in resp.headers["Cache-Control"], path
        resp.close()
    resp = client.get("/tiles/buildings/16/37300/18950.mvt")
    assert resp.headers["Cache-Control"] == "public, max-age=60"


def test_session_cookie_is_httponly_lax_and_secure_only_over_https(app):
    resp = _post_login(app.test_client(), "community1")
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("session="))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite"} <= attrs and "secure" not in attrs
    assert "SameSite=Lax" in cookie
    assert "Strict-Transport-Security" not in resp.headers

    tls = app.test_client()
    resp = _post_login(tls, "community1", base_url="https://minqing.example")
    assert resp.status_code == 302
    cookies = resp.headers.getlist("Set-Cookie")
    assert cookies and all("; Secure" in c for c in cookies), cookies
    session_cookie = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    page = tls.get("/", base_url="https://minqing.example")
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    lang = next(c for c in page.headers.getlist("Set-Cookie") if c.startswith("lang="))
    assert lang.count("Secure") == 1


def test_a_forwarded_proto_counts_only_from_a_trusted_proxy(app, client):
    # no trusted proxy (MINQING_TRUSTED_PROXIES=0, the default): the client wrote the header
    resp = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in resp.headers
    assert all("Secure" not in c for c in resp.headers.getlist("Set-Cookie"))
    # behind one trusted TLS-terminating proxy (werkzeug's ProxyFix, web/ratelimit.py)
    app.config["MINQING_TRUSTED_PROXIES"] = 1
    resp = client.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"})
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookies = resp.headers.getlist("Set-Cookie")
    assert cookies and all(c.endswith("; Secure") for c in cookies)
    resp = client.get("/", headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "1.2.3.4"})
    assert "Strict-Transport-Security" not in resp.headers


def test_the_nonce_goes_on_script_tags_only_never_into_script_text():
    from web.csp import nonce_scripts

    html = (
        '<html><head><script src="/a.js"></script>\n<SCRIPT>var x = 1;</SCRIPT>'
        '<script nonce="kept">1</script></head><body><p title="&lt;script">&lt;script&gt;\u2028</p>'
        '<script>\nf({"name": "<script>\u2028alert(1)<\\/script>", "n": "\\n"});\n</script>'
        "</body></html>"
    )
    out = nonce_scripts(html, "N")
    assert out == (
        '<html><head><script nonce="N" src="/a.js"></script>\n<SCRIPT nonce="N">var x = 1;'
        '</SCRIPT><script nonce="kept">1</script></head><body><p title="&lt;script">'
        '&lt;script&gt;\u2028</p><script nonce="N">\nf({"name": "<script>\u2028alert(1)<\\/script>",'
        ' "n": "\\n"});\n</script></body></html>'
    )
