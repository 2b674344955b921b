"""The actions bench: its plan and model check (fast), and a quick run end to end (slow)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sqlalchemy import text

from bench.actions_check import Event, Outcome, RowState, Snapshot, check
from bench.actions_load import summarise
from bench.actions_plan import (
    MIX,
    PAIRS,
    Candidate,
    Shot,
    Unit,
    World,
    make_plan,
    unit_counts,
)


def small_world(n: int = 600, seed: int = 3) -> World:
    rng = np.random.default_rng(seed)
    cands = [
        Candidate(
            id=i + 1,
            grid_code=f"G{i % 24:02d}",
            community_code=f"C{(i % 24) // 12}",
            category="abc"[i % 3],
            offers=tuple(
                int(v) for v in rng.choice(400, size=int(rng.integers(0, 6)), replace=False)
            ),
        )
        for i in range(n)
    ]
    targets = {
        (f"C{c}", cat): [1000 + 10 * c + j for j in range(4)] for c in (0, 1) for cat in "abc"
    }
    grids = {f"C{c}": [f"G{g:02d}" for g in range(24) if g // 12 == c] for c in (0, 1)}
    return World(cands, dict.fromkeys(range(400), 2), targets, grids)


def test_unit_counts_keep_the_mix_and_the_contended_share() -> None:
    for n in (390, 650, 7000):
        counts = unit_counts(n, 0.14)
        pairs = sum(counts[k] for k in PAIRS)
        assert sum(counts.values()) + pairs == n  # a pair is two actions
        assert 2 * pairs / n >= 0.14


def test_plan_follows_the_mix_and_never_overbooks_a_volunteer() -> None:
    world = small_world()
    plan = make_plan(world, 390, rate=30.0, contended_share=0.14, seed=1)
    assert plan.short == {} and plan.actions == 390
    assert plan.contended_share() >= 0.10
    for category, share in plan.mix().items():
        assert abs(share - MIX[category]) <= 0.01, category
    assert len({u.request_id for u in plan.units}) == len(plan.units)  # one request per unit
    # due times: the offered rate, and a pair's two shots at one instant
    assert plan.units[-1].due_s == pytest.approx((390 - len(plan.units[-1].shots)) / 30.0)
    assert all(a.due_s <= b.due_s for a, b in zip(plan.units, plan.units[1:], strict=False))
    takes = Counter(
        s.volunteer_id for u in plan.units for s in u.shots if s.action == "claim"
    ) + Counter(u.preclaim for u in plan.units if u.preclaim is not None)
    assert max(takes.values()) <= 2  # every volunteer had two free slots
    by_id = {c.id: c for c in world.candidates}
    acted_on = {u.request_id for u in plan.units}
    for u in plan.units:
        c = by_id[u.request_id]
        for s in u.shots:
            if s.action in ("claim", "decline_offer"):
                assert s.volunteer_id in c.offers
            if s.action == "reassign" and "volunteer_id" in s.body:
                assert s.body["volunteer_id"] not in c.offers
            if s.action == "mark_duplicate":  # an untouched original of the same grid
                original = s.body["duplicate_of"]
                assert original not in acted_on and by_id[original].grid_code == c.grid_code
        if u.contended:
            assert u.shots[0].actor != u.shots[1].actor
    roles = plan.roles(world)
    assert set(roles) == plan.accounts()
    assert {r for r, _ in roles.values()} == {"grid_leader", "community_staff", "volunteer"}
    assert all(roles[f"bench_vol_{v}"][0] == "volunteer" for v in plan.volunteers().values())


def _unit(kind: str, rid: int, *shots: tuple[str, str, int | None]) -> Unit:
    return Unit(kind, rid, tuple(Shot(a, who, {}, volunteer_id=v) for a, who, v in shots))


def _event(
    eid: int, rid: int, user: int, action: str, f: str, t: str, lvl: str, at: float = 0.0
) -> Event:
    return Event(eid, rid, user, action, f, t, lvl, at, written=at + 0.02)


def test_model_check_finds_double_effects() -> None:
    users = {"v1": 1, "v2": 2, "lead": 3, "staff": 4}
    units = [
        _unit("claim_vs_claim", 10, ("claim", "v1", 101), ("claim", "v2", 102)),
        _unit("escalate_vs_escalate", 11, ("escalate", "lead", None), ("escalate", "staff", None)),
        _unit("reply", 12, ("reply", "lead", None)),
    ]
    before = Snapshot(
        rows={
            10: RowState("assigned", "grid", None),
            11: RowState("assigned", "grid", None),
            12: RowState("assigned", "grid", None),
        },
        loads={101: 0, 102: 1},
        last_event_id=0,
    )
    # a clean run: one claim won, one escalation won, the reply done
    outcomes = [
        Outcome(200, "ok", 0.0, 0.05),
        Outcome(409, "already_claimed"),
        Outcome(200, "ok", 0.0, 0.05),
        Outcome(409, "conflict"),
        Outcome(200, "ok"),
    ]
    events = [
        _event(1, 10, 1, "claim", "assigned", "claimed", "grid"),
        _event(2, 11, 3, "escalate", "assigned", "assigned", "community"),
        _event(3, 12, 3, "reply", "assigned", "assigned", "grid"),
    ]
    after = Snapshot(
        rows={
            10: RowState("claimed", "grid", 101),
            11: RowState("assigned", "community", None),
            12: RowState("assigned", "grid", None),
        },
        loads={101: 1, 102: 1},
        last_event_id=3,
    )
    clean = check(units, outcomes, users, before, events, after)
    assert clean["double_effects"] == 0 and clean["violations"] == 0, clean
    assert clean["pairs"] == {
        "claim_vs_claim": {"one_won": 1},
        "escalate_vs_escalate": {"one_won": 1},
    }
    assert clean["losers_not_409"] == 0
    # both escalations won, the second begun 10 ms before the first's event was written (a
    # race the version check missed): a level skipped;
    # the load counter of v1 is one too many; a 403 loser is reported
    outcomes[3] = Outcome(200, "ok", 0.0, 0.06)
    outcomes[1] = Outcome(403, "forbidden")
    events.append(_event(4, 11, 4, "escalate", "assigned", "assigned", "street", at=0.01))
    after.rows[11] = RowState("assigned", "street", None)
    after.loads[101] = 2
    bad = check(units, outcomes, users, before, events, after)
    assert bad["findings"]["both_won"] == 1 and bad["findings"]["load_counter_off"] == 1
    assert bad["double_effects"] == 2 and bad["violations"] == 0
    assert bad["pairs"]["escalate_vs_escalate"] == {"both_won": 1, "both_won_raced": 1}
    assert bad["both_won"] == [
        {"request": 11, "kind": "escalate_vs_escalate", "how": "raced", "gap_ms": 10.0}
    ]
    # begun after the first's event was written: serialised, still a level skipped
    events[3] = _event(4, 11, 4, "escalate", "assigned", "assigned", "street", at=0.03)
    late = check(units, outcomes, users, before, events, after)
    assert late["pairs"]["escalate_vs_escalate"] == {"both_won": 1, "both_won_serialised": 1}
    assert late["double_effects"] == 2
    assert bad["losers_not_409"] == 1
    # a second event for the reply, an event nobody asked for, a 200 without its event
    twice = [*events, _event(5, 12, 3, "reply", "assigned", "assigned", "grid")]
    assert check(units, outcomes, users, before, twice, after)["findings"]["extra_events"] == 1
    stray = [*events, _event(6, 12, 4, "reply", "assigned", "assigned", "grid")]
    assert check(units, outcomes, users, before, stray, after)["findings"]["stray_events"] == 1
    lost = check(units, outcomes, users, before, [e for e in events if e.id != 3], after)
    assert lost["findings"]["lost_effects"] == 1 and lost["violations"] == 1


def test_summary_counts_latency_from_the_schedule_and_errors() -> None:
    result = {
        "latency": np.array([0.5, 0.010, 0.020, 0.030, np.inf]),
        "lag": np.zeros(5),
        "status": np.array([200, 200, 409, 500, -2]),
        "answer": ["ok", "ok", "conflict", "internal_error", "unsent"],
    }
    due = np.array([0.0, 1.0, 1.0, 1.2, 1.5])
    s = summarise(
        result, due, ["claim"] * 3 + ["escalate"] * 2, warmup_s=1.0, duration_s=1.0, rate=4.0
    )
    assert s["sent"] == 4 and s["status_2xx"] == 1 and s["status_4xx"] == 1
    assert s["errors"] == 1 and s["errors_5xx"] == 1 and s["unsent"] == 1
    assert s["per_action"]["claim"]["n"] == 2 and s["p99_ms"] == float("inf")
    assert s["achieved_rps"] == 3.0  # rows 1-3 answered inside [1 s, 2 s)


def test_floor_action_locks_updates_and_writes_one_scratch_event(committed_db, monkeypatch) -> None:
    """On a database of its own: the floor's scratch tables are made by the owner (the app's
    role creates nothing) and must not show up among the schema's tables elsewhere."""
    from sqlalchemy import create_engine

    from layers.config import Settings
    from web import bench_floor, create_app

    owner = create_engine(committed_db.owner_url)
    with owner.begin() as c:
        bench_floor.create_tables(c, grant_to=committed_db.engine.url.username)
    owner.dispose()
    monkeypatch.setenv(bench_floor.ENV, "1")
    monkeypatch.setattr(bench_floor, "_ready", set())
    settings = Settings(database_url=committed_db.url, secret_key="test-secret")
    client = create_app(settings, database=committed_db).test_client()
    with committed_db.session() as session:
        rid, status = session.execute(
            text("SELECT id, status FROM requests ORDER BY id LIMIT 1")
        ).one()
        events = session.scalar(text("SELECT count(*) FROM request_events"))
    resp = client.post("/bench/floor/action", json={"request_id": rid, "action": "claim"})
    assert resp.status_code == 200 and resp.get_json() == {"id": rid, "status": status}
    with committed_db.session() as session:
        row = session.execute(
            text("SELECT request_id, action, from_status, to_status FROM bench_floor_events")
        ).all()
        assert row == [(rid, "claim", status, status)]
        assert session.scalar(text("SELECT count(*) FROM request_events")) == events
        assert (
            session.scalar(text("SELECT status FROM requests WHERE id = :i"), {"i": rid}) == status
        )
    json_only = {"Accept": "application/json"}
    resp = client.post("/bench/floor/action", json={"request_id": -1}, headers=json_only)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "unknown_request"
    resp = client.post("/bench/floor/action", json={"request_id": "1"}, headers=json_only)
    assert resp.status_code == 400
    monkeypatch.delenv(bench_floor.ENV)
    assert (
        create_app(settings, database=committed_db)
        .test_client()
        .post("/bench/floor/action")
        .status_code
        == 404
    )


@pytest.mark.slow
def test_quick_bench_runs_and_checks_the_model(run_quick_bench) -> None:
    # a low rate: the pairs reach the server together, not queued one after the other
    figures, results, _stdout = run_quick_bench("actions_bench", "--rate", "10", timeout=300)
    assert figures["bench"] == "actions" and figures["mode"] == "quick-rate10"
    load, floor, model = figures["load"], figures["floor"], figures["model"]
    assert load["errors"] == 0 and load["unsent"] == 0 and floor["errors"] == 0
    assert figures["setup_claims_failed"] == 0 and figures["plan_short"] == {}
    assert figures["contended_share"] >= 0.10
    assert model["violations"] == 0 and model["double_effects"] == 0, model
    assert model["events"] == model["answered_2xx"] > 0  # one event per 200, warm-up included
    assert sum(sum(c.values()) for c in model["pairs"].values()) > 0
    assert load["p99_ms"] > 0 and floor["p99_ms"] > 0
    text = results.read_text(encoding="utf-8")
    assert "## actions bench (quick-rate10)" in text and '"double_effects": 0' in text
