"""Every action is atomic against every other (DESIGN §3; issue 14, item 5).

Generated from the action table: every pair of actions whose source states overlap (computed
from ``MACHINE``; the rounds rotate over the shared states) races on its own request, 20
barrier rounds each, each racer with its own session against a database that really commits;
then each action against the deadline job and against re-homing on publish, 20 rounds each.
Each round must show exactly one effect per the model:

- every racer has read the request before any takes a lock (``Rendezvous``: a meeting point
  just before the runner's locks), so the lock order alone decides who goes first;
- the first performs its action as if alone (200, its events);
- the second acts as if run after the first: when the first changed the request's version
  (status, owner, assignee, offers: every action but ``reply``) it gets 409 ``conflict`` (or
  its ``taken`` code, ``already_claimed``) naming the current status and owner level, and
  writes nothing; otherwise (after a reply) it performs as if alone too;
- so nobody gets 403 because the other changed the request; the event chain stays whole
  (each event leaves the state the previous one entered; an escalation moves exactly one
  level) and every volunteer's load and points equal what the events say.

The three races of the issue's report are also fired at the app's routes. Checked by hand
once each: a runner without the row lock or without the version check fails the pair, job
and HTTP tests; a re-homing that locks FOR UPDATE deadlocks with a duplicate; assign and
reassign without the ``grids`` lock leave requests on retired grid rows. About 50 s on two
cores.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.db import Database
from layers.drafts.publish import publish_draft
from layers.drafts.service import create_draft
from layers.requests.access import Actor
from layers.requests.jobs import AUTO_CLOSE_AFTER, run_escalations
from layers.requests.states import TERMINAL
from tests.factories import token
from tests.pipeline.conftest import build_world
from tests.pipeline.races_support import (
    JOB_STATES,
    PAIRS,
    PEOPLE,
    RESTING,
    ROUNDS,
    Call,
    Event,
    Race,
    Racers,
    Rendezvous,
    check_chain,
    check_loss,
    check_totals,
    events_of,
    fire,
    race_against,
    race_pair,
    rows_of,
)

logger = logging.getLogger(__name__)


@pytest.fixture
def race(committed_db: Database) -> Iterator[Race]:
    with committed_db.session() as s:
        world = build_world(s, prefix="rc")
        s.execute(
            text("UPDATE volunteers SET load_limit = 100000 WHERE id = ANY(:v)"),
            {"v": [v.id for v in world.volunteers.values()]},
        )
        # the demo's own history is no business of the deadline job in these rounds
        s.execute(
            text(
                "UPDATE requests SET deadline_at = now() + interval '10 years'"
                " WHERE deadline_at < now() + interval '1 day'"
            )
        )
        s.execute(text("UPDATE requests SET resolved_at = now() WHERE status = 'resolved'"))
        users = dict(
            s.execute(
                text(
                    "SELECT replace(username, 'rc_', ''), id FROM users WHERE username LIKE 'rc_%'"
                )
            ).all()
        )
        users["volunteer"] = users.pop("vol")
        users["volunteer2"] = users.pop("vol2")
        s.commit()
    kind = Rendezvous()
    racers = Racers(committed_db, kind, workers=len(PEOPLE) + 2)
    r = Race(committed_db, world, users, 0, kind, racers)
    r.original = r.requests_in(["assigned"])[0]
    try:
        yield r
    finally:
        racers.close()


@pytest.mark.slow
def test_every_pair_of_actions_with_a_shared_source_state(race: Race) -> None:
    assert len(PAIRS) > 60  # the table's pairs, not a hand-picked few
    started = time.monotonic()
    seen: Counter = Counter()
    both_orders = 0
    for a, b in PAIRS:
        pair = race_pair(race, a, b)
        seen += pair
        both_orders += a != b and {a, b} <= {first for first, _ in pair}
    check_totals(race.db, race.world)
    logger.info(
        "both orders in %d of %d pairs of two actions", both_orders, sum(a != b for a, b in PAIRS)
    )
    logger.info(
        "%d pairs x %d rounds in %.1f s: %s", len(PAIRS), ROUNDS, time.monotonic() - started, seen
    )
    # the lock, not the order the threads start in, decides who goes first
    assert both_orders >= sum(a != b for a, b in PAIRS) // 2, both_orders


@pytest.mark.slow
def test_every_action_against_the_deadline_job(race: Race) -> None:
    def overdue(ids: list[int]) -> None:
        with race.db.session() as s:
            s.execute(
                text(
                    "UPDATE requests SET deadline_at = now() - interval '1 hour',"
                    " resolved_at = CASE WHEN status = 'resolved' THEN :old ELSE resolved_at END"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": ids, "old": datetime.now(UTC) - AUTO_CLOSE_AFTER - timedelta(hours=1)},
            )
            s.commit()

    def job(s: Session) -> dict[str, int]:
        return run_escalations(session=s)

    def by_job(e: Event) -> bool:
        return e.actor_kind == "system" and e.action in ("escalate", "auto_closed")

    seen = race_against(
        race, JOB_STATES, overdue, job, by_job, lambda rnd, i: 0.006 * ((rnd + i) % 20)
    )
    check_totals(race.db, race.world)
    logger.info("against the deadline job: %s", seen)
    assert any(k[1] == "conflict" for k in seen) and any(k[1] == "first" for k in seen), seen


@pytest.mark.slow
def test_every_action_against_rehoming_on_publish(race: Race) -> None:
    mini = race.world.mini
    drafts: list[int] = []
    with race.db.session() as s:  # the outline with the grids' own vertices: no UTM slivers
        s.execute(
            text(
                "UPDATE areas SET geom = (SELECT ST_Multi(ST_Union(geom)) FROM grids"
                " WHERE community_id = :c) WHERE id = :c"
            ),
            {"c": mini.community.id},
        )
        s.commit()

    def draft(ids: list[int]) -> None:
        with race.db.session() as s:
            drafts.append(
                create_draft(
                    session=s, community_code=mini.community.code, user_id=race.users["admin"]
                )
            )

    def publish(s: Session) -> dict[str, Any]:
        return publish_draft(session=s, draft_id=drafts[-1], user_id=race.users["admin"])

    def rehomed(e: Event) -> bool:
        return e.action == "rehome"

    # the publish re-homes some 10-50 ms after meeting the racers: stagger them around it
    seen = race_against(
        race, RESTING, draft, publish, rehomed, lambda rnd, i: 0.01 * ((rnd * 3 + i) % 15)
    )
    check_totals(race.db, race.world)
    logger.info("against re-homing on publish: %s", seen)
    assert any(k[1] == "conflict" for k in seen), seen
    # and after a publish every open request of the community sits on a live grid row
    with race.db.session() as s:
        stale = s.scalars(
            text(
                "SELECT r.id FROM requests r JOIN grids g ON g.id = r.grid_id"
                " WHERE g.community_id = :c AND g.generation_high IS NOT NULL"
                " AND NOT (r.status = ANY(:done))"
            ),
            {"c": mini.community.id, "done": sorted(TERMINAL)},
        ).all()
    assert stale == [], "open requests left on retired grid rows (an assign or reassign raced)"


# -- the three reported races, over HTTP -------------------------------------------------------
def test_the_reported_races_over_http(race: Race, committed_client: Any, monkeypatch) -> None:
    """Claim against a reassign to another volunteer, two escalations, a resolve by the
    assignee against an escalation, through the app's routes (the view loads nothing before
    the runner): one 200, the other 409 with the current state, never 403, one effect."""
    monkeypatch.setattr("layers.requests.service.REQUESTS", race.kind)
    client = committed_client
    app = client.application
    w = race.world
    heads = {role: token(client, f"rc_{role}") for role in ("admin", "community_staff", "vol")}
    plans = {
        "claim / reassign": ("assigned", ("claim", "vol", {}), ("reassign", "admin",
                             {"volunteer_id": w.volunteers["mid"].id, "reason": "改派"})),
        "escalate / escalate": ("assigned", ("escalate", "admin", {"reason": "上报"}),
                                ("escalate", "community_staff", {"reason": "上报"})),
        "resolve / escalate": ("in_progress", ("resolve", "vol", {"note": "已办结"}),
                               ("escalate", "admin", {"reason": "上报"})),
    }  # fmt: skip
    seen: Counter = Counter()
    for name, (state, *sides) in plans.items():
        ids = race.requests_in([state] * ROUNDS)
        before = {rid: len(evs) for rid, evs in events_of(race.db, ids).items()}
        results = []
        for rnd, rid in enumerate(ids):
            race.kind.new_round(len(sides))
            order = [0, 1] if rnd % 2 else [1, 0]  # who starts first alternates
            fired = fire(
                app, race.kind, rid, [(sides[i][0], heads[sides[i][1]], sides[i][2]) for i in order]
            )
            results.append([fired[order.index(i)] for i in (0, 1)])
        events, rows = events_of(race.db, ids), rows_of(race.db, ids)
        for rid, outcomes in zip(ids, results, strict=True):
            where = f"{name} (request {rid}): {outcomes}"
            new = events[rid][before[rid] :]
            check_chain(events[rid], where)
            won = [i for i, o in enumerate(outcomes) if o.status == 200]
            assert len(won) == 1, where
            action, lost = sides[won[0]][0], 1 - won[0]
            assert [e.action for e in new] == [action], (where, new)
            loser = sides[lost]
            check_loss(
                outcomes[lost], Call(loser[0], rid, Actor.system(), loser[2]), rows[rid], where
            )
            seen[(name, action, outcomes[lost].code)] += 1
    check_totals(race.db, race.world)
    logger.info("reported races over HTTP: %s", seen)
