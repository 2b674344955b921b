"""Volunteer self-registration and weekly availability (Asia/Shanghai)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from layers.errors import BadRequest
from layers.volunteers.service import available_at, validate_availability
from tests.factories import X0, Y0, token


def test_registration_finds_the_community_and_binds_the_role(client, session, world) -> None:
    headers = token(client, world.users["plain"])
    body = {
        "name": "赵志愿",
        "phone": "13700000000",
        "lon": X0 + 0.025,
        "lat": Y0 + 0.005,
        "skills": ["housing", "elderly_care"],
        "availability": {"sat": ["09:00-17:00"]},
        "load_limit": 2,
    }
    resp = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["community"]["code"] == world.gap.code
    assert out["skills"] == ["elderly_care", "housing"] and out["load_limit"] == 2
    role = session.execute(
        text(
            "SELECT role_code, area_id FROM role_bindings b JOIN users u ON u.id = b.user_id"
            " WHERE u.username = :u"
        ),
        {"u": world.users["plain"]},
    ).all()
    assert [tuple(r) for r in role] == [("volunteer", world.gap.id)]
    again = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "volunteer_exists"
    assert client.post("/api/v1/volunteers", json=body).status_code == 401


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"lon": X0 + 3}, "outside_jurisdiction"),
        ({"skills": ["flying"]}, "unknown_category"),
        ({"skills": []}, "missing_field"),
        ({"availability": {"mon": ["9-17"]}}, "invalid_availability"),
        ({"availability": {"holiday": []}}, "invalid_availability"),
        ({"load_limit": 0}, "invalid_field"),
        ({"lat": float("nan")}, "invalid_coordinates"),
    ],
)
def test_registration_bad_input(client, session, world, change, code) -> None:
    headers = token(client, world.users["plain"])
    body = {"name": "赵", "lon": X0 + 0.005, "lat": Y0 + 0.005, "skills": ["housing"], **change}
    n = session.scalar(text("SELECT count(*) FROM volunteers"))
    resp = client.post("/api/v1/volunteers", json=body, headers=headers)
    assert 400 <= resp.status_code < 500 and resp.get_json()["error"]["code"] == code
    assert session.scalar(text("SELECT count(*) FROM volunteers")) == n


def test_availability_is_read_in_the_configured_zone() -> None:
    sched = validate_availability({"mon": ["08:00-12:00"], "fri": ["22:00-02:00"]})
    # Monday 09:00 in Shanghai is Monday 01:00 UTC
    assert available_at(sched, datetime(2026, 1, 5, 1, 0, tzinfo=UTC), "Asia/Shanghai")
    assert not available_at(sched, datetime(2026, 1, 5, 1, 0, tzinfo=UTC), "UTC")
    # past midnight: Saturday 01:30 local belongs to Friday's 22:00-02:00 window
    assert available_at(sched, datetime(2026, 1, 9, 17, 30, tzinfo=UTC), "Asia/Shanghai")
    assert not available_at(sched, datetime(2026, 1, 9, 18, 30, tzinfo=UTC), "Asia/Shanghai")
    assert available_at({}, datetime(2026, 1, 9, 18, 30, tzinfo=UTC), "Asia/Shanghai")
    with pytest.raises(BadRequest):
        validate_availability({"mon": ["12:00-12:00"]})
