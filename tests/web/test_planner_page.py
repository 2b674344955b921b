"""The planner page (/planner) and GET /api/v1/generations/<n>/grids: policies, page config,
assets, and the grids of a past generation after a publish."""

from __future__ import annotations

import json
import re

import pytest
from shapely.geometry import mapping, shape

from geo.validation import UtmProjector
from tests.drafts.conftest import community_geom, live_grids, split_line_through
from tests.factories import form_login, token

DEMO_PASSWORD = "minqing-demo"
COMMUNITY = "990000002001"  # 公园社区: 5 grids


def _login(client, username: str) -> None:
    resp = form_login(client, username, DEMO_PASSWORD)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]


def _config(html: str) -> dict:
    match = re.search(r"Minqing\.planner\(\w+, (\{.*?\})\);", html, re.S)
    assert match, "Minqing.planner is not called on the page"
    return json.loads(match.group(1))


def test_anonymous_callers_go_to_the_login_page(client):
    resp = client.get("/planner")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/login?next=/planner")
    resp = form_login(client, "planner", DEMO_PASSWORD, next="/planner")
    assert resp.status_code == 302 and resp.headers["Location"] == "/planner"
    assert client.get("/planner").status_code == 200


@pytest.mark.parametrize("username", ["leader1", "community1"])
def test_other_roles_are_forbidden(client, username):
    _login(client, username)
    assert client.get("/planner").status_code == 403
    headers = token(client, username, DEMO_PASSWORD)
    resp = client.get(f"/api/v1/generations/1/grids?community={COMMUNITY}", headers=headers)
    assert resp.status_code == 403


def test_the_page_for_a_planner_in_chinese_and_english(client):
    _login(client, "planner")
    resp = client.get(f"/planner?community={COMMUNITY}")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    html = resp.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html and "网格规划" in html
    assert "/vendor/@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.js" in html
    assert "/vendor/@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.css" in html
    assert "js/planner.js" in html and "css/planner.css" in html
    assert "https://" not in re.sub(r'"https://[^"]*tile[^"]*"', "", html.split("<body")[0])
    config = _config(html)
    assert config["community"] == COMMUNITY and config["lang"] == "zh-CN"
    codes = [c["code"] for c in config["communities"]]
    assert COMMUNITY in codes and codes == sorted(codes)
    park = next(c for c in config["communities"] if c["code"] == COMMUNITY)
    assert park["grids"] == 5 and park["name"] == "公园社区"
    assert config["urls"]["edits"] == "/api/v1/drafts/{id}/edits"
    assert config["urls"]["generation_grids"] == "/api/v1/generations/{id}/grids"
    assert config["urls"]["restore"] == "/api/v1/generations/{id}/restore"
    assert f'<option value="{COMMUNITY}" selected>' in html
    for key in ("planner_publish", "planner_validation", "planner_impact", "planner_history"):
        assert config["labels"][key]
    en = client.get("/planner?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in en and "Grid planning" in en
    assert any(c["name"] == "Park" for c in _config(en)["communities"])
    for asset in (
        "/vendor/@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.js",
        "/static/js/planner.js",
        "/static/css/planner.css",
    ):
        assert client.get(asset).status_code == 200, asset


def test_grids_of_a_past_generation_after_a_publish(client, session):
    planner = token(client, "planner", DEMO_PASSWORD)
    url = f"/api/v1/generations/1/grids?community={COMMUNITY}"
    assert client.get(url).status_code == 401
    before = client.get(url, headers=planner).get_json()
    live = live_grids(session)
    assert before["type"] == "FeatureCollection" and before["generation"] == 1
    assert sorted(f["properties"]["code"] for f in before["features"]) == sorted(live)
    for f in before["features"]:
        assert shape(f["geometry"]).equals(live[f["properties"]["code"]][1])

    doc = client.post("/api/v1/drafts", json={"community_code": COMMUNITY}, headers=planner)
    draft_id = doc.get_json()["draft"]["id"]
    target = "990000002001005"
    line = split_line_through(live[target][1], UtmProjector(community_geom(session)))
    resp = client.post(
        f"/api/v1/drafts/{draft_id}/edits",
        json={"op": "split", "grid": target, "line": mapping(line)},
        headers=planner,
    )
    assert resp.status_code == 200, resp.get_json()
    published = client.post(f"/api/v1/drafts/{draft_id}/publish", headers=planner)
    assert published.status_code == 201, published.get_json()
    gen = published.get_json()["generation"]
    after = client.get(
        f"/api/v1/generations/{gen}/grids?community={COMMUNITY}", headers=planner
    ).get_json()
    assert len(after["features"]) == len(before["features"]) + 1
    assert all(f["properties"]["generation_low"] == gen for f in after["features"])
    again = client.get(url, headers=planner).get_json()  # the old generation is unchanged
    assert [f["properties"]["code"] for f in again["features"]] == [
        f["properties"]["code"] for f in before["features"]
    ]
    assert all(f["properties"]["generation_high"] == gen for f in again["features"])


def test_bad_generation_requests_are_explained(client):
    planner = token(client, "planner", DEMO_PASSWORD)
    resp = client.get(f"/api/v1/generations/999/grids?community={COMMUNITY}", headers=planner)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_generation"
    resp = client.get("/api/v1/generations/1/grids", headers=planner)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "missing_field"
    resp = client.get("/api/v1/generations/1/grids?community=990000009009", headers=planner)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_area"
