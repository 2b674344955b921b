"""Intake against a database of its own, through the app's real connection pool: the path
that writes in one statement without BEGIN / COMMIT round trips."""

from __future__ import annotations

from sqlalchemy import text

from tests.pipeline.conftest import (
    busiest_grid_point,
    request_events,
    stored_offers,
    submit,
)


def test_intake_commits_everything_in_one_statement_and_leaves_no_transaction_open(
    committed_db, committed_client
) -> None:
    with committed_db.session() as s:
        lon, lat = busiest_grid_point(s)
    resp = submit(committed_client, lon=lon, lat=lat, category="housing")
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["offered_count"] > 0
    outside = submit(committed_client, lon=lon + 5.0, lat=lat, category="housing")
    assert outside.status_code == 422
    with committed_db.session() as s:  # another connection sees everything, committed
        status, number = s.execute(
            text("SELECT status, number FROM requests WHERE id = :i"), {"i": out["id"]}
        ).one()
        assert (status, number) == ("assigned", out["number"])
        events = [e[:3] for e in request_events(s, out["id"])]  # owner_level: test_intake
        assert [tuple(e) for e in events] == [
            ("submit", None, "submitted"),
            ("assign", "submitted", "assigned"),
        ]
        offers = stored_offers(s, out["id"])
        assert len(offers) == out["offered_count"]
        assert [o.rank for o in offers] == list(range(1, len(offers) + 1))
        assert {o.distance_method for o in offers} == {out["distance_method"]}
        notified = s.scalars(
            text(
                "SELECT n.recipient_volunteer_id FROM notifications n JOIN request_events e"
                " ON e.id = n.event_id WHERE e.request_id = :i AND e.action = 'assign'"
                " AND n.recipient_volunteer_id IS NOT NULL ORDER BY 1"
            ),
            {"i": out["id"]},
        ).all()
        assert notified == sorted(o.volunteer_id for o in offers)
        # the 422 stored nothing, and no connection of the app sits in a transaction
        assert s.scalar(text("SELECT count(*) FROM requests WHERE id > :i"), {"i": out["id"]}) == 0
        open_tx = s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
        )
        assert open_tx == 0
