"""With the demo's walking network loaded, volunteer offers rank by walking distance."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text

from layers.circles.service import walking_distances_m
from layers.requests import offers as offer_search
from layers.volunteers.service import available_at
from tests.pipeline.conftest import busiest_grid_point, stored_offers, submit


def test_offers_use_walking_distance_on_the_demo(client, session) -> None:
    lon, lat = busiest_grid_point(session)
    resp = submit(client, lon=lon, lat=lat, category="housing")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["distance_method"] == "walk"
    offers = [o._asdict() for o in stored_offers(session, body["id"])]
    assert offers and len(offers) == body["offered_count"]
    assert all(o["distance_method"] == "walk" for o in offers)
    assert [o["distance_m"] for o in offers] == sorted(o["distance_m"] for o in offers)
    # walking is never shorter than the straight line to the same volunteer
    for o in offers:
        straight = session.scalar(
            text(
                "SELECT ST_Distance(ST_Transform(v.geom, 32635), "
                "ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 32635)) "
                "FROM volunteers v WHERE v.id = :v"
            ),
            {"x": lon, "y": lat, "v": o["volunteer_id"]},
        )
        assert o["distance_m"] >= straight - 1.0


def _brute_force_top(session, lonlat, category, now, tz, k, max_radius_m=5000.0):
    """Every suitable volunteer measured on foot, ranked by the offer's rule."""
    rows = session.execute(
        text(
            "SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat, availability, active_load"
            " FROM volunteers WHERE active AND :c = ANY(skills) AND active_load < load_limit"
        ),
        {"c": category},
    ).all()
    rows = [r for r in rows if available_at(r.availability, now, tz)]
    dist, method = walking_distances_m(
        session, lonlat, np.array([(r.lon, r.lat) for r in rows]), limit_m=max_radius_m
    )
    assert method == "walk"
    ranked = sorted(
        ((r, float(d)) for r, d in zip(rows, dist, strict=True) if d <= max_radius_m),
        key=lambda rd: (round(rd[1]), rd[0].active_load, rd[0].id),
    )
    return [(r.id, round(d, 1)) for r, d in ranked[:k]]


@pytest.mark.parametrize("first_batch", [48, 1])
def test_offer_equals_brute_force_over_every_volunteer(session, monkeypatch, first_batch) -> None:
    """The batched KNN search gives exactly the brute-force top k (ids, metres, order), also
    when it needs several batches (first batch of 1: k=1 reads 8, then 32, 128 …)."""
    monkeypatch.setattr(offer_search, "FIRST_BATCH", first_batch)
    points = session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM requests ORDER BY id LIMIT 400")
    ).all()[::20]
    now = datetime(2026, 3, 4, 2, 30, tzinfo=UTC)  # a Wednesday, 10:30 in Shanghai
    checked = 0
    for i, (lon, lat) in enumerate(points):
        category = ("housing", "elderly_care", "healthcare", "micro_wish")[i % 4]
        for k in (1, 5):
            ranked, method = offer_search.rank_volunteers(
                session=session, lonlat=(lon, lat), category=category, now=now,
                tz="Asia/Shanghai", k=k,
            )  # fmt: skip
            assert method == "walk"
            got = [(r.volunteer_id, r.distance_m) for r in ranked]
            want = _brute_force_top(session, (lon, lat), category, now, "Asia/Shanghai", k)
            assert got == want, (lon, lat, category, k)
            checked += len(got)
    assert checked >= 40


def test_skill_points_follow_the_volunteers_table(session) -> None:
    """The derived rows the offer searches (who can take work now, by skill) are kept by
    triggers through inserts, deletes and every kind of update."""

    def derived() -> set:
        return set(
            session.execute(
                text(
                    "SELECT category, volunteer_id, ST_AsText(geom), name, availability::text,"
                    " active_load FROM volunteer_skill_points"
                )
            ).all()
        )

    def expected() -> set:
        return set(
            session.execute(
                text(
                    "SELECT DISTINCT s, id, ST_AsText(geom), name, availability::text,"
                    " active_load FROM volunteers, unnest(skills) s"
                    " WHERE active AND active_load < load_limit"
                )
            ).all()
        )

    assert derived() == expected() and len(derived()) > 100
    vid = session.scalar(text("SELECT min(id) FROM volunteers WHERE active"))
    session.execute(
        text(
            "UPDATE volunteers SET skills = ARRAY['housing', 'housing', 'employment'],"
            " geom = ST_Translate(geom, 0.001, 0), name = '新名字', load_limit = 3,"
            ' availability = \'{"mon": ["08:00-12:00"]}\' WHERE id = :v'
        ),
        {"v": vid},
    )
    session.execute(text("UPDATE volunteers SET active = false WHERE id = :v + 1"), {"v": vid})
    session.execute(text("UPDATE volunteers SET active_load = 2 WHERE id = :v"), {"v": vid})
    assert {r[0] for r in derived() if r[1] == vid} == {"housing", "employment"}
    assert {r[5] for r in derived() if r[1] == vid} == {2}
    # at the load limit nobody offers them work; one released slot brings them back
    session.execute(text("UPDATE volunteers SET active_load = 3 WHERE id = :v"), {"v": vid})
    assert not [r for r in derived() if r[1] == vid]
    session.execute(text("UPDATE volunteers SET active_load = 1 WHERE id = :v"), {"v": vid})
    session.execute(
        text(
            "INSERT INTO volunteers (name, skills, geom) SELECT '新人', ARRAY['healthcare'], geom"
            " FROM volunteers WHERE id = :v"
        ),
        {"v": vid},
    )
    session.execute(
        text(
            "DELETE FROM volunteers WHERE id = (SELECT max(id) FROM volunteers v WHERE NOT EXISTS"
            " (SELECT 1 FROM requests r WHERE r.assignee_id = v.id) AND NOT EXISTS"
            " (SELECT 1 FROM request_offers o WHERE o.volunteer_id = v.id) AND NOT EXISTS"
            " (SELECT 1 FROM notifications n WHERE n.recipient_volunteer_id = v.id))"
        )
    )
    assert derived() == expected()
    assert {r[0] for r in derived() if r[1] == vid} == {"housing", "employment"}
