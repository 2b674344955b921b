"""Service card and resident pages served without a login."""

from __future__ import annotations

import json
import re

from sqlalchemy import text

from web.resident import RESIDENT_SERVICES


def _first_grid(session) -> str:
    return session.scalar(text("SELECT code FROM grids ORDER BY code LIMIT 1"))


def test_service_card_has_a_qr_to_the_resident_page_and_masks_the_leader(client, session):
    code = _first_grid(session)
    resp = client.get(f"/grids/{code}/card")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "<svg" in html and 'class="segno"' in html
    assert f"/r?grid={code}" in html
    assert "138****0000" in html  # the demo's leader1, masked
    assert "13800000000" not in html
    assert "民情服务卡" in html


def test_unknown_grid_gets_a_friendly_404_page(client):
    for url in ("/grids/990000999999999/card", "/r?grid=990000999999999"):
        resp = client.get(url, headers={"Accept": "text/html"})
        assert resp.status_code == 404
        assert resp.mimetype == "text/html"
        body = resp.get_data(as_text=True)
        assert "990000999999999" in body and "unknown_grid" in body


def test_resident_page_preselects_the_grid(client, session):
    code = _first_grid(session)
    html = client.get(f"/r?grid={code}").get_data(as_text=True)
    assert "Minqing.resident" in html and code in html
    assert "mq-request" in html


def test_ticket_page_shows_text_as_text(client, session):
    code = _first_grid(session)
    lon, lat = session.execute(
        text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grids "
            "WHERE code = :c"
        ),
        {"c": code},
    ).one()
    created = client.post(
        "/api/v1/requests",
        json={
            "lon": lon,
            "lat": lat,
            "category": "housing",
            "text": "<script>alert(1)</script> 楼道灯坏了",
        },
    )
    assert created.status_code == 201, created.get_json()
    ticket = created.get_json()["ticket"]
    page = client.get(f"/t/{ticket}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 楼道灯坏了" in page
    assert "<script>alert(1)</script>" not in page
    assert created.get_json()["number"] in page
    assert client.get("/t/not-a-ticket", headers={"Accept": "text/html"}).status_code == 404


def _service_chips(html: str) -> list[str]:
    services = re.search(r'"services": (\[.*?\])', html)
    assert services, "no services in the page's config"
    return [s["code"] for s in json.loads(services.group(1))]


def test_service_chips_are_those_with_venues_in_the_data(client, session):
    present = set(session.scalars(text("SELECT DISTINCT category FROM venues WHERE active")))
    chips = _service_chips(client.get("/r").get_data(as_text=True))
    assert chips and set(chips) <= present
    assert chips == [c for c in RESIDENT_SERVICES if c in present]  # the page's own order
    # a service whose venues all close is no longer offered first (or at all)
    session.execute(text("UPDATE venues SET active = false WHERE category = :c"), {"c": chips[0]})
    session.flush()
    assert _service_chips(client.get("/r").get_data(as_text=True)) == chips[1:]
