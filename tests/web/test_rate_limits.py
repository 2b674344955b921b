"""Rate limits shared by every worker and process (issue 16, item 4): counted in PostgreSQL,
keyed on the client address the trusted proxies saw, with Retry-After on every 429 and 503."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from layers.config import Settings
from layers.db import Database
from layers.embedded import free_port
from layers.errors import ServiceUnavailable
from layers.ratelimits.service import hit, parse_rule, purge_expired
from tests.pipeline.conftest import busiest_grid_point
from web.ratelimit import address_key

MINQING = Path(sys.executable).with_name("minqing")


def _post(client, *, remote: str = "127.0.0.1", xff: str | None = None):
    """An intake POST with an empty body: the limit counts before the body is read, so a
    400 is a hit that got through and a 429 one that did not."""
    headers = {"Accept-Language": "en"}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    return client.post(
        "/api/v1/requests", json={}, headers=headers, environ_base={"REMOTE_ADDR": remote}
    )


def _codes(responses) -> list[int]:
    return [r.status_code for r in responses]


def test_two_app_instances_share_one_count(committed_db) -> None:
    """Two apps with pools of their own (as two gunicorn workers or two servers are) over one
    database: at most the limit gets through in all. Before, each counted on its own and
    twice the limit got through."""
    from web import create_app

    with committed_db.session() as s:
        lon, lat = busiest_grid_point(s)
    databases = [Database.from_url(committed_db.url) for _ in range(2)]
    try:
        clients = []
        for database in databases:
            app = create_app(
                Settings(database_url=committed_db.url, secret_key="test-secret"),
                database=database,
            )
            app.config["MINQING_INTAKE_RATE_LIMIT"] = "4/60"
            clients.append(app.test_client())
        body = {"lon": lon, "lat": lat, "category": "housing", "text": "楼道灯坏了"}
        answers = [clients[i % 2].post("/api/v1/requests", json=body) for i in range(10)]
    finally:
        for database in databases:
            database.engine.dispose()
    assert Counter(_codes(answers)) == {201: 4, 429: 6}
    assert {r.status_code for r in answers[:4]} == {201}  # from both apps, in turn
    for refused in answers[4:]:
        assert refused.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_retry_after_is_the_rest_of_the_window(app, client) -> None:
    app.config["MINQING_INTAKE_RATE_LIMIT"] = "1/60"
    assert _post(client).status_code == 400
    refused = _post(client)
    assert refused.status_code == 429
    details = refused.get_json()["error"]["details"]
    assert 59 < details["retry_after_s"] <= 60
    assert refused.headers["Retry-After"] == "60"  # whole seconds, rounded up


def test_the_proxy_header_counts_only_with_a_trusted_proxy_count(app, client) -> None:
    app.config["MINQING_INTAKE_RATE_LIMIT"] = "2/60"
    # no trusted proxy (the default): X-Forwarded-For is the client's to write, so ignored
    assert app.config["MINQING_TRUSTED_PROXIES"] == 0
    assert _codes(_post(client, xff=f"203.0.113.{i}") for i in range(3)) == [400, 400, 429]
    # one trusted proxy: the entry it appended (the rightmost) is the client
    app.config["MINQING_TRUSTED_PROXIES"] = 1
    assert 429 not in _codes(_post(client, xff=f"203.0.113.{i}") for i in range(10, 16))
    # what the client wrote itself to the left of it changes nothing
    forged = [_post(client, xff=f"198.51.100.{i}, 203.0.113.50") for i in range(3)]
    assert _codes(forged) == [400, 400, 429]
    # two trusted proxies: the second entry from the right
    app.config["MINQING_TRUSTED_PROXIES"] = 2
    chained = [_post(client, xff=f"203.0.113.60, 10.1.1.{i}") for i in range(3)]
    assert _codes(chained) == [400, 400, 429]
    # a request that reached the app without the header counts under its peer's address
    assert _codes(_post(client, remote="192.0.2.1") for _ in range(3)) == [400, 400, 429]


def test_addresses_count_per_ipv4_address_and_per_ipv6_slash_64() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_key("unknown") == "unknown"


def test_a_window_ends_and_is_purged(session) -> None:
    assert hit(session=session, bucket="t", key="k", limit=1, window_s=0.4) == (True, 0.0)
    allowed, retry = hit(session=session, bucket="t", key="k", limit=1, window_s=0.4)
    assert not allowed and 0 < retry <= 0.4
    assert hit(session=session, bucket="t", key="other", limit=1, window_s=0.4).allowed
    assert hit(session=session, bucket="u", key="k", limit=1, window_s=0.4).allowed
    time.sleep(0.45)
    assert hit(session=session, bucket="t", key="k", limit=1, window_s=0.4).allowed
    assert purge_expired(session=session) == 2  # t/other and u/k; t/k is in a new window
    assert session.scalar(text("SELECT count(*) FROM rate_limits")) == 1


def test_the_counts_write_no_wal_and_update_in_place(session) -> None:
    persistence, options = session.execute(
        text("SELECT relpersistence, reloptions FROM pg_class WHERE relname = 'rate_limits'")
    ).one()
    assert persistence == "u" and options == ["fillfactor=50"]  # UNLOGGED, HOT updates


def test_a_rule_is_count_per_seconds() -> None:
    assert (parse_rule("30/60").limit, parse_rule("30/60").window_s) == (30, 60.0)
    assert parse_rule("5").window_s == 60.0
    for bad in ("0/60", "x/60", "5/0", "5/-1"):
        with pytest.raises(ValueError):
            parse_rule(bad)


def test_every_503_says_when_to_retry(app, client, monkeypatch) -> None:
    def down(self) -> None:
        raise ServiceUnavailable("db_unavailable")

    monkeypatch.setattr(Database, "ping", down)
    resp = client.get("/health")
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "db_unavailable"
    assert resp.headers["Retry-After"] == "5"
    monkeypatch.undo()

    def dropped(*_a, **_k):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr("web.core.current_generation", dropped)
    resp = client.get("/health")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"


@pytest.mark.slow
def test_gunicorn_workers_share_one_count_behind_a_proxy(committed_db) -> None:
    """``minqing serve --workers 2`` behind one trusted proxy: 12 submissions from one client
    address, four at a time (so both workers serve), get the limit's 3 through; another
    address still gets through."""
    import requests

    with committed_db.session() as s:
        lon, lat = busiest_grid_point(s)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": committed_db.url,
        "MINQING_SECRET_KEY": "test-secret",
        "MINQING_INTAKE_RATE_LIMIT": "3/60",
        "MINQING_TRUSTED_PROXIES": "1",
    }
    server = subprocess.Popen(
        [str(MINQING), "serve", "--port", str(port), "--workers", "2", "--escalate-every", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    body = {"lon": lon, "lat": lat, "category": "housing", "text": "楼道灯坏了"}
    answers: list[requests.Response] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client(n: int, address: str) -> None:
        for _ in range(n):
            try:
                resp = requests.post(
                    f"{base}/api/v1/requests",
                    json=body,
                    headers={"X-Forwarded-For": f"198.18.0.9, {address}", "Connection": "close"},
                    timeout=30,
                )
            except requests.RequestException as exc:
                with lock:
                    failures.append(exc)
                continue
            with lock:
                answers.append(resp)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/health", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or a worker still booting
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not come up")
            time.sleep(0.3)
        threads = [threading.Thread(target=client, args=(3, "198.51.100.7")) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        seen = [(r.status_code, r.text[:200]) for r in answers if r.status_code not in (201, 429)]
        assert not failures and Counter(_codes(answers)) == {201: 3, 429: 9}, (failures, seen)
        assert all(
            1 <= int(r.headers["Retry-After"]) <= 60 for r in answers if r.status_code == 429
        )
        answers.clear()
        client(1, "198.51.100.8")
        assert _codes(answers) == [201]
    finally:
        server.terminate()
        server.wait(timeout=30)
