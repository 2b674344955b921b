"""Login and sessions (issue 16, item 3): safe ``next``, throttled and constant-time logins with
an audit log, CSRF on every cookie-authenticated write and on login, server-side sessions that
logout, sign out everywhere, a password change and timeouts end."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from layers.auth.login import Client, LoginPolicy, log_in
from layers.config import Settings
from layers.errors import RateLimited, Unauthorized
from tests.factories import csrf, form_login, form_logout, grid_points, token, user
from web.pages import safe_next

PASSWORD = "correct-horse-1"
COMMUNITY = "990000001001"  # community1's community in the demo district


@pytest.fixture
def settings(test_db_url: str) -> Settings:
    """The app of these tests: a short, countable throttle."""
    return Settings(
        database_url=test_db_url,
        secret_key="test-secret",
        login_free_failures=3,
        login_delay_base_s=30.0,
        login_delay_max_s=300.0,
        login_address_failures=8,
    )


def _whoami(client, **kw) -> int:
    return client.get("/api/v1/auth/whoami", **kw).status_code


def _throttle_rows(session) -> list:
    return session.execute(
        text("SELECT key, failures, next_allowed_at FROM login_throttle ORDER BY key")
    ).all()


# -- next --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/ /evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "/staff\\..\\x",
        "/\x00",
        "/\x7f",
        "/\u2215\u2215evil.example",  # division slashes
        "",
    ],
)
def test_next_refuses_everything_but_a_path_of_this_site(target: str) -> None:
    assert safe_next(target) is None


@pytest.mark.parametrize("target", ["/", "/staff", "/staff/dashboard?lang=en", "/t/ab-CD_12%2F"])
def test_next_keeps_a_path_of_this_site(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize("query", ["/%09/evil.example", "/%5Cevil.example", "//evil.example"])
def test_the_reported_open_redirect_lands_at_home(client, session, query: str) -> None:
    user(session, "nx1", "admin")
    resp = form_login(client, "nx1", next=query)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"


# -- login CSRF ----------------------------------------------------------------------------------
def test_login_needs_the_token_of_its_own_pre_session(client, app, session) -> None:
    user(session, "lc1", "admin")
    bare = client.post("/login", data={"username": "lc1", "password": PASSWORD})
    assert bare.status_code == 403 and "csrf_token" in bare.get_data(as_text=True)
    assert _whoami(client) == 401
    # a token from another browser's pre-session (the attacker's) is worth nothing here
    other = app.test_client()
    other.get("/login")
    theirs = other.get_cookie("mq_csrf").value
    client.get("/login")
    forged = client.post(
        "/login", data={"username": "lc1", "password": PASSWORD, "csrf_token": theirs}
    )
    assert forged.status_code == 403
    assert _whoami(client) == 401
    assert form_login(client, "lc1").status_code == 302
    assert _whoami(client) == 200


def test_login_rotates_the_session_and_its_token(client, session) -> None:
    user(session, "lc2", "admin")
    client.get("/login")
    before = client.get_cookie("mq_csrf").value
    assert form_login(client, "lc2").status_code == 302
    assert client.get_cookie("mq_csrf").value != before


# -- CSRF on cookie-authenticated writes --------------------------------------------------------
def test_cookie_writes_need_the_header_bearer_and_anonymous_ones_do_not(client, session) -> None:
    user(session, "cw1", "community_staff", area=COMMUNITY)
    _code, lon, lat = grid_points(session, COMMUNITY, 1)[0]
    body = {"lon": lon, "lat": lat, "category": "housing", "text": "楼道灯不亮"}
    # anonymous intake: no session, nothing ambient, no token needed
    assert client.post("/api/v1/requests", json=body).status_code == 201
    bearer = token(client, "cw1")
    assert form_login(client, "cw1").status_code == 302
    # signed in: the same intake, sent by the cookie, needs the session's token
    refused = client.post("/api/v1/requests", json=body)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    wrong = client.post("/api/v1/requests", json=body, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    made = client.post("/api/v1/requests", json=body, headers=csrf(client))
    assert made.status_code == 201
    rid = made.get_json()["id"]
    # a staff action through the cookie: refused without the header, done with it
    act = f"/api/v1/requests/{rid}/reply"
    assert client.post(act, json={"note": "已收到"}).status_code == 403
    assert client.post(act, json={"note": "已收到"}, headers=csrf(client)).status_code == 200
    # a bearer call carries no ambient credential: no token, even with the cookie present
    assert client.post(act, json={"note": "再次"}, headers=bearer).status_code == 200
    # logout is a write too: without the token the session goes on
    assert client.post("/logout").status_code == 403
    assert _whoami(client) == 200


# -- sessions: logout, sign out everywhere, password change, timeouts ---------------------------
def test_logout_ends_the_session_on_the_server(client, session) -> None:
    user(session, "so1", "admin")
    assert form_login(client, "so1").status_code == 302
    old_cookie = client.get_cookie("session").value
    assert _whoami(client) == 200
    assert form_logout(client).status_code == 302
    assert _whoami(client) == 401
    client.set_cookie("session", old_cookie)  # the copy an attacker kept
    assert _whoami(client) == 401
    revoked = session.execute(
        text(
            "SELECT count(*) FROM auth_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE u.username = 'so1' AND s.revoked_at IS NOT NULL"
        )
    ).scalar_one()
    assert revoked == 1


def test_sign_out_everywhere_ends_every_session_and_token(client, app, session) -> None:
    user(session, "so2", "admin")
    phone, laptop = app.test_client(), client
    assert form_login(phone, "so2").status_code == 302
    assert form_login(laptop, "so2").status_code == 302
    bearer = token(app.test_client(), "so2")
    laptop_cookie = laptop.get_cookie("session").value
    assert _whoami(phone) == _whoami(laptop) == _whoami(app.test_client(), headers=bearer) == 200
    assert laptop.post("/api/v1/auth/sessions/revoke").status_code == 403  # CSRF
    resp = laptop.post("/api/v1/auth/sessions/revoke", headers=csrf(laptop))
    assert resp.status_code == 200
    assert resp.get_json() == {"sessions_ended": 2, "tokens_revoked": True}
    assert _whoami(phone) == 401
    assert _whoami(laptop) == 401
    assert _whoami(app.test_client(), headers=bearer) == 401
    laptop.set_cookie("session", laptop_cookie)
    assert _whoami(laptop) == 401
    assert form_login(phone, "so2").status_code == 302  # and one logs in again as before


def test_sign_out_everywhere_with_a_bearer_token(client, session) -> None:
    user(session, "so3", "admin")
    bearer = token(client, "so3")
    other = token(client, "so3")
    resp = client.post("/api/v1/auth/sessions/revoke", headers=bearer)
    assert resp.status_code == 200
    assert _whoami(client, headers=other) == 401
    assert _whoami(client, headers=bearer) == 401


def test_the_account_page_signs_out_everywhere(client, app, session) -> None:
    user(session, "so4", "grid_leader", grid="990000001001001")
    other = app.test_client()
    assert form_login(other, "so4").status_code == 302
    assert form_login(client, "so4").status_code == 302
    page = client.get("/account")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "so4" in html and "退出所有设备" in html and html.count('class="current"') == 1
    assert html.count("</li>") == 2  # both devices listed
    resp = client.post(
        "/account/sessions/revoke", data={"csrf_token": csrf(client)["X-CSRF-Token"]}
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"
    assert _whoami(client) == 401 and _whoami(other) == 401


def test_password_change_needs_the_current_one_and_ends_the_other_sessions(
    client, app, session
) -> None:
    user(session, "pw1", "admin")
    other = app.test_client()
    assert form_login(other, "pw1").status_code == 302
    assert form_login(client, "pw1").status_code == 302
    bearer = token(app.test_client(), "pw1")
    form = {"csrf_token": csrf(client)["X-CSRF-Token"]}
    new = "battery-staple-2"
    wrong = client.post(
        "/account/password",
        data={
            **form,
            "current_password": "guess-1234",
            "new_password": new,
            "confirm_password": new,
        },
    )
    assert wrong.status_code == 403 and "当前密码不正确" in wrong.get_data(as_text=True)
    differ = client.post(
        "/account/password",
        data={
            **form,
            "current_password": PASSWORD,
            "new_password": new,
            "confirm_password": new + "x",
        },
    )
    assert differ.status_code == 400
    short = client.post(
        "/account/password",
        data={
            **form,
            "current_password": PASSWORD,
            "new_password": "short",
            "confirm_password": "short",
        },
    )
    assert short.status_code == 400
    assert _whoami(other) == 200
    no_token = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert no_token.status_code == 403
    done = client.post(
        "/account/password",
        data={**form, "current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert done.status_code == 302 and done.headers["Location"] == "/account?done=password"
    assert _whoami(client) == 200  # this session goes on
    assert _whoami(other) == 401
    assert _whoami(app.test_client(), headers=bearer) == 401
    fresh = app.test_client()
    assert form_login(fresh, "pw1").status_code == 401
    assert form_login(fresh, "pw1", new).status_code == 302


def test_idle_sessions_and_old_sessions_end(client, session) -> None:
    user(session, "to1", "admin")
    assert form_login(client, "to1").status_code == 302

    def move(column: str, by: str) -> None:
        session.execute(
            text(
                f"UPDATE auth_sessions SET {column} = {column} - CAST(:by AS interval)"
                " WHERE user_id = (SELECT id FROM users WHERE username = 'to1')"
            ),
            {"by": by},
        )

    move("last_seen_at", "5 minutes")
    assert _whoami(client) == 200  # used: seen now again
    seen = session.execute(
        text(
            "SELECT now() - last_seen_at FROM auth_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE u.username = 'to1'"
        )
    ).scalar_one()
    assert seen < timedelta(minutes=1)
    move("last_seen_at", "7 hours 50 minutes")
    assert _whoami(client) == 200  # within the 8 h
    move("last_seen_at", "8 hours 1 minute")
    assert _whoami(client) == 401  # idle too long
    assert form_login(client, "to1").status_code == 302
    move("expires_at", "25 hours")  # used all along, but past its absolute lifetime
    assert _whoami(client) == 401


def test_idle_and_absolute_lifetimes_are_settings() -> None:
    from layers.config import settings_from_env

    s = settings_from_env({"MINQING_SESSION_IDLE_S": "600", "MINQING_SESSION_MAX_AGE_S": "3600"})
    assert (s.session_idle_s, s.session_max_age_s) == (600, 3600)
    assert Settings().session_idle_s == 8 * 3600


# -- throttle ----------------------------------------------------------------------------------
def test_delay_grows_exponentially_and_is_capped() -> None:
    policy = LoginPolicy(free_failures=3, delay_base_s=1, delay_max_s=300)
    assert [policy.delay_after(n) for n in range(1, 9)] == [0, 0, 0, 1, 2, 4, 8, 16]
    assert policy.delay_after(50) == 300  # a delay, never a lock


def _statuses(client, name: str, n: int, password: str = "wrong-pass-9") -> list[int]:
    return [form_login(client, name, password).status_code for _ in range(n)]


def test_failures_delay_the_account_then_the_right_password_works(client, session) -> None:
    user(session, "th1", "admin")
    assert _statuses(client, "th1", 4) == [401, 401, 401, 401]
    # the fourth failure asks for 30 s: even the right password waits (429 with Retry-After)
    held = form_login(client, "th1")
    assert held.status_code == 429
    assert 1 <= int(held.headers["Retry-After"]) <= 30
    assert "登录失败次数过多" in held.get_data(as_text=True)
    api = client.post("/api/v1/auth/token", json={"username": "th1", "password": PASSWORD})
    assert api.status_code == 429 and api.get_json()["error"]["code"] == "login_throttled"
    assert 1 <= int(api.headers["Retry-After"]) <= 30
    # the delay passes: the right password works and forgets the failures
    session.execute(text("UPDATE login_throttle SET next_allowed_at = now() - interval '1 s'"))
    assert form_login(client, "th1").status_code == 302
    assert [r for r in _throttle_rows(session) if r.key.startswith("u:")] == []
    assert _whoami(client) == 200


def test_a_name_that_names_no_account_is_delayed_the_same(client, session) -> None:
    user(session, "th2", "admin")
    known = _statuses(client, "th2", 5)
    unknown = _statuses(client, "th2-nobody", 5)
    assert known == unknown == [401, 401, 401, 401, 429]


def test_the_delay_is_per_name_not_per_address(client, session) -> None:
    user(session, "th3", "admin")
    user(session, "th4", "admin")
    assert _statuses(client, "th3", 5)[-1] == 429
    assert form_login(client, "th4").status_code == 302  # another leader logs in as usual


def test_an_address_is_limited_across_names(client, session) -> None:
    user(session, "th5", "admin")
    names = [f"spray{i}" for i in range(8)]
    assert [form_login(client, n, "wrong-pass-9").status_code for n in names] == [401] * 8
    assert form_login(client, "th5").status_code == 429  # the address waits now
    elsewhere = client.application.test_client()
    resp = elsewhere.get("/login", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert resp.status_code == 200
    ok = elsewhere.post(
        "/login",
        data={"username": "th5", "password": PASSWORD, **_token_field(elsewhere)},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert ok.status_code == 302


def _token_field(client) -> dict[str, str]:
    return {"csrf_token": client.get_cookie("mq_csrf").value}


def test_parallel_guesses_are_counted_before_the_password_is_checked(committed_db) -> None:
    """280 wrong passwords at once got 280 checks; now the free ones and the one that starts
    the delay are checked, the others refused."""
    with committed_db.session() as s:
        user(s, "par1", "admin")
    policy = LoginPolicy(free_failures=3, delay_base_s=30, delay_max_s=300, address_failures=1000)
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess() -> None:
        with committed_db.session() as s:
            try:
                log_in(
                    session=s,
                    username="par1",
                    password="wrong-pass-9",
                    client=Client(address="10.1.1.1", user_agent="test"),
                    channel="token",
                    policy=policy,
                )
                result = "ok"
            except Unauthorized:
                result = "401"
            except RateLimited:
                result = "429"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=guess) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("401") == 4 and outcomes.count("429") == 12


# -- one timing ------------------------------------------------------------------------------
def test_unknown_names_fail_as_slowly_as_wrong_passwords(client, session, app) -> None:
    user(session, "ti1", "admin")
    app.config["MINQING"] = app.config["MINQING"].with_(
        login_free_failures=1000, login_address_failures=1000
    )

    def timed(name: str) -> float:
        start = time.perf_counter()
        resp = client.post("/api/v1/auth/token", json={"username": name, "password": "nope-nope"})
        elapsed = time.perf_counter() - start
        assert resp.status_code == 401
        return elapsed

    timed("ti1"), timed("nobody-0")  # warm up
    wrong = statistics.median(timed("ti1") for _ in range(5))
    unknown = statistics.median(timed(f"nobody-{i}") for i in range(1, 6))
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


# -- audit log ---------------------------------------------------------------------------------
def test_the_audit_log_keeps_who_when_where_and_how_never_a_password(client, session) -> None:
    user(session, "au1", "admin")
    start = datetime.now(UTC) - timedelta(seconds=5)
    form_login(client, "au1", "secret-guess-7")
    form_login(client, "au1-typo-secret-guess-8", "x")
    form_login(client, "au1")
    form_logout(client)
    rows = session.execute(
        text(
            "SELECT at, user_id, username, address, user_agent, channel, outcome"
            " FROM login_events WHERE at >= :t ORDER BY id"
        ),
        {"t": start},
    ).all()
    assert [(r.username, r.channel, r.outcome) for r in rows] == [
        ("au1", "form", "failure"),
        (None, "form", "failure"),  # a name that names no account is not kept
        ("au1", "form", "success"),
        ("au1", "form", "logout"),
    ]
    assert all(r.address == "127.0.0.1" and r.user_agent for r in rows)
    dump = " ".join(str(v) for r in rows for v in r)
    assert "secret-guess" not in dump and PASSWORD not in dump
    columns = session.execute(
        text("SELECT column_name FROM information_schema.columns WHERE table_name='login_events'")
    ).scalars()
    assert not any("pass" in c for c in columns)
