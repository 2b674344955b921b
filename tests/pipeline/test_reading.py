"""Reading requests: filters of GET /api/v1/requests."""

from __future__ import annotations


def test_list_filters_by_owner_level(client, session) -> None:
    from tests.factories import token, user

    user(session, "admin_ol", "admin")
    headers = token(client, "admin_ol")
    body = client.get(
        "/api/v1/requests?owner_level=community,street&limit=1000", headers=headers
    ).get_json()
    levels = {r["owner_level"] for r in body["requests"]}
    assert levels and levels <= {"community", "street"}
    bad = client.get("/api/v1/requests?owner_level=planet", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_field"
