"""layers.grids.repo: which grid rows are live, which grid holds a point, what a subtree is."""

from __future__ import annotations

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import text

from layers.areas.models import Area
from layers.grids import repo
from layers.grids.models import Generation, Grid
from tests.factories import X0, Y0, ewkt, mini_district


def _new_generation(session) -> int:
    gen = repo.current_generation(session) + 1
    session.add(Generation(id=gen, summary={"source": "test"}))
    session.flush()
    return gen


def _live_ids(session, ids: list[int], generation: str = repo.CURRENT_GENERATION_SQL, **params):
    return set(
        session.scalars(
            text(
                "SELECT g.id FROM grids g"
                f" WHERE g.id = ANY(:ids) AND {repo.live_sql('g', generation)}"
            ),
            {"ids": ids, **params},
        )
    )


def _grid_at(session, lon: float, lat: float, **params) -> str | None:
    return session.scalar(
        text(repo.grid_at_point_sql("ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)", "g.code")),
        {"lon": lon, "lat": lat, **params},
    )


def test_current_generation_is_the_newest(session):
    before = repo.current_generation(session)
    assert _new_generation(session) == before + 1
    assert repo.current_generation(session) == before + 1


def test_retired_grid_is_not_live(session):
    mini = mini_district(session)
    ids = [mini.west.id, mini.east.id]
    assert _live_ids(session, ids) == set(ids)
    retired_at = _new_generation(session)
    mini.west.generation_high = retired_at
    session.flush()
    assert _live_ids(session, ids) == {mini.east.id}
    # still live at the generation before it was retired
    assert _live_ids(session, ids, ":n", n=retired_at - 1) == set(ids)
    assert _live_ids(session, ids, ":n", n=retired_at) == {mini.east.id}


def test_grid_of_a_future_generation_is_not_live(session):
    mini = mini_district(session)
    base = repo.current_generation(session)
    future = _new_generation(session)
    later = Grid(
        code=mini.west.code[:-3] + "003",
        name="新网格",
        community_id=mini.community.id,
        generation_low=future,
        geom=ewkt(MultiPolygon([box(X0, Y0, X0 + 0.005, Y0 + 0.005)])),
    )
    session.add(later)
    session.flush()
    ids = [mini.west.id, later.id]
    assert _live_ids(session, ids, ":n", n=base) == {mini.west.id}
    assert _live_ids(session, ids, ":n", n=future) == set(ids)
    assert _live_ids(session, ids) == set(ids)  # the future is now


def test_live_sql_without_alias_matches_the_aliased_form(session):
    mini = mini_district(session)
    mini.west.generation_high = _new_generation(session)
    session.flush()
    ids = [mini.west.id, mini.east.id]
    unqualified = set(
        session.scalars(
            text(f"SELECT id FROM grids WHERE id = ANY(:ids) AND {repo.live_sql('')}"),
            {"ids": ids},
        )
    )
    assert unqualified == _live_ids(session, ids) == {mini.east.id}


def test_live_now_is_the_rows_never_closed(session):
    """generation_high references generations, so no row is closed after the newest one:
    "live now" and "generation_high IS NULL" pick the same rows (what the benches relied on)."""
    mini_district(session)
    live = set(session.scalars(text(f"SELECT g.id FROM grids g WHERE {repo.LIVE_GRIDS}")))
    open_rows = set(session.scalars(text("SELECT id FROM grids WHERE generation_high IS NULL")))
    assert live == open_rows
    assert live


def test_grid_at_point_takes_the_lowest_code_on_a_shared_border(session):
    mini = mini_district(session)
    assert mini.west.code < mini.east.code
    border_lon, mid_lat = X0 + 0.01, Y0 + 0.005
    assert _grid_at(session, border_lon, mid_lat) == mini.west.code
    assert _grid_at(session, X0 + 0.015, mid_lat) == mini.east.code
    assert _grid_at(session, X0 + 0.005, mid_lat) == mini.west.code
    assert _grid_at(session, X0 - 0.005, mid_lat) is None


def test_grid_at_point_skips_a_retired_grid(session):
    mini = mini_district(session)
    retired_at = _new_generation(session)
    mini.west.generation_high = retired_at
    session.flush()
    border_lon, mid_lat = X0 + 0.01, Y0 + 0.005
    assert _grid_at(session, border_lon, mid_lat) == mini.east.code
    assert _grid_at(session, X0 + 0.005, mid_lat) is None
    at_before = session.scalar(
        text(
            repo.grid_at_point_sql(
                "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)", "g.code", generation=":n"
            )
        ),
        {"lon": X0 + 0.005, "lat": mid_lat, "n": retired_at - 1},
    )
    assert at_before == mini.west.code


def test_live_grid_by_code(session):
    mini = mini_district(session)
    assert repo.live_grid_by_code(session, mini.west.code).id == mini.west.id
    assert repo.live_grid_by_code(session, "990099999999999") is None
    retired_at = _new_generation(session)
    mini.west.generation_high = retired_at
    session.flush()
    assert repo.live_grid_by_code(session, mini.west.code) is None
    assert repo.live_grid_by_code(session, mini.east.code).id == mini.east.id
    # redrawn under the same code: the new row is the live one
    redrawn = Grid(
        code=mini.west.code,
        name="西网格（新）",
        community_id=mini.community.id,
        generation_low=retired_at,
        geom=mini.west.geom,
    )
    session.add(redrawn)
    session.flush()
    assert repo.live_grid_by_code(session, mini.west.code).id == redrawn.id


def _area(session, code: str, level: str, parent: Area, geom) -> Area:
    area = Area(
        code=code, name=code, level=level, parent_id=parent.id, geom=ewkt(MultiPolygon([geom]))
    )
    session.add(area)
    session.flush()
    return area


def test_subtree_includes_descendants_and_excludes_a_sibling(session):
    mini = mini_district(session)
    outline = box(X0, Y0, X0 + 0.02, Y0 + 0.01)
    sibling_street = _area(session, mini.district.code + "002", "street", mini.district, outline)
    sibling_community = _area(
        session, sibling_street.code + "001", "community", sibling_street, outline
    )
    mine = [mini.district.id, mini.street.id, mini.community.id]
    theirs = [sibling_street.id, sibling_community.id]

    def subtree(roots: list[int]) -> set[int]:
        return set(
            session.scalars(
                text(
                    "SELECT a.id FROM areas a WHERE a.id = ANY(:all)"
                    f" AND {repo.subtree_sql('a.id', 'roots')}"
                ),
                {"all": mine + theirs, "roots": roots},
            )
        )

    assert subtree([mini.street.id]) == {mini.street.id, mini.community.id}
    assert subtree([mini.community.id]) == {mini.community.id}
    assert subtree([mini.district.id]) == set(mine + theirs)
    assert subtree([sibling_street.id, mini.community.id]) == {
        sibling_street.id,
        sibling_community.id,
        mini.community.id,
    }
    assert subtree([]) == set()
    # the default parameter name is the one layer scopes bind
    in_scope = session.scalars(
        text(f"SELECT g.code FROM grids g WHERE {repo.subtree_sql('g.community_id')}"),
        {"scope_areas": [mini.street.id]},
    ).all()
    assert sorted(in_scope) == [mini.west.code, mini.east.code]


def test_area_at_point(session):
    mini = mini_district(session)
    point = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
    inside = {"lon": X0 + 0.005, "lat": Y0 + 0.005}
    assert session.scalar(text(repo.area_at_point_sql(point)), inside) == mini.community.id
    assert (
        session.scalar(text(repo.area_at_point_sql(point, "a.code", level="street")), inside)
        == mini.street.code
    )
    found = repo.community_at_point(session, **inside)
    assert (found.id, found.code, found.name) == (
        mini.community.id,
        mini.community.code,
        mini.community.name,
    )
    assert repo.community_at_point(session, X0 - 0.005, Y0 + 0.005) is None
    with pytest.raises(ValueError):
        repo.area_at_point_sql(point, level="grid")
