"""Bad input: each a 4xx with a stable code, and nothing half-written."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.pipeline.conftest import CENTRE

GOOD = {"lon": CENTRE[0], "lat": CENTRE[1], "category": "elderly_care", "text": "需要帮助"}


def _state(session) -> tuple[int, ...]:
    return tuple(
        session.scalar(text(f"SELECT count(*) FROM {t}"))
        for t in (
            "requests",
            "request_events",
            "request_offers",
            "notifications",
            "idempotency_keys",
        )
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({k: v for k, v in GOOD.items() if k != "category"}, 400, "missing_field"),
        ({k: v for k, v in GOOD.items() if k != "text"}, 400, "missing_field"),
        ({k: v for k, v in GOOD.items() if k not in ("lon", "lat")}, 400, "missing_field"),
        ({**GOOD, "text": "   "}, 400, "missing_field"),
        ({**GOOD, "lon": "100.005"}, 400, "invalid_coordinates"),
        ({**GOOD, "lon": True}, 400, "invalid_coordinates"),
        ({**GOOD, "lon": 200.0}, 422, "coordinates_out_of_range"),
        ({**GOOD, "lat": -91.0}, 422, "coordinates_out_of_range"),
        ({**GOOD, "lon": CENTRE[1], "lat": CENTRE[0]}, 422, "swapped_coordinates"),
        ({**GOOD, "category": "parking"}, 422, "unknown_category"),
        ({**GOOD, "crs": "utm"}, 400, "unknown_crs"),
        ({**GOOD, "text": "长" * 2001}, 400, "text_too_long"),
        ({**GOOD, "contact": "王小明"}, 400, "invalid_field"),
        ({**GOOD, "contact": {"phone": "call me"}}, 400, "invalid_field"),
    ],
)
def test_bad_bodies(client, session, world, body, status, code) -> None:
    before = _state(session)
    key = {"Idempotency-Key": "b" * 32}  # 128 bits as written: the body decides
    resp = client.post("/api/v1/requests", json=body, headers=key)
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"]["code"] == code
    assert _state(session) == before


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_coordinates(client, session, world, raw) -> None:
    before = _state(session)
    data = f'{{"lon": {raw}, "lat": 10.005, "category": "elderly_care", "text": "x"}}'
    resp = client.post("/api/v1/requests", data=data, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_coordinates"
    assert _state(session) == before


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", "", '"text"'])
def test_malformed_json(client, session, world, data) -> None:
    before = _state(session)
    resp = client.post("/api/v1/requests", data=data, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_json"
    assert _state(session) == before


def test_ten_megabyte_body_is_413(client, session, world) -> None:
    before = _state(session)
    resp = client.post(
        "/api/v1/requests", data=b"{" + b" " * 10_000_000 + b"}", content_type="application/json"
    )
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"
    assert _state(session) == before


def test_text_of_exactly_2000_chars_is_accepted(client, world) -> None:
    resp = client.post("/api/v1/requests", json={**GOOD, "text": "长" * 2000})
    assert resp.status_code == 201


def test_html_is_stored_as_text_and_returned_verbatim(client, session, world) -> None:
    evil = '<script>alert("x")</script><b>灯</b>'
    body = client.post("/api/v1/requests", json={**GOOD, "text": evil}).get_json()
    assert (
        session.scalar(text("SELECT text FROM requests WHERE id = :i"), {"i": body["id"]}) == evil
    )
    view = client.get(f"/api/v1/tickets/{body['ticket']}")
    assert view.mimetype == "application/json" and view.get_json()["text"] == evil


def test_unknown_ticket_is_404(client, world) -> None:
    real = client.post("/api/v1/requests", json=GOOD).get_json()["ticket"]
    rid, _, secret = real.partition("-")
    forged = f"{rid}-{'0' * 32}"  # the right request id, a guessed secret
    other = f"{int(rid) + 999_999}-{secret}"  # the right secret on a request that is not it
    for ticket in ("0" * 32, "short", "x" * 300, forged, other, f"-{secret}", f"{rid}-{secret}x"):
        resp = client.get(f"/api/v1/tickets/{ticket}")
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_ticket"
    for action, body in (("rate", {"rating": 5}), ("withdraw", {})):
        resp = client.post(f"/api/v1/tickets/{forged}/{action}", json=body)
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_ticket"
    assert client.get(f"/api/v1/tickets/{real}").status_code == 200


def test_bad_rating_and_bad_list_filters(client, world) -> None:
    ticket = client.post("/api/v1/requests", json=GOOD).get_json()["ticket"]
    for rating in (0, 6, "5", 4.5, True, None):
        resp = client.post(f"/api/v1/tickets/{ticket}/rate", json={"rating": rating})
        assert resp.status_code == 400, rating
        assert resp.get_json()["error"]["code"] in ("invalid_rating", "missing_field")
