"""Pipeline fixtures: the mini district (two grids, a gap community), volunteers, accounts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import text

from layers.areas.models import Area
from layers.auth.service import bind_role, create_user
from layers.volunteers.models import Volunteer
from tests.factories import X0, Y0, Mini, ewkt, mini_district

PASSWORD = "correct-horse-1"


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch):
    """Accounts are made by the dozen here: hash with one PBKDF2 round (tests only)."""
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        "layers.auth.service.generate_password_hash",
        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1"),
    )


@dataclass
class World:
    mini: Mini
    gap: Area  # a community with no grid (requests there go to triage)
    volunteers: dict[str, Volunteer]
    users: dict[str, str]  # role name -> username


def add_volunteer(
    session,
    community: Area,
    name: str,
    x: float,
    y: float,
    *,
    username: str | None = None,
    skills: tuple[str, ...] = ("elderly_care",),
    availability: dict | None = None,
    load_limit: int = 3,
    active_load: int = 0,
) -> Volunteer:
    user_id = None
    if username is not None:
        user_id = create_user(
            session=session, username=username, password=PASSWORD, display_name=name
        ).id
        bind_role(session=session, username=username, role="volunteer", area_code=community.code)
    v = Volunteer(
        user_id=user_id,
        name=name,
        phone="13900001111",
        community_id=community.id,
        skills=list(skills),
        availability=availability or {},
        load_limit=load_limit,
        active_load=active_load,
        geom=ewkt(Point(x, y)),
    )
    session.add(v)
    session.flush()
    return v


def build_world(session, *, prefix: str = "pl") -> World:
    mini = mini_district(session)
    gap = Area(
        code=mini.street.code + "002",
        name="空白社区",
        level="community",
        parent_id=mini.street.id,
        geom=ewkt(MultiPolygon([box(X0 + 0.02, Y0, X0 + 0.03, Y0 + 0.01)])),
    )
    session.add(gap)
    session.flush()
    session.execute(
        text("UPDATE grids SET leader_user_id = NULL WHERE id IN (:w, :e)"),
        {"w": mini.west.id, "e": mini.east.id},
    )
    users: dict[str, str] = {}

    def account(role: str, bind: str | None, **scope) -> str:
        username = f"{prefix}_{role}"
        create_user(session=session, username=username, password=PASSWORD, display_name=role)
        if bind:
            bind_role(session=session, username=username, role=bind, **scope)
        users[role] = username
        return username

    account("admin", "admin")
    account("planner", "planner")
    account("street_staff", "street_staff", area_code=mini.street.code)
    account("community_staff", "community_staff", area_code=mini.community.code)
    account("grid_leader", "grid_leader", grid_code=mini.west.code)
    account("grid_member", "grid_member", grid_code=mini.west.code)
    account("other_leader", "grid_leader", grid_code=mini.east.code)
    account("plain", None)
    # volunteers around the west grid's centre (100.005, 10.005); ~110 m per 0.001 degree
    vols = {
        "near": add_volunteer(
            session, mini.community, "张近邻", X0 + 0.0052, Y0 + 0.005, username=f"{prefix}_vol"
        ),
        "mid": add_volunteer(
            session, mini.community, "李中间", X0 + 0.0060, Y0 + 0.005, username=f"{prefix}_vol2"
        ),
        "far": add_volunteer(session, mini.community, "王远方", X0 + 0.0090, Y0 + 0.005),
    }
    users["volunteer"] = f"{prefix}_vol"
    users["volunteer2"] = f"{prefix}_vol2"
    return World(mini=mini, gap=gap, volunteers=vols, users=users)


@pytest.fixture
def world(session) -> World:
    return build_world(session)


CENTRE = (X0 + 0.005, Y0 + 0.005)


def submit(client, *, lon=CENTRE[0], lat=CENTRE[1], headers=None, **extra):
    body = {"lon": lon, "lat": lat, "category": "elderly_care", "text": "楼道灯坏了", **extra}
    return client.post("/api/v1/requests", json=body, headers=headers or {})


def busiest_grid_point(session) -> tuple[float, float]:
    """(lon, lat) of a point inside the demo's grid with the most households."""
    lon, lat = session.execute(
        text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grids"
            " ORDER BY households DESC LIMIT 1"
        )
    ).one()
    return lon, lat


def request_events(session, request_id: int) -> list[tuple]:
    """(action, from_status, to_status, owner_level) of a request's events, oldest first."""
    return [
        tuple(r)
        for r in session.execute(
            text(
                "SELECT action, from_status, to_status, owner_level FROM request_events"
                " WHERE request_id = :i ORDER BY id"
            ),
            {"i": request_id},
        )
    ]


def stored_offers(session, request_id: int) -> list:
    """The offer rows stored for a request (volunteer_id, rank, distance_m, distance_method)."""
    return session.execute(
        text(
            "SELECT volunteer_id, rank, distance_m, distance_method FROM request_offers"
            " WHERE request_id = :i ORDER BY rank"
        ),
        {"i": request_id},
    ).all()
