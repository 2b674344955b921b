"""Every route has a policy; errors share one envelope; auth tokens behave."""

from __future__ import annotations

from layers.auth.permissions import PERMISSIONS
from tests.db_support import scalar_on_own_connection
from tests.factories import form_login, form_logout, token, user


def test_every_url_rule_names_an_action_of_the_permission_table(app) -> None:
    missing = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        action = getattr(view, "minqing_policy", None)
        if action not in PERMISSIONS:
            missing.append(f"{rule.rule} -> {rule.endpoint} ({action!r})")
    assert not missing, "routes without a policy: " + ", ".join(missing)


def test_the_walk_would_catch_a_route_without_policy(app) -> None:
    app.add_url_rule("/planted", "planted", lambda: "x")
    unprotected = [
        r.rule
        for r in app.url_map.iter_rules()
        if not hasattr(app.view_functions[r.endpoint], "minqing_policy")
    ]
    assert unprotected == ["/planted"]


def test_unknown_url_and_method_use_the_envelope(client) -> None:
    resp = client.get("/api/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
    resp = client.delete("/api/v1/layers/grids")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"


def test_body_over_the_limit_is_413(client, app) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    resp = client.post(
        "/api/v1/auth/token", data=b"x" * (limit + 10), content_type="application/json"
    )
    assert resp.status_code == 413
    body = resp.get_json()
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["limit_bytes"] == limit


def test_malformed_json_is_400(client) -> None:
    resp = client.post("/api/v1/auth/token", data="{not json", content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_json"


def test_html_pages_get_an_html_error(client) -> None:
    resp = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert "not_found" in resp.get_data(as_text=True)


def test_token_login_whoami_and_revocation(client, session) -> None:
    user(session, "planner1", "planner")
    bad = client.post("/api/v1/auth/token", json={"username": "planner1", "password": "nope"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_credentials"
    headers = token(client, "planner1")
    me = client.get("/api/v1/auth/whoami", headers=headers).get_json()
    assert me["username"] == "planner1"
    assert [r["role"] for r in me["roles"]] == ["planner"]
    assert client.get("/api/v1/auth/whoami").status_code == 401
    forged = {"Authorization": headers["Authorization"][:-3] + "abc"}
    assert client.get("/api/v1/auth/whoami", headers=forged).status_code == 401
    from layers.auth.service import reset_password, set_active

    reset_password(session=session, username="planner1", password="another-pass-2")
    assert client.get("/api/v1/auth/whoami", headers=headers).status_code == 401
    headers = token(client, "planner1", "another-pass-2")
    set_active(session=session, username="planner1", active=False)
    assert client.get("/api/v1/auth/whoami", headers=headers).status_code == 401


def test_session_login_page(client, session) -> None:
    user(session, "leader9", "admin")
    page = client.get("/login")
    assert page.status_code == 200 and "用户名" in page.get_data(as_text=True)
    failed = form_login(client, "leader9", "wrong-one")
    assert failed.status_code == 401
    ok = form_login(client, "leader9", next="/api/v1/auth/whoami")
    assert ok.status_code == 302 and ok.headers["Location"] == "/api/v1/auth/whoami"
    assert client.get("/api/v1/auth/whoami").get_json()["username"] == "leader9"
    form_logout(client)
    assert client.get("/api/v1/auth/whoami").status_code == 401


def test_open_redirect_is_refused(client, session) -> None:
    user(session, "u2", "admin")
    ok = form_login(client, "u2", next="//evil.example/x")
    assert ok.headers["Location"] == "/"


def test_health_reports_generation(client) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.get_json()["database"] == "ok"
    assert isinstance(resp.get_json()["generation"], int)


def test_vendor_assets_only_from_declared_npm_packages(client) -> None:
    ok = client.get("/vendor/leaflet/dist/leaflet.js")
    assert ok.status_code == 200 and b"Leaflet" in ok.data[:2000]
    assert client.get("/vendor/lodash/lodash.js").status_code == 404  # transitive, not declared
    assert client.get("/vendor/leaflet/../../pyproject.toml").status_code == 404


def test_data_downloads_answer_errors_as_json(client) -> None:
    resp = client.get("/staff/heat.json", headers={"Accept": "text/html"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_favicon_is_served(client) -> None:
    resp = client.get("/favicon.ico")
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"


def test_a_dropped_database_connection_costs_one_request_at_most(
    committed_db, committed_client
) -> None:
    """The pool handles disconnects optimistically (no ping per checkout, which cost a round
    trip on every request): a request that meets a connection the server dropped answers 503
    ``db_unavailable``, the pool is refreshed, and the next request works."""
    client = committed_client
    assert client.get("/health").status_code == 200  # a pooled connection now
    killed = scalar_on_own_connection(  # from a connection that is not one of the pool's
        committed_db.url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert killed >= 1
    statuses = [client.get("/health").status_code for _ in range(3)]
    assert statuses in ([200, 200, 200], [503, 200, 200])
