"""The app's deadline timer runs the same idempotent job as `minqing escalate`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from web.cli import deadline_timer


def test_timer_escalates_an_overdue_request(committed_db) -> None:
    with committed_db.session() as s:
        rid = s.scalar(
            text(
                "SELECT id FROM requests WHERE status = 'assigned' AND owner_level = 'grid' LIMIT 1"
            )
        )
        assert rid is not None
        s.execute(
            text("UPDATE requests SET deadline_at = :t WHERE id = :r"),
            {"t": datetime.now(UTC) - timedelta(hours=1), "r": rid},
        )
        s.commit()
    stop = deadline_timer(committed_db.url, 0.2)
    try:
        deadline = time.monotonic() + 20
        level = "grid"
        while time.monotonic() < deadline and level == "grid":
            time.sleep(0.2)
            with committed_db.session() as s:
                level = s.scalar(text("SELECT owner_level FROM requests WHERE id = :r"), {"r": rid})
        assert level == "community"
        with committed_db.session() as s:
            events = s.scalars(
                text("SELECT action FROM request_events WHERE request_id = :r ORDER BY id"),
                {"r": rid},
            ).all()
        assert events[-1] == "escalate" and events.count("escalate") == 1
    finally:
        stop.set()
