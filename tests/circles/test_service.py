"""Service circles, coverage and walking distances on the demo district (real Helsinki network)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from layers.circles import graph_cache
from layers.circles.service import build_circles, walking_distances_m
from layers.coverage.service import category_distances, coverage, load_homes
from layers.errors import BadRequest, MinqingError
from layers.venues.service import add_venue, close_venue, move_venue
from tests.geo.walk_support import nx_graph, nx_point_distances

CATEGORY = "pharmacy"  # 5min tier only: quick to rebuild


@pytest.fixture
def loaded(session):
    lg = graph_cache.get_graph(session)
    if lg is None:
        pytest.skip("the test template has no walking network")
    return lg


def _circles(session, category):
    return {
        (r.venue_id, r.tier): r
        for r in session.execute(
            text(
                "SELECT venue_id, tier, budget_m, budget_unit, method, network_version,"
                " ST_AsBinary(geom) AS wkb FROM service_circles WHERE category = :c"
            ),
            {"c": category},
        )
    }


def test_graph_is_cached_by_network_version_and_rebuilt_on_change(session, loaded):
    assert graph_cache.get_graph(session) is loaded
    assert loaded.graph.n_edges == session.scalar(text("SELECT count(*) FROM network_edges"))
    session.execute(text("INSERT INTO network_versions (source) VALUES ('test bump')"))
    bumped = graph_cache.get_graph(session)
    assert bumped is not loaded
    assert bumped.version > loaded.version
    assert graph_cache.rebuild(session) is not bumped


def test_build_circles_stores_one_per_venue_and_tier(session, loaded):
    summary = build_circles(session, category="sports")
    n_venues = session.scalar(
        text("SELECT count(*) FROM venues WHERE active AND category = 'sports'")
    )
    rows = _circles(session, "sports")
    assert len(rows) == summary["circles"] == 3 * n_venues  # 5, 10 and 15 min tiers
    for r in rows.values():
        assert r.method in ("network", "buffer")
        assert r.budget_m == {"5min": 300.0, "10min": 500.0, "15min": 1000.0}[r.tier]
        assert r.budget_unit == "m"
        if r.method == "network":
            assert r.network_version == loaded.version
    # bigger tiers contain the smaller ones' networks: areas grow with the budget
    for vid in {k[0] for k in rows}:
        a = [shapely.from_wkb(bytes(rows[(vid, t)].wkb)).area for t in ("5min", "10min", "15min")]
        assert a[0] < a[1] < a[2]
    # minutes × walking speed (72 m/min): 15 min → 1080 m, and the unit says so
    build_circles(session, category="sports", tier="15min", unit="min")
    r15 = [r for r in _circles(session, "sports").values() if r.tier == "15min"]
    assert {(r.budget_m, r.budget_unit) for r in r15} == {(1080.0, "min")}


def test_build_circles_rejects_unknown_category_and_tier(session):
    with pytest.raises(BadRequest) as exc:
        build_circles(session, category="spaceport")
    assert exc.value.code == "unknown_venue_category"
    with pytest.raises(BadRequest) as exc:
        build_circles(session, category="pharmacy", tier="15min")
    assert exc.value.code == "unknown_tier"


def test_coverage_distances_for_200_buildings_match_networkx(session, loaded):
    homes = load_homes(session)
    rng = np.random.default_rng(4)
    pick = rng.choice(len(homes.ids), size=min(200, len(homes.ids)), replace=False)
    d = category_distances(session, homes, "bank")
    g = loaded.graph
    ref = nx_graph(g)
    v = session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM venues WHERE active AND category = 'bank'")
    ).all()
    vs = loaded.snap_lonlat(np.array(v), max_snap_m=250.0)
    hs = loaded.snap_lonlat(homes.lonlat[pick], max_snap_m=250.0)
    assert vs.ok.all() and hs.ok.mean() > 0.9
    sources = [
        (int(vs.edge[i]), float(vs.offset_m[i]), float(vs.snap_m[i])) for i in range(len(vs))
    ]
    ok = np.flatnonzero(hs.ok)
    targets = [(int(hs.edge[j]), float(hs.offset_m[j]), float(hs.snap_m[j])) for j in ok]
    expected = nx_point_distances(g, ref, sources, targets)
    np.testing.assert_allclose(d.distance_m[pick[ok]], expected, atol=1.0)
    assert set(d.method[pick[ok]]) == {"walk"}


def test_coverage_shares_follow_the_distances(session, loaded):
    homes = load_homes(session)
    rows = coverage(session, level="community", category="bank", homes=homes)
    d = category_distances(session, homes, "bank")
    assert {r["tier"] for r in rows} == {"15min"}
    total = sum(r["buildings"] for r in rows)
    assert total == len(homes.ids)
    assert sum(r["buildings_covered"] for r in rows) == int((d.distance_m <= 1000.0).sum())
    assert sum(r["households"] for r in rows) == int(homes.households.sum())
    for r in rows:
        if r["buildings"]:
            assert r["buildings_share"] == pytest.approx(
                r["buildings_covered"] / r["buildings"], abs=1e-4
            )
    with pytest.raises(BadRequest) as exc:
        coverage(session, level="planet")
    assert exc.value.code == "invalid_level"


def _snapshot(session, category):
    return {
        k: (r.method, r.budget_m, r.network_version, shapely.from_wkb(bytes(r.wkb)))
        for k, r in _circles(session, category).items()
    }


def _same_circles(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k][:3] == b[k][:3]
        assert a[k][3].symmetric_difference(b[k][3]).area <= 1e-12


def test_incremental_add_move_close_equals_full_rebuild(session, loaded):
    build_circles(session, category=CATEGORY)
    full = coverage(session, level="grid", category=CATEGORY)
    x, y = session.execute(
        text(
            "SELECT ST_X(rep_point), ST_Y(rep_point) FROM buildings WHERE residential ORDER BY id LIMIT 1"
        )
    ).one()
    # add: a new pharmacy at a home
    added = add_venue(session, category=CATEGORY, lon=x, lat=y, name="新药店")
    vid = added["venue_id"]
    assert [c["tier"] for c in added["circles"]] == ["5min"]
    assert added["circles"][0]["method"] == "network"
    after_add = coverage(session, level="grid", category=CATEGORY)
    gained = {(r["level"], r["code"]) for r in added["coverage_touched"]}
    changed = {("grid", a["code"]) for a, b in zip(full, after_add, strict=True) if a != b}
    assert changed and changed <= gained
    assert all(
        b["buildings_covered"] >= a["buildings_covered"]
        for a, b in zip(full, after_add, strict=True)
    )
    incremental = _snapshot(session, CATEGORY)
    build_circles(session, category=CATEGORY)
    _same_circles(incremental, _snapshot(session, CATEGORY))
    # move it ~300 m east
    moved = move_venue(session, vid, lon=x + 0.005, lat=y)
    assert moved["coverage_touched"]
    incremental = _snapshot(session, CATEGORY)
    build_circles(session, category=CATEGORY)
    _same_circles(incremental, _snapshot(session, CATEGORY))
    # close it: its circles go and coverage returns to the original figures
    closed = close_venue(session, vid)
    assert closed["circles"] == []
    assert not any(k[0] == vid for k in _snapshot(session, CATEGORY))
    assert coverage(session, level="grid", category=CATEGORY) == full
    incremental = _snapshot(session, CATEGORY)
    build_circles(session, category=CATEGORY)
    _same_circles(incremental, _snapshot(session, CATEGORY))


def test_venue_changes_reject_bad_input(session, loaded):
    with pytest.raises(MinqingError) as exc:
        add_venue(session, category=CATEGORY, lon=None, lat=None, name="无址")
    assert exc.value.code == "venue_without_location" and exc.value.status == 422
    with pytest.raises(MinqingError) as exc:
        add_venue(session, category="spaceport", lon=24.94, lat=60.17)
    assert exc.value.code == "unknown_venue_category"
    with pytest.raises(MinqingError) as exc:
        move_venue(session, 987654321, lon=24.94, lat=60.17)
    assert exc.value.code == "unknown_venue" and exc.value.status == 404
    with pytest.raises(MinqingError) as exc:
        add_venue(session, category=CATEGORY, lon="x", lat=60.17)
    assert exc.value.code == "invalid_coordinates"


def test_walking_distances_for_the_volunteer_offer(session, loaded):
    pts = session.execute(
        text("SELECT ST_X(rep_point), ST_Y(rep_point) FROM buildings ORDER BY id LIMIT 6")
    ).all()
    origin, targets = pts[0], np.array(pts[1:])
    result = walking_distances_m(session, origin, targets)
    assert result is not None
    metres, method = result
    assert method == "walk" and metres.shape == (5,)
    # walking is never shorter than the straight line (UTM, same points)
    o_xy, t_xy = loaded.xy(np.array([origin])), loaded.xy(targets)
    straight = np.hypot(*(t_xy - o_xy).T)
    assert np.all(metres >= straight - 1.0)
    # and equals networkx on the same graph
    g = loaded.graph
    o = loaded.snap_lonlat(np.array([origin]), max_snap_m=250.0)
    t = loaded.snap_lonlat(targets, max_snap_m=250.0)
    expected = nx_point_distances(
        g,
        nx_graph(g),
        [(int(o.edge[0]), float(o.offset_m[0]), float(o.snap_m[0]))],
        [(int(t.edge[j]), float(t.offset_m[j]), float(t.snap_m[j])) for j in range(len(t))],
    )
    np.testing.assert_allclose(metres, expected, atol=1.0)
    # a point far from every path: None, so the caller uses straight lines
    assert walking_distances_m(session, (origin[0] + 0.2, origin[1]), targets) is None
    assert walking_distances_m(session, origin, np.array([[np.nan, 1.0]])) is None
