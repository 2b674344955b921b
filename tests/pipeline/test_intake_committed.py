"""Intake against a database of its own, through the app's real connection pool: the path
that writes in one statement without BEGIN / COMMIT round trips."""

from __future__ import annotations

from sqlalchemy import text

from layers.config import Settings
from web import create_app


def test_intake_commits_everything_in_one_statement_and_leaves_no_transaction_open(
    committed_db,
) -> None:
    app = create_app(
        Settings(database_url=committed_db.url, secret_key="test-secret"), database=committed_db
    )
    client = app.test_client()
    with committed_db.sessions() as s:
        lon, lat = s.execute(
            text(
                "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grids"
                " ORDER BY households DESC LIMIT 1"
            )
        ).one()
    body = {"lon": lon, "lat": lat, "category": "housing", "text": "楼道灯坏了"}
    resp = client.post("/api/v1/requests", json=body)
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["offered_volunteers"]
    outside = client.post("/api/v1/requests", json={**body, "lon": lon + 5.0})
    assert outside.status_code == 422
    with committed_db.sessions() as s:  # another connection sees everything, committed
        status, number = s.execute(
            text("SELECT status, number FROM requests WHERE id = :i"), {"i": out["id"]}
        ).one()
        assert (status, number) == ("assigned", out["number"])
        events = s.execute(
            text(
                "SELECT action, from_status, to_status FROM request_events"
                " WHERE request_id = :i ORDER BY id"
            ),
            {"i": out["id"]},
        ).all()
        assert [tuple(e) for e in events] == [
            ("submit", None, "submitted"),
            ("assign", "submitted", "assigned"),
        ]
        offers = s.execute(
            text(
                "SELECT volunteer_id, rank, distance_m, distance_method FROM request_offers"
                " WHERE request_id = :i ORDER BY rank"
            ),
            {"i": out["id"]},
        ).all()
        assert [(o.volunteer_id, o.rank, o.distance_m, o.distance_method) for o in offers] == [
            (o["volunteer_id"], o["rank"], o["distance_m"], o["distance_method"])
            for o in out["offered_volunteers"]
        ]
        notified = s.scalars(
            text(
                "SELECT n.recipient_volunteer_id FROM notifications n JOIN request_events e"
                " ON e.id = n.event_id WHERE e.request_id = :i AND e.action = 'assign'"
                " AND n.recipient_volunteer_id IS NOT NULL ORDER BY 1"
            ),
            {"i": out["id"]},
        ).all()
        assert notified == sorted(o["volunteer_id"] for o in out["offered_volunteers"])
        # the 422 stored nothing, and no connection of the app sits in a transaction
        assert s.scalar(text("SELECT count(*) FROM requests WHERE id > :i"), {"i": out["id"]}) == 0
        open_tx = s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
        )
        assert open_tx == 0
