"""Small, explicit test data: a district with one street, one community and two grids."""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from layers.areas.models import Area
from layers.auth.service import bind_role, create_user
from layers.buildings.models import Building
from layers.grids.models import Generation, Grid
from layers.requests.models import Request
from layers.venues.models import Venue
from layers.volunteers.models import Volunteer

# A 2 km x 1 km patch far from any real data (a test district at lon 100, lat 10).
X0, Y0 = 100.0, 10.0


def ewkt(geom) -> str:
    return f"SRID=4326;{geom.wkt}"


@dataclass
class Mini:
    district: Area
    street: Area
    community: Area
    west: Grid
    east: Grid


def mini_district(session: Session, *, district_code: str = "990099") -> Mini:
    """District ⊃ street ⊃ community, split into two grids (west, east) of generation N+1."""
    outline = box(X0, Y0, X0 + 0.02, Y0 + 0.01)
    district = Area(
        code=district_code, name="测试区", level="district", geom=ewkt(MultiPolygon([outline]))
    )
    session.add(district)
    session.flush()
    street = Area(
        code=district_code + "001",
        name="测试街道",
        level="street",
        parent_id=district.id,
        geom=ewkt(MultiPolygon([outline])),
    )
    session.add(street)
    session.flush()
    community = Area(
        code=district_code + "001001",
        name="测试社区",
        level="community",
        parent_id=street.id,
        geom=ewkt(MultiPolygon([outline])),
    )
    session.add(community)
    session.flush()
    gen_id = (session.scalar(select(func.max(Generation.id))) or 0) + 1
    session.add(Generation(id=gen_id, summary={"source": "test"}))
    session.flush()
    west = Grid(
        code=district_code + "001001001",
        name="西网格",
        community_id=community.id,
        households=320,
        generation_low=gen_id,
        geom=ewkt(MultiPolygon([box(X0, Y0, X0 + 0.01, Y0 + 0.01)])),
    )
    east = Grid(
        code=district_code + "001001002",
        name="东网格",
        community_id=community.id,
        households=410,
        generation_low=gen_id,
        geom=ewkt(MultiPolygon([box(X0 + 0.01, Y0, X0 + 0.02, Y0 + 0.01)])),
    )
    session.add_all([west, east])
    session.flush()
    return Mini(district, street, community, west, east)


def building(session: Session, code: str, x: float, y: float, **kw) -> Building:
    fp = box(x - 0.0002, y - 0.0001, x + 0.0002, y + 0.0001)
    b = Building(code=code, geom=ewkt(fp), rep_point=ewkt(Point(x, y)), **kw)
    session.add(b)
    session.flush()
    return b


def venue(session: Session, name: str, category: str, x: float, y: float) -> Venue:
    v = Venue(name=name, category=category, geom=ewkt(Point(x, y)))
    session.add(v)
    session.flush()
    return v


def volunteer(session: Session, name: str, phone: str, community: Area, x: float, y: float):
    v = Volunteer(
        name=name,
        phone=phone,
        community_id=community.id,
        skills=["elderly_care"],
        availability={},
        geom=ewkt(Point(x, y)),
    )
    session.add(v)
    session.flush()
    return v


def request_row(
    session: Session, number: str, grid: Grid, community: Area, x: float, y: float, **kw
) -> Request:
    r = Request(
        number=number,
        ticket_hash=number.ljust(64, "0"),
        category="elderly_care",
        text=kw.pop("text", "楼道灯坏了"),
        status=kw.pop("status", "assigned"),
        owner_level="grid",
        grid_id=grid.id,
        community_id=community.id,
        contact_name=kw.pop("contact_name", "王小明"),
        contact_phone=kw.pop("contact_phone", "13812345678"),
        geom=ewkt(Point(x, y)),
        **kw,
    )
    session.add(r)
    session.flush()
    return r


def user(
    session: Session,
    username: str,
    role: str | None = None,
    *,
    area: str | None = None,
    grid: str | None = None,
    password: str = "correct-horse-1",
) -> str:
    create_user(session=session, username=username, password=password, display_name=username)
    if role:
        bind_role(session=session, username=username, role=role, area_code=area, grid_code=grid)
    return username


def token(client, username: str, password: str = "correct-horse-1") -> dict[str, str]:
    resp = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.get_json()
    return {"Authorization": f"Bearer {resp.get_json()['token']}"}


def csrf(client) -> dict[str, str]:
    """The ``X-CSRF-Token`` header our pages' scripts send with a write (read, like theirs,
    from the ``mq_csrf`` cookie); empty without a session."""
    cookie = client.get_cookie("mq_csrf")
    return {"X-CSRF-Token": cookie.value} if cookie is not None else {}


def form_login(client, username: str, password: str = "correct-horse-1", *, next: str = ""):
    """Log in through the login form as a browser does: show it (its token is tied to a
    pre-session cookie), then post it with the token; the POST's response."""
    url = "/login" + (f"?next={next}" if next else "")
    client.get(url)
    return client.post(
        url,
        data={"username": username, "password": password, **_form_token(client)},
    )


def form_logout(client):
    return client.post("/logout", data=_form_token(client))


def _form_token(client) -> dict[str, str]:
    cookie = client.get_cookie("mq_csrf")
    return {"csrf_token": cookie.value} if cookie is not None else {}


def grid_points(session: Session, community: str, n: int | None = None) -> list[tuple]:
    """(code, lon, lat) of a point inside each grid of ``community``, by code (the first n)."""
    rows = session.execute(
        text(
            "SELECT g.code, ST_X(ST_PointOnSurface(g.geom)), ST_Y(ST_PointOnSurface(g.geom))"
            " FROM grids g JOIN areas c ON c.id = g.community_id WHERE c.code = :c"
            " ORDER BY g.code LIMIT :n"
        ),
        {"c": community, "n": n},
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def submit_housing(client, headers, lon: float, lat: float, body_text: str = "楼道灯不亮") -> dict:
    """Submit a housing request at (lon, lat) through the API; the created request's body."""
    resp = client.post(
        "/api/v1/requests",
        json={"lon": lon, "lat": lat, "category": "housing", "text": body_text},
        headers=headers,
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def forge_status(session: Session, sql: str, params: dict | None = None) -> None:
    """Test setup only: run an UPDATE that puts requests into a state no action leads to (a
    shortcut past the pipeline), with the database's transition guard off for this one
    statement; the change is rolled back with the test's transaction like any other. The
    tests connect as the app's role, which may not ALTER the table: the guard is switched by
    a function of the owner's that only test templates have (tests/db_support.py)."""
    session.execute(text("SELECT minqing_test_status_guard(false)"))
    session.execute(text(sql), params or {})
    session.execute(text("SELECT minqing_test_status_guard(true)"))
