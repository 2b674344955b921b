"""Staff pages (/staff, /staff/dashboard) and their exports: policies, CSV = metrics API."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from layers.requests.export import csv_cell, to_csv
from tests.factories import form_login, form_logout, grid_points, submit_housing, token, user

DEMO_PASSWORD = "minqing-demo"
COMMUNITY = "990000001001"  # community1's community in the demo district
OTHER_COMMUNITY = "990000002001"


def _login(client, username: str, password: str = DEMO_PASSWORD) -> None:
    resp = form_login(client, username, password)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]


def _config(html: str, init: str) -> dict:
    match = re.search(re.escape(init) + r"\(\w+, (\{.*?\})\);", html, re.S)
    assert match, f"{init} is not called on the page"
    return json.loads(match.group(1))


def test_anonymous_callers_go_to_the_login_page_and_exports_answer_401(client):
    resp = client.get("/staff")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/login?next=/staff")
    resp = client.get("/staff/dashboard?lang=en")
    assert resp.status_code == 302
    assert "next=/staff/dashboard?lang%3Den" in resp.headers["Location"]
    for url in ("/staff/metrics.csv", "/staff/heat.json"):
        resp = client.get(url, headers={"Accept": "application/json"})
        assert resp.status_code == 401, url
        assert resp.get_json()["error"]["code"] == "unauthorized"


def test_the_login_form_brings_staff_back_to_the_page_they_asked_for(client):
    resp = form_login(client, "community1", DEMO_PASSWORD, next="/staff/dashboard")
    assert resp.status_code == 302 and resp.headers["Location"] == "/staff/dashboard"
    assert client.get("/staff/dashboard").status_code == 200


@pytest.mark.parametrize("username", ["leader1", "member1", "vol1"])
def test_grid_roles_and_volunteers_are_forbidden(client, session, username):
    if username == "vol1":
        user(session, "vol1", "volunteer", area=COMMUNITY, password=DEMO_PASSWORD)
    _login(client, username)
    for url in ("/staff", "/staff/dashboard", "/staff/metrics.csv", "/staff/heat.json"):
        resp = client.get(url, headers={"Accept": "text/html"})
        assert resp.status_code == 403, (username, url)


def test_inbox_page_is_scoped_to_the_community(client, session):
    _login(client, "community1")
    resp = client.get("/staff")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    html = resp.get_data(as_text=True)
    assert "<title>分派与上报</title>" in html and 'lang="zh-CN"' in html
    config = _config(html, "Minqing.staffInbox")
    assert config["levels"] == ["community"] and config["canAct"] is True
    communities = {g["community_code"] for g in config["grids"]}
    assert communities == {COMMUNITY}
    live = session.scalar(
        text(
            "SELECT count(*) FROM grids g JOIN areas c ON c.id = g.community_id WHERE c.code = :c"
        ),
        {"c": COMMUNITY},
    )
    assert len(config["grids"]) == live
    assert set(config["open"]) == {"submitted", "triage", "assigned", "claimed", "in_progress"}
    assert "{id}" in config["urls"]["detail"] and "{action}" in config["urls"]["action"]
    for asset in (
        "/vendor/leaflet/dist/leaflet.js",
        "/static/js/staff.js",
        "/static/css/staff.css",
    ):
        assert asset in html
    en = client.get("/staff?lang=en").get_data(as_text=True)
    assert "<title>Triage &amp; escalations</title>" in en


def test_planner_sees_everything_read_only_and_street_staff_own_the_street_level(client):
    _login(client, "planner")
    config = _config(client.get("/staff").get_data(as_text=True), "Minqing.staffInbox")
    assert config["canAct"] is False
    assert len({g["community_code"] for g in config["grids"]}) == 4
    form_logout(client)
    _login(client, "street1")
    config = _config(client.get("/staff").get_data(as_text=True), "Minqing.staffInbox")
    assert config["levels"] == ["street"] and config["canAct"] is True
    assert {g["community_code"][:9] for g in config["grids"]} == {"990000001"}


def test_dashboard_offers_heat_choropleth_and_coverage_when_available(client, app):
    _login(client, "community1")
    html = client.get("/staff/dashboard").get_data(as_text=True)
    assert "/vendor/leaflet.heat/dist/leaflet-heat.js" in html
    config = _config(html, "Minqing.staffDashboard")
    assert config["areas"] == [COMMUNITY]
    west, south, east, north = config["bbox"]
    assert west < east and south < north
    has_coverage = any(e.startswith("circles_api.coverage") for e in app.view_functions)
    assert (config["urls"]["coverage"] is not None) == has_coverage
    assert ('value="coverage" disabled' in html) == (not has_coverage)


def _csv_rows(resp) -> list[list[str]]:
    raw = resp.get_data()
    assert raw.startswith("\ufeff".encode()), "UTF-8 BOM for Excel"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def test_metrics_csv_equals_the_metrics_api(client, session):
    admin = token(client, "admin", DEMO_PASSWORD)
    leader = token(client, "leader1", DEMO_PASSWORD)
    now = datetime.now(UTC)
    period = {
        "from": (now - timedelta(days=7)).isoformat(),
        "to": (now + timedelta(minutes=5)).isoformat(),
    }
    before = client.get(
        "/api/v1/metrics", query_string={"level": "community", **period}, headers=admin
    ).get_json()["rows"]
    received_before = {r["code"]: r["received"] for r in before}.get(COMMUNITY, 0)
    points = grid_points(session, COMMUNITY, 3) + grid_points(session, OTHER_COMMUNITY, 1)
    made = [submit_housing(client, admin, lon, lat) for _code, lon, lat in points for _ in range(2)]
    # some history so the figures differ: an escalation, a rejection, one old request
    first_grid_request = made[0]["id"]
    assert (
        client.post(
            f"/api/v1/requests/{first_grid_request}/escalate",
            json={"reason": "需社区协调"},
            headers=leader,
        )
    ).status_code == 200
    reject = client.post(
        f"/api/v1/requests/{made[2]['id']}/reject", json={"reason": "不属实"}, headers=admin
    )
    assert reject.status_code == 200
    session.execute(
        text("UPDATE requests SET created_at = created_at - interval '40 days' WHERE id = :i"),
        {"i": made[4]["id"]},
    )
    _login(client, "community1")
    for level in ("grid", "community"):
        api = client.get("/api/v1/metrics", query_string={"level": level, **period})
        assert api.status_code == 200
        rows = api.get_json()["rows"]
        assert rows and all(r["code"].startswith(COMMUNITY) for r in rows)
        resp = client.get("/staff/metrics.csv", query_string={"level": level, **period})
        assert resp.status_code == 200 and resp.mimetype == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        table = _csv_rows(resp)
        header, body = table[0], table[1:]
        assert header[:2] == ["编码", "名称"] and "按期结案率" in header
        assert "曾超期数" in header and "网格层级按期率" in header
        keys = [
            "code", "name", "received", "closed", "closure_rate", "resolved_on_time",
            "on_time_rate", "mean_rating", "rated", "open_backlog", "overdue", "was_overdue",
            "grid_on_time_rate", "community_on_time_rate", "street_on_time_rate",
            "district_on_time_rate",
        ]  # fmt: skip
        assert len(header) == len(keys)
        expected = [["" if r[k] is None else str(r[k]) for k in keys] for r in rows]
        assert body == expected
    received = {r[0]: int(r[2]) for r in body}
    # community level: 6 in the community, minus the rejected one, minus the one 40 days old
    assert received == {COMMUNITY: received_before + 4}


def test_csv_cells_that_look_like_formulas_are_quoted(client, session):
    admin = token(client, "admin", DEMO_PASSWORD)
    code, lon, lat = grid_points(session, COMMUNITY, 1)[0]
    session.execute(
        text("UPDATE grids SET name = :n WHERE code = :c"),
        {"n": '=HYPERLINK("http://evil.example","点我")', "c": code},
    )
    submit_housing(client, admin, lon, lat)
    _login(client, "community1")
    table = _csv_rows(client.get("/staff/metrics.csv?level=grid&lang=en"))
    assert table[0][:2] == ["Code", "Name"]
    row = next(r for r in table if r[0] == code)
    assert row[1] == '\'=HYPERLINK("http://evil.example","点我")'
    assert not any(c.startswith(("=", "+", "@")) for r in table for c in r)
    # the guard itself: text quoted, numbers (negative ones too) left as numbers
    for dangerous in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(dangerous) == "'" + dangerous
    assert csv_cell(-3) == -3 and csv_cell(0.25) == 0.25 and csv_cell(None) == ""
    assert csv_cell("普通文字") == "普通文字"
    raw = to_csv(header=["a"], rows=[["=cmd|' /C calc'!A0"], [-1]]).decode("utf-8-sig")
    assert raw.splitlines() == ["a", "'=cmd|' /C calc'!A0", "-1"]


def test_heat_points_follow_the_period_and_the_scope(client, session):
    admin = token(client, "admin", DEMO_PASSWORD)
    points = grid_points(session, COMMUNITY, 2) + grid_points(session, OTHER_COMMUNITY, 1)
    made = [submit_housing(client, admin, lon, lat) for _code, lon, lat in points]
    session.execute(
        text("UPDATE requests SET created_at = now() - interval '20 days' WHERE id = :i"),
        {"i": made[0]["id"]},
    )
    _login(client, "community1")
    now = datetime.now(UTC)

    def count(days: int) -> int:
        resp = client.get(
            "/staff/heat.json",
            query_string={
                "from": (now - timedelta(days=days)).isoformat(),
                "to": (now + timedelta(minutes=5)).isoformat(),
            },
        )
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["count"] == len(body["points"])
        return body["count"]

    base_recent, base_month = count(1), count(30)
    assert base_month - base_recent >= 1  # the request moved 20 days back
    lon, lat = points[1][1], points[1][2]
    recent = client.get("/staff/heat.json?from=" + (now - timedelta(days=1)).date().isoformat())
    assert [round(lat, 6), round(lon, 6)] in recent.get_json()["points"]
    # another community's request is not in community1's scope
    other = points[2]
    assert [round(other[2], 6), round(other[1], 6)] not in recent.get_json()["points"]
    bad = client.get("/staff/heat.json?from=yesterday", headers={"Accept": "application/json"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_time"
