"""A publish through one app worker is seen by the next intake through another (DESIGN §5)."""

from __future__ import annotations

from shapely.geometry import mapping, shape
from sqlalchemy import text

from geo.validation import UtmProjector
from layers.config import Settings
from layers.db import Database
from layers.requests.schemas import IntakeInput
from layers.requests.service import submit_request
from tests.drafts.conftest import DEMO_PASSWORD, community_geom, live_grids, split_line_through
from tests.factories import token
from web import create_app

TARGET, NEW = "990000002001005", "990000002001006"


def _app(url: str) -> tuple:
    database = Database.from_url(url)
    app = create_app(Settings(database_url=url, secret_key="two-workers"), database=database)
    app.config["TESTING"] = True
    return app, database


def _grid_codes(client) -> set[str]:
    body = client.get("/api/v1/layers/grids?limit=1000").get_json()
    return {f["properties"]["code"] for f in body["features"]}


def test_publish_on_one_worker_is_used_by_the_next_intake_on_the_other(committed_db):
    url = committed_db.url
    app_a, db_a = _app(url)
    app_b, db_b = _app(url)
    try:
        a, b = app_a.test_client(), app_b.test_client()
        assert NEW not in _grid_codes(b)  # worker B has served the old grids
        with db_a.session() as s:
            proj = UtmProjector(community_geom(s))
            line = split_line_through(live_grids(s)[TARGET][1], proj)
        planner = token(a, "planner", DEMO_PASSWORD)
        doc = a.post(
            "/api/v1/drafts", json={"community_code": "990000002001"}, headers=planner
        ).get_json()
        draft_id = doc["draft"]["id"]
        edited = a.post(
            f"/api/v1/drafts/{draft_id}/edits",
            json={"op": "split", "grid": TARGET, "line": mapping(line)},
            headers=planner,
        ).get_json()
        point = shape(
            next(f for f in edited["grids"]["features"] if f["properties"]["code"] == NEW)[
                "geometry"
            ]
        ).representative_point()
        with db_b.session() as s:  # before the publish worker B places the point in TARGET
            before = submit_request(
                session=s,
                intake=IntakeInput(
                    category="elderly_care", text="路灯不亮", lon=point.x, lat=point.y
                ),
            )
        assert before.status_code == 201, before.body
        resp = a.post(f"/api/v1/drafts/{draft_id}/publish", headers=planner)
        assert resp.status_code == 201, resp.get_json()
        assert NEW in _grid_codes(b)
        with db_b.session() as s:
            after = submit_request(
                session=s,
                intake=IntakeInput(
                    category="elderly_care", text="楼道灯坏了", lon=point.x, lat=point.y
                ),
            )
        assert after.status_code == 201, after.body
        with db_b.session() as s:
            codes = dict(
                s.execute(
                    text(
                        "SELECT r.id, g.code FROM requests r JOIN grids g ON g.id = r.grid_id"
                        " WHERE r.id = ANY(:ids)"
                    ),
                    {"ids": [before.request_id, after.request_id]},
                ).all()
            )
        assert codes[after.request_id] == NEW  # the new grids, at once, through the other worker
        assert codes[before.request_id] == NEW  # re-homed by the publish (it was open)
    finally:
        db_a.engine.dispose()
        db_b.engine.dispose()
