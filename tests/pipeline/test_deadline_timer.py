"""The app's deadline timer runs the same idempotent job as `minqing escalate`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from web.serving import JOB_APPLICATION_NAME, deadline_timer


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


def test_the_next_cycle_runs_after_the_jobs_connection_is_killed(committed_db, monkeypatch) -> None:
    """The job's one pooled connection is pinged before each cycle: when PostgreSQL drops it
    (a restart; here pg_terminate_backend on the job's backend alone, which leaves every
    other session be) the very next cycle reconnects and escalates, none is skipped."""
    from layers.requests import service

    cycles: list[object] = []  # each cycle's counts, or the exception it raised
    real = service.run_escalations

    def counted(**kw):
        try:
            cycles.append(real(**kw))
        except Exception as exc:
            cycles.append(exc)
            raise
        return cycles[-1]

    monkeypatch.setattr(service, "run_escalations", counted)

    def wait_for(condition, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    stop = deadline_timer(committed_db.url, 0.3)
    try:
        wait_for(lambda: len(cycles) >= 1, "a first cycle")
        with committed_db.session() as s:

            def kill_idle() -> bool:  # between cycles, so no cycle is cut short
                killed = s.scalars(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = :name AND datname = current_database()"
                        " AND state = 'idle'"
                    ),
                    {"name": JOB_APPLICATION_NAME},
                ).all()
                s.commit()
                return killed == [True]

            wait_for(kill_idle, "the job's connection, idle")
            done = len(cycles)
            rid = s.scalar(
                text(
                    "SELECT id FROM requests WHERE status = 'assigned' AND owner_level = 'grid'"
                    " ORDER BY id LIMIT 1"
                )
            )
            s.execute(
                text("UPDATE requests SET deadline_at = :t WHERE id = :r"),
                {"t": datetime.now(UTC) - timedelta(hours=1), "r": rid},
            )
            s.commit()
        wait_for(lambda: len(cycles) > done, "the next cycle")
        assert not isinstance(cycles[done], Exception), cycles[done]
        with committed_db.session() as s:
            level = s.scalar(text("SELECT owner_level FROM requests WHERE id = :r"), {"r": rid})
        if level == "grid":  # made overdue just after that cycle began: the next one has it
            wait_for(lambda: len(cycles) > done + 1, "one more cycle")
            assert not isinstance(cycles[done + 1], Exception), cycles[done + 1]
            with committed_db.session() as s:
                level = s.scalar(text("SELECT owner_level FROM requests WHERE id = :r"), {"r": rid})
        assert level == "community"
    finally:
        stop.set()
