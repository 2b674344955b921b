"""Helpers for the drafts tests: the demo's planner, a community's grids, UTM lines."""

from __future__ import annotations

import pytest
import shapely
from shapely import wkb
from sqlalchemy import text

from geo.validation import UtmProjector
from tests.factories import token

DEMO_PASSWORD = "minqing-demo"
COMMUNITY = "990000002001"  # 公园社区: 5 grids


@pytest.fixture
def planner(client):
    return token(client, "planner", DEMO_PASSWORD)


def live_grids(session, community_code: str = COMMUNITY):
    rows = session.execute(
        text(
            "SELECT g.id, g.code, ST_AsBinary(g.geom) AS g FROM grids g JOIN areas c"
            " ON c.id = g.community_id WHERE c.code = :c AND g.generation_high IS NULL"
            " ORDER BY g.code"
        ),
        {"c": community_code},
    ).all()
    return {r.code: (r.id, wkb.loads(bytes(r.g))) for r in rows}


def community_geom(session, code: str = COMMUNITY):
    raw = session.scalar(text("SELECT ST_AsBinary(geom) FROM areas WHERE code = :c"), {"c": code})
    return wkb.loads(bytes(raw))


def split_line_through(geom_lonlat, proj: UtmProjector):
    """A north-south lon/lat line through the middle of a grid's largest part, 10 m beyond."""
    part = max(proj.to_utm(geom_lonlat).geoms, key=lambda p: p.area)
    c = part.representative_point()
    _, y0, _, y1 = part.bounds
    line = shapely.LineString([(c.x, y0 - 10), (c.x, y1 + 10)])
    return proj.to_lonlat(line)
