"""The synthetic scale generator: pure layout, and a small district written into PostGIS."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from data.synthetic import (
    build_buildings,
    build_layout,
    generate_district,
    shared_vertices,
    synthetic_grids,
)
from geo.codes import is_valid_grid_code

UTM = 32648  # Chengdu, where the synthetic district sits by default
CODE = "990100"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
SMALL = dict(grids=20, buildings=500, volunteers=1000, requests=5000, network_edges_min=2000)
LIVE = (
    "g.generation_low <= (SELECT max(id) FROM generations) AND (g.generation_high IS NULL "
    "OR g.generation_high > (SELECT max(id) FROM generations))"
)


# --------------------------------------------------------------------------- pure


def test_layout_is_deterministic_for_a_seed() -> None:
    a_geoms, a_codes = synthetic_grids(30, seed=7)
    b_geoms, b_codes = synthetic_grids(30, seed=7)
    c_geoms, _ = synthetic_grids(30, seed=8)
    assert list(a_codes) == list(b_codes)
    assert list(shapely.to_wkb(a_geoms)) == list(shapely.to_wkb(b_geoms))
    assert list(shapely.to_wkb(a_geoms)) != list(shapely.to_wkb(c_geoms))


@pytest.mark.parametrize("n", [1, 7, 100])
def test_layout_tiles_the_district_with_valid_codes(n: int) -> None:
    layout = build_layout(n, seed=3)
    assert len(layout.grid_utm) == n == len(set(layout.grid_codes))
    assert all(is_valid_grid_code(c) and c.startswith(CODE) for c in layout.grid_codes)
    assert list(layout.grid_codes) == sorted(layout.grid_codes)
    assert shapely.is_valid(layout.grid_utm).all() and shapely.is_valid(layout.grid_lonlat).all()
    total_m2 = shapely.area(layout.grid_utm).sum()
    assert abs(total_m2 - layout.district_utm.area) < 1e-3  # no overlaps
    assert shapely.area(shapely.union_all(layout.grid_utm)) == pytest.approx(total_m2)
    for c, community in enumerate(layout.community_codes):
        members = layout.grid_codes[layout.grid_community == c]
        assert len(members) >= 1
        assert all(code[:12] == community for code in members)
        street = layout.street_codes[layout.community_street[c]]
        assert community[:9] == street


def test_sequence_follows_design_rule() -> None:
    """North first in 300 m rows from the community's top, then west first (DESIGN §2)."""
    layout = build_layout(60, seed=2)
    reps = shapely.get_coordinates(shapely.point_on_surface(layout.grid_utm))
    for c in range(len(layout.community_codes)):
        idx = np.nonzero(layout.grid_community == c)[0]
        ymax = shapely.bounds(shapely.union_all(layout.grid_utm[idx]))[3]
        rows = np.floor((ymax - reps[idx, 1]) / 300.0)
        expected = sorted(idx, key=lambda i: (rows[list(idx).index(i)], reps[i, 0]))
        by_code = sorted(idx, key=lambda i: layout.grid_codes[i])
        assert expected == by_code
        assert [int(layout.grid_codes[i][12:]) for i in by_code] == list(range(1, len(idx) + 1))


def test_grids_have_realistic_vertex_counts_and_shared_edges() -> None:
    geoms, _ = synthetic_grids(100, seed=1)
    assert np.median(shapely.get_num_coordinates(geoms)) >= 50
    # boundaries are not straight: a shared border has many vertices off the chord
    shared = shared_vertices(geoms)
    assert len(shared) > 100 * 20
    # each shared vertex really is a vertex of ≥ 2 grids
    sample = shared[:: max(1, len(shared) // 50)]
    for x, y in sample:
        owners = [g for g in geoms if (shapely.get_coordinates(g) == (x, y)).all(axis=1).any()]
        assert len(owners) >= 2


def test_buildings_inside_one_grid_and_disjoint() -> None:
    layout = build_layout(20, seed=4)
    blds = build_buildings(layout, 400, seed=4)
    assert len(blds) == 400
    for i in range(len(blds)):
        grid = layout.grid_utm[blds.grid[i]]
        assert grid.buffer(-0.99).contains(blds.footprint_utm[i])
    tree = shapely.STRtree(blds.footprint_utm)
    pairs = tree.query(blds.footprint_utm, predicate="intersects")
    assert (pairs[0] == pairs[1]).all()  # no building touches another
    assert (blds.households[~blds.residential] == 0).all()
    assert (blds.households[blds.residential] >= 1).all()


# --------------------------------------------------------------------------- database


def _generate(session, **overrides):
    return generate_district(session=session, seed=5, now=NOW, **{**SMALL, **overrides})


def test_district_in_postgis(session) -> None:
    summary = _generate(session)
    assert summary.grids == 20 and summary.buildings == 500
    assert summary.network_edges >= 2000

    areas = dict(
        session.execute(
            text("SELECT level, count(*) FROM areas WHERE code LIKE :c || '%' GROUP BY level"),
            {"c": CODE},
        ).all()
    )
    assert areas["district"] == 1 and areas["street"] >= 1 and areas["community"] >= 2

    # nesting: each child inside its parent (1 m tolerance for reprojection)
    outside = session.execute(
        text(
            f"""SELECT c.code FROM areas c JOIN areas p ON p.id = c.parent_id
                WHERE c.code LIKE :c || '%' AND ST_Area(ST_Difference(
                  ST_Transform(c.geom, {UTM}), ST_Buffer(ST_Transform(p.geom, {UTM}), 1))) > 1"""
        ),
        {"c": CODE},
    ).all()
    assert outside == []
    # each street / district is exactly the union of its children
    for parent_level in ("district", "street"):
        diffs = session.execute(
            text(
                f"""SELECT p.code, ST_Area(ST_SymDifference(ST_Transform(p.geom, {UTM}),
                          ST_Transform(ST_Union(c.geom), {UTM})))
                    FROM areas p JOIN areas c ON c.parent_id = p.id
                    WHERE p.level = :lvl AND p.code LIKE :c || '%' GROUP BY p.id"""
            ),
            {"lvl": parent_level, "c": CODE},
        ).all()
        assert diffs and all(d < 1.0 for _, d in diffs), diffs

    # grids tile their communities: symmetric difference and overlaps < 1 m²
    rows = session.execute(
        text(
            f"""SELECT c.code,
                  ST_Area(ST_SymDifference(ST_Transform(c.geom, {UTM}),
                          ST_Transform(ST_Union(g.geom), {UTM}))),
                  sum(ST_Area(ST_Transform(g.geom, {UTM})))
                    - ST_Area(ST_Transform(ST_Union(g.geom), {UTM})),
                  bool_and(substr(g.code, 1, 12) = c.code),
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY ST_NPoints(g.geom))
                FROM areas c JOIN grids g ON g.community_id = c.id
                WHERE c.level = 'community' AND c.code LIKE :c || '%' AND {LIVE}
                GROUP BY c.id"""
        ),
        {"c": CODE},
    ).all()
    assert len(rows) == areas["community"]
    for code, diff_m2, overlap_m2, prefix_ok, _ in rows:
        assert diff_m2 < 1.0, code
        assert overlap_m2 < 1.0, code
        assert prefix_ok, code

    codes = session.scalars(
        text(f"SELECT g.code FROM grids g WHERE g.code LIKE :c || '%' AND {LIVE}"), {"c": CODE}
    ).all()
    assert len(codes) == 20 == len(set(codes))
    assert all(is_valid_grid_code(c) for c in codes)
    median_vertices = session.scalar(
        text(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ST_NPoints(geom)) FROM grids "
            "WHERE code LIKE :c || '%'"
        ),
        {"c": CODE},
    )
    assert median_vertices >= 50

    # buildings: each inside exactly one live grid
    per_building = session.execute(
        text(
            f"""SELECT b.code, count(g.id) FROM buildings b
                LEFT JOIN grids g ON ST_Within(b.geom, g.geom) AND {LIVE}
                WHERE b.code LIKE 'B-S' || :c || '%' GROUP BY b.code"""
        ),
        {"c": CODE},
    ).all()
    assert len(per_building) == 500
    assert {n for _, n in per_building} == {1}

    # requests: grid_id is what a PostGIS ST_Covers lookup gives (lowest code on borders)
    mismatches = session.execute(
        text(
            f"""SELECT r.number, r.grid_id, (
                    SELECT g.id FROM grids g WHERE ST_Covers(g.geom, r.geom) AND {LIVE}
                    ORDER BY g.code LIMIT 1) AS expected
                FROM requests r WHERE r.number LIKE 'SYN' || :c || '%'"""
        ),
        {"c": CODE},
    ).all()
    assert len(mismatches) == 5000
    wrong = [(n, got, want) for n, got, want in mismatches if got != want]
    assert wrong == []
    assert all(got is not None for _, got, _ in mismatches)
    on_border = session.scalar(
        text(
            f"""SELECT count(*) FROM requests r WHERE r.number LIKE 'SYN' || :c || '%' AND
                (SELECT count(*) FROM grids g WHERE ST_Covers(g.geom, r.geom) AND {LIVE}) >= 2"""
        ),
        {"c": CODE},
    )
    assert on_border >= 5  # the lowest-code rule was exercised
    stats = session.execute(
        text(
            """SELECT count(DISTINCT number), count(DISTINCT ticket_hash),
                      avg((status IN ('assigned', 'claimed', 'in_progress'))::int),
                      max(created_at), min(created_at),
                      bool_and(closed_at IS NULL OR closed_at >= created_at),
                      bool_and(community_id = (SELECT community_id FROM grids
                                               WHERE id = requests.grid_id))
               FROM requests WHERE number LIKE 'SYN' || :c || '%'"""
        ),
        {"c": CODE},
    ).one()
    assert stats[0] == stats[1] == 5000
    assert 0.02 < stats[2] < 0.10
    assert stats[3] <= NOW and (NOW - stats[4]).days <= 366
    assert stats[5] and stats[6]

    # volunteers: community by point-in-polygon, skills from the catalogue
    vol = session.execute(
        text(
            """SELECT count(*), count(*) FILTER (WHERE v.community_id IS DISTINCT FROM (
                   SELECT a.id FROM areas a WHERE a.level = 'community'
                   AND ST_Covers(a.geom, v.geom) ORDER BY a.code LIMIT 1)),
                   count(*) FILTER (WHERE cardinality(v.skills) BETWEEN 1 AND 3)
               FROM volunteers v WHERE ST_Covers(
                 (SELECT geom FROM areas WHERE code = :c), v.geom)"""
        ),
        {"c": CODE},
    ).one()
    assert vol == (1000, 0, 1000)

    # walking network: lengths in metres as measured in UTM
    net = session.execute(
        text(
            f"""SELECT count(*), max(abs(length_m - ST_Length(ST_Transform(geom, {UTM}))))
                FROM network_edges"""
        )
    ).one()
    assert net[0] == summary.network_edges >= 2000
    assert net[1] < 0.01


def _digest(session) -> str:
    h = hashlib.sha256()
    queries = [
        "SELECT code, level, ST_AsBinary(geom) FROM areas WHERE code LIKE '9901%' ORDER BY code",
        "SELECT code, households, ST_AsBinary(geom) FROM grids WHERE code LIKE '9901%' "
        "ORDER BY code",
        "SELECT code, levels, households, ST_AsBinary(geom) FROM buildings "
        "WHERE code LIKE 'B-S9901%' ORDER BY code",
        "SELECT r.number, r.ticket_hash, r.category, r.status, r.created_at, g.code, "
        "ST_AsBinary(r.geom) FROM requests r LEFT JOIN grids g ON g.id = r.grid_id "
        "WHERE r.number LIKE 'SYN9901%' ORDER BY r.number",
        "SELECT v.name, v.skills, ST_AsBinary(v.geom) FROM volunteers v "
        "ORDER BY ST_X(v.geom), ST_Y(v.geom), v.name",
        "SELECT length_m, ST_AsBinary(geom) FROM network_edges ORDER BY ST_AsBinary(geom)",
    ]
    for q in queries:
        for row in session.execute(text(q)):
            h.update(
                repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode()
            )
    return h.hexdigest()


def test_deterministic_for_a_seed(session) -> None:
    sizes = dict(grids=8, buildings=100, volunteers=50, requests=300, network_edges_min=300)
    digests = []
    for seed in (11, 11, 12):
        nested = session.begin_nested()
        generate_district(session=session, seed=seed, now=NOW, **sizes)
        digests.append(_digest(session))
        nested.rollback()
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_refuses_an_existing_district(session) -> None:
    _generate(session, grids=2, buildings=0, volunteers=0, requests=10, network_edges_min=0)
    with pytest.raises(ValueError, match="already exists"):
        _generate(session, grids=2, buildings=0, volunteers=0, requests=0, network_edges_min=0)


def test_volunteer_availability_is_what_intake_reads() -> None:
    from data.synthetic import AVAILABILITY_PATTERNS
    from layers.volunteers.service import validate_availability

    for pattern in AVAILABILITY_PATTERNS:
        assert validate_availability(pattern) == pattern
