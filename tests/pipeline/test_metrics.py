"""Metrics (DESIGN §3) checked against an independent recomputation from request_events."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from layers.auth.permissions import Grant
from layers.errors import MinqingError
from layers.requests import service as svc
from layers.requests.metrics import compute_metrics
from layers.requests.schemas import parse_intake
from tests.factories import X0, Y0, token

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPEN = {"submitted", "triage", "assigned", "claimed", "in_progress"}


def _simulate(session, world, n: int = 70, seed: int = 7) -> datetime:
    rng = random.Random(seed)
    session.execute(
        text(
            "UPDATE volunteers SET skills = '{elderly_care,housing,healthcare}',"
            " load_limit = 1000 WHERE id = ANY(:ids)"
        ),
        {"ids": [v.id for v in world.volunteers.values()]},
    )
    uid = session.scalar(
        text("SELECT id FROM users WHERE username = :u"), {"u": world.users["volunteer"]}
    )
    vol = svc.Actor(kind="user", user_id=uid, grant=Grant(own=True))
    admin = svc.Actor(kind="user", grant=Grant(everything=True, pii=True))
    previous = None
    for i in range(n):
        t = T0 + timedelta(hours=i * 8 + rng.random())
        area = rng.random()
        if area < 0.15:  # the gap community: triage
            lon, lat = X0 + 0.021 + rng.random() * 0.008, Y0 + 0.001 + rng.random() * 0.008
        else:
            lon, lat = X0 + 0.001 + rng.random() * 0.018, Y0 + 0.001 + rng.random() * 0.008
        body = {
            "lon": lon,
            "lat": lat,
            "text": f"#{i}",
            "category": rng.choice(["elderly_care", "housing", "healthcare"]),
        }
        out = svc.submit_request(session=session, intake=parse_intake(body), now=t)
        rid, ticket = out.request_id, out.ticket
        status = out.body["status"]
        roll = rng.random()
        try:
            if roll < 0.08:
                svc.reject_request(
                    session=session,
                    request_id=rid,
                    actor=admin,
                    reason="no",
                    now=t + timedelta(hours=1),
                )
            elif roll < 0.13 and previous:
                svc.mark_duplicate(
                    session=session,
                    request_id=rid,
                    actor=admin,
                    duplicate_of=previous,
                    reason="同一处问题",
                    now=t + timedelta(hours=1),
                )
            elif roll < 0.18:
                svc.withdraw_by_ticket(session=session, ticket=ticket, now=t + timedelta(hours=2))
            elif status == "assigned":
                t += timedelta(hours=rng.uniform(0.5, 6))
                svc.claim_request(session=session, request_id=rid, actor=vol, now=t)
                if rng.random() < 0.85:
                    t += timedelta(hours=rng.uniform(1, 90))
                    svc.resolve_request(
                        session=session, request_id=rid, actor=vol, note="done", now=t
                    )
                    if rng.random() < 0.6:
                        svc.rate_by_ticket(
                            session=session,
                            ticket=ticket,
                            rating=rng.randint(1, 5),
                            now=t + timedelta(hours=3),
                        )
        except MinqingError:
            pass
        previous = rid
    end = T0 + timedelta(days=30)
    svc.run_escalations(session=session, now=end - timedelta(days=3))
    svc.run_escalations(session=session, now=end)
    return end


def _from_events(session, world, level: str, pfrom, pto, now) -> dict[str, dict]:
    events = session.execute(
        text(
            "SELECT request_id, at, action, to_status, data FROM request_events"
            " WHERE request_id IN (SELECT id FROM requests WHERE community_id = ANY(:c))"
            " ORDER BY id"
        ),
        {"c": [world.mini.community.id, world.gap.id]},
    ).all()
    by_req: dict[int, list] = defaultdict(list)
    for e in events:
        by_req[e.request_id].append(e)
    codes = {
        world.mini.community.code: world.mini.street.code,
        world.gap.code: world.mini.street.code,
    }
    acc: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for evs in by_req.values():
        submit = evs[0]
        assert submit.action == "submit"
        if not pfrom <= submit.at < pto:
            continue
        final = evs[-1].to_status
        if final in ("rejected", "duplicate"):
            continue
        grid = next((e.data["grid_code"] for e in reversed(evs) if e.data.get("grid_code")), None)
        community = submit.data["community_code"]
        key = {"grid": grid, "community": community, "street": codes[community]}[level]
        if key is None:
            continue
        original = datetime.fromisoformat(submit.data["deadline"])
        deadline = datetime.fromisoformat(
            next(e.data["deadline"] for e in reversed(evs) if e.data.get("deadline"))
        )
        resolves = [e.at for e in evs if e.action == "resolve"]
        rates = [e.data["rating"] for e in evs if e.action == "rate"]
        m = acc[key]
        m["received"] += 1
        m["closed"] += final == "closed"
        m["on_time"] += final in ("resolved", "rated", "closed") and resolves[-1] <= original
        if rates:
            m["rating_sum"] += rates[-1]
            m["rated"] += 1
        m["open"] += final in OPEN
        m["overdue"] += final in OPEN and deadline < now
    return acc


@pytest.mark.parametrize("level", ["grid", "community", "street"])
def test_metrics_match_a_recomputation_from_events(session, world, level) -> None:
    end = _simulate(session, world)
    pfrom, pto = T0 + timedelta(days=2), T0 + timedelta(days=20)
    scope = ("r.community_id = ANY(:cs)", {"cs": [world.mini.community.id, world.gap.id]})
    rows = compute_metrics(
        session=session,
        level=level,
        period_from=pfrom,
        period_to=pto,
        now=end,
        scope_clause=scope[0],
        scope_params=scope[1],
    )
    expected = _from_events(session, world, level, pfrom, pto, end)
    assert {r["code"] for r in rows} == set(expected)
    assert sum(r["received"] for r in rows) >= 20
    for r in rows:
        e = expected[r["code"]]
        assert r["received"] == e["received"]
        assert r["closed"] == e["closed"]
        assert r["closure_rate"] == round(e["closed"] / e["received"], 4)
        assert r["resolved_on_time"] == e["on_time"]
        assert r["on_time_rate"] == round(e["on_time"] / e["received"], 4)
        assert r["rated"] == e["rated"]
        if e["rated"]:
            assert r["mean_rating"] == round(e["rating_sum"] / e["rated"], 3)
        assert r["open_backlog"] == e["open"]
        assert r["overdue"] == e["overdue"]
    # the simulation exercises the interesting cases
    assert any(r["closed"] for r in rows) and any(r["open_backlog"] for r in rows)
    assert sum(r["resolved_on_time"] for r in rows) < sum(r["received"] for r in rows)


def test_metrics_endpoint(client, session, world) -> None:
    _simulate(session, world, n=30)
    admin = token(client, world.users["community_staff"])
    q = {"level": "community", "from": "2026-01-01T00:00:00+00:00", "to": "2026-02-01"}
    body = client.get("/api/v1/metrics", headers=admin, query_string=q).get_json()
    assert body["level"] == "community"
    assert [r["code"] for r in body["rows"]] == [world.mini.community.code]  # staff's subtree
    assert body["rows"][0]["received"] > 0
    bad = client.get("/api/v1/metrics?level=planet", headers=admin)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_level"
    bad = client.get("/api/v1/metrics?from=yesterday", headers=admin)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_time"
