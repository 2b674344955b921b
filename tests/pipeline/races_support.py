"""The race harness for ``test_races.py``: the racers (a rendezvous before the locks, worker
threads with their own sessions), the per-round setup of requests in states, and the model's
checks of outcomes and event histories."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth.models import User
from layers.auth.permissions import grant_for
from layers.auth.service import load_principal
from layers.db import Database
from layers.errors import MinqingError
from layers.pipeline.runner import perform
from layers.requests.access import Actor
from layers.requests.entity import REQUESTS, RequestKind
from layers.requests.intake import submit_request
from layers.requests.schemas import parse_intake
from layers.requests.states import ESCALATION_ORDER, HOLDS_LOAD
from layers.requests.workflow import MACHINE
from tests.factories import X0, Y0
from tests.pipeline.conftest import CENTRE, World

logger = logging.getLogger(__name__)


ROUNDS = 20
# The states a request rests in between transactions (intake leaves ``submitted`` and a
# rating leaves ``rated`` within their own transaction).
RESTING = ("assigned", "claimed", "in_progress", "triage", "resolved")
GAP = (X0 + 0.025, Y0 + 0.005)  # inside the community without grids: a triage request
PEOPLE = tuple(a.name for a in MACHINE.actions if a.permission)  # what people perform
JOB_ACTIONS = ("escalate", "auto_close")  # what the deadline job performs


def shared_states(a: str, b: str) -> tuple[str, ...]:
    """The resting states both actions leave from, by the action table."""
    both = set(MACHINE.action(a).sources) & set(MACHINE.action(b).sources)
    return tuple(s for s in RESTING if s in both)


PAIRS = [
    (a, b) for i, a in enumerate(PEOPLE) for b in PEOPLE[i:] if shared_states(a, b)
]  # every pair whose source states overlap, an action with itself included
JOB_STATES = tuple(s for s in RESTING if any(s in MACHINE.action(a).sources for a in JOB_ACTIONS))


# -- the racers --------------------------------------------------------------------------------
class Rendezvous(RequestKind):
    """The requests' kind with a meeting point just before the locks: every racer of a round
    has read the request (its version, the actor's scope) before any of them takes the row
    lock, or the action's own locks that come first (``grids``). A racer refused before that
    (a wrong body, say) still arrives, so nobody waits for it."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(1)
        self.delays: dict[int, float] = {}  # request id -> seconds to wait after meeting
        self._local = threading.local()

    def new_round(self, parties: int, delays: dict[int, float] | None = None) -> None:
        self.barrier = threading.Barrier(parties)
        self.delays = delays or {}

    def enter(self, key: int | None = None) -> None:
        self._local.key, self._local.arrived = key, False

    def arrive(self) -> None:
        if not getattr(self._local, "arrived", False):
            self._local.arrived = True
            self.barrier.wait(timeout=60)
            time.sleep(self.delays.get(self._local.key, 0.0))

    def lock(self, session: Session, names: tuple[str, ...]) -> None:
        self.arrive()
        super().lock(session, names)

    def load(self, session: Session, key: int, *, lock: bool = True) -> Any:
        if lock:
            self.arrive()
        return super().load(session, key, lock=lock)


@dataclass(frozen=True)
class Call:
    """One racer: an action on a request by an actor with a body."""

    action: str
    rid: int
    actor: Actor
    body: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status: int  # 200, or the error's HTTP status (500: not a MinqingError)
    code: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Racers:
    """Worker threads, each with its own session (its connection goes back to the pool after
    each transaction and is reused), running the calls of a round at the same time."""

    def __init__(self, database: Database, kind: Rendezvous, workers: int) -> None:
        self.database = database
        self.kind = kind
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="racer")
        self._local = threading.local()
        self._sessions: list[Session] = []
        self._lock = threading.Lock()

    def session(self) -> Session:
        if not hasattr(self._local, "session"):
            self._local.session = self.database.sessions()
            with self._lock:
                self._sessions.append(self._local.session)
        return self._local.session

    def perform(self, call: Call) -> Outcome:
        self.kind.enter(call.rid)
        try:
            perform(
                self.kind,
                self.session(),
                call.rid,
                call.action,
                actor=call.actor,
                now=datetime.now(UTC),
                body=call.body,
                options={"k": 5},
            )
            return Outcome(200)
        except MinqingError as exc:
            return Outcome(exc.status, exc.code, dict(exc.details))
        except Exception as exc:  # a deadlock or a lost connection: reported, never hidden
            self.session().rollback()
            return Outcome(500, type(exc).__name__, {"error": str(exc)[:300]})
        finally:
            self.kind.arrive()

    def system(self, work: Callable[[Session], Any]) -> Any:
        """Set-based work (the deadline job, a publish) that meets the racers first."""
        self.kind.enter()
        self.kind.arrive()
        return work(self.session())

    def round(self, calls: list[Call], extra: Callable[[Session], Any] | None = None) -> Any:
        """Run the calls (and ``extra``) at once; their outcomes (and ``extra``'s result)."""
        futures = [self.pool.submit(self.perform, c) for c in calls]
        side = self.pool.submit(self.system, extra) if extra is not None else None
        outcomes = [f.result(timeout=120) for f in futures]
        return (outcomes, side.result(timeout=120)) if side is not None else outcomes

    def close(self) -> None:
        self.pool.shutdown()
        for s in self._sessions:
            s.close()


# -- the world and its requests ---------------------------------------------------------------
@dataclass
class Race:
    """The mini district over a committed database: people, requests, the racers."""

    db: Database
    world: World
    users: dict[str, int]  # role -> user id
    original: int  # an open request a duplicate may point to
    kind: Rendezvous
    racers: Racers
    actors: dict[tuple[str, str], Actor] = field(default_factory=dict)

    def actor(self, role: str, action: str, rid: int) -> Actor:
        """The actor with their grant for ``action`` (what the action's route would give)."""
        if role == "resident":
            return Actor.resident(rid)
        if (role, action) not in self.actors:
            self.actors[role, action] = self._actor(role, action)
        return self.actors[role, action]

    def _actor(self, role: str, action: str) -> Actor:
        with self.db.session() as s:
            user = s.get(User, self.users[role])
            principal = load_principal(session=s, user_id=user.id, token_version=user.token_version)
        permission = MACHINE.action(action).permission
        assert principal is not None and permission is not None
        return Actor(kind="user", user_id=user.id, grant=grant_for(permission, principal))

    def requests_in(self, states: list[str]) -> list[int]:
        """New requests, one in each of ``states``: intake, then the actions that lead there
        (one transaction each, through the runner)."""
        ids = []
        with self.db.session() as s:
            for state in states:
                lon, lat = GAP if state == "triage" else CENTRE
                body = {"lon": lon, "lat": lat, "category": "elderly_care", "text": "楼道灯坏了"}
                rid = submit_request(session=s, intake=parse_intake(body), k=5).request_id
                path = {
                    "claimed": ["claim"],
                    "in_progress": ["claim", "start"],
                    "resolved": ["resolve"],
                }.get(state, [])
                for name in path:
                    role = "volunteer" if name in ("claim", "start") else "grid_leader"
                    perform(
                        REQUESTS,
                        s,
                        rid,
                        name,
                        actor=self.actor(role, name, rid),
                        now=datetime.now(UTC),
                        body={"note": "已办结"} if name == "resolve" else {},
                    )
                ids.append(rid)
        return ids


def how(race: Race, action: str, state: str, slot: int, rnd: int, rid: int) -> Call:
    """Who performs ``action`` on a request in ``state`` and with what body: the first or
    second racer of a pair (``slot``), two different people where the table lets two."""
    w = race.world
    triage = state == "triage"
    staff = ("street_staff", "admin") if triage else ("grid_leader", "community_staff")
    role, body = staff[slot], {"reason": "需要处理", "note": "已处理"}
    if action == "assign":
        role, body = ("street_staff", "admin")[slot], {"grid_code": w.mini.west.code}
    elif action in ("claim", "decline_offer"):
        role = ("volunteer", "volunteer2")[slot]
    elif action in ("start", "give_back"):
        role = ("volunteer", "grid_leader")[slot] if action == "start" else "volunteer"
    elif action == "resolve" and slot == 1 and state in HOLDS_LOAD:
        role = "volunteer"  # the assignee resolves while staff does something else
    elif action in ("rate", "withdraw"):
        role = "resident"
        body = {"rating": (5, 1)[slot]} if action == "rate" else {}
    elif action == "reopen":
        role = ("community_staff", "admin")[slot]
    elif action == "reassign":
        role = ("admin", "grid_leader")[slot]
        if slot == 0 and rnd % 2:
            body = {"grid_code": w.mini.east.code, "reason": "转东网格"}
        else:
            target = w.volunteers["far" if slot == 0 else "mid"].id
            body = {"volunteer_id": target, "reason": "改派"}
    elif action == "mark_duplicate":
        role = ("street_staff", "admin")[slot]
        body = {"duplicate_of": race.original, "reason": "重复反映"}
    return Call(action, rid, race.actor(role, action, rid), body)


# -- what the database says -----------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    id: int
    action: str
    actor_kind: str
    from_status: str | None
    to_status: str
    owner_level: str
    data: dict[str, Any]


def events_of(db: Database, ids: list[int]) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {i: [] for i in ids}
    with db.session() as s:
        for r in s.execute(
            text(
                "SELECT request_id, id, action, actor_kind, from_status, to_status, owner_level,"
                " data FROM request_events WHERE request_id = ANY(:ids) ORDER BY id"
            ),
            {"ids": ids},
        ):
            out[r.request_id].append(Event(*r[1:7], r.data or {}))
    return out


def rows_of(db: Database, ids: list[int]) -> dict[int, Any]:
    with db.session() as s:
        return {
            r.id: r
            for r in s.execute(
                text(
                    "SELECT id, status, owner_level, grid_id, assignee_id FROM requests"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            )
        }


def check_chain(events: list[Event], where: str) -> None:
    """Each event leaves the state the previous one entered; an escalation moves one level
    from the level the previous event left."""
    levels = [lvl.value for lvl in ESCALATION_ORDER]
    for before, e in pairwise(events):
        assert e.from_status == before.to_status, (where, "broken chain", before, e)
        if e.action == "escalate":
            assert e.data.get("from_level") == before.owner_level, (where, "skipped", before, e)
            assert levels.index(e.owner_level) == levels.index(before.owner_level) + 1, (where, e)


def event_names(call: Call) -> list[str]:
    """The events one call writes when it succeeds (a rating brings its follow-up)."""
    names = [MACHINE.action(call.action).event_name]
    if call.action == "rate":
        names.append("close" if call.body["rating"] >= 3 else "reopen")
    return names


def changes_version(action: str) -> bool:
    """Whether a successful ``action`` changes what another racer acted upon: every row
    whose effects touch the status, owner, assignee or offers (all but ``reply``)."""
    a = MACHINE.action(action)
    return a.target != "<same>" or a.handler is not None or a.load is not None


def expected_loss(call: Call, row: Any) -> str:
    """The loser's code: its ``taken`` code when someone else took the request, else
    ``conflict``."""
    taken = MACHINE.action(call.action).taken
    if taken and (row.status in HOLDS_LOAD or row.assignee_id is not None):
        return taken
    return "conflict"


def check_loss(outcome: Outcome, call: Call, row: Any, where: str) -> None:
    assert (outcome.status, outcome.code) == (409, expected_loss(call, row)), (where, outcome)
    details = outcome.details
    assert (details.get("status"), details.get("owner_level")) == (
        row.status,
        row.owner_level,
    ), (where, "the current state", outcome, row)


def check_totals(db: Database, world: World) -> None:
    """Every volunteer's load is their open work and their points what the events credit."""
    with db.session() as s:
        for v in world.volunteers.values():
            load, points = s.execute(
                text("SELECT active_load, points FROM volunteers WHERE id = :v"), {"v": v.id}
            ).one()
            held = s.scalar(
                text(
                    "SELECT count(*) FROM requests WHERE assignee_id = :v AND status = ANY(:holds)"
                ),
                {"v": v.id, "holds": sorted(HOLDS_LOAD)},
            )
            credited = s.scalar(
                text(
                    "SELECT coalesce(sum((data->>'points')::int), 0) FROM request_events"
                    " WHERE (data->>'volunteer_id')::bigint = :v AND data ? 'points'"
                ),
                {"v": v.id},
            )
            assert (load, points) == (held, credited), (v.name, load, held, points, credited)


# -- pairs of actions ----------------------------------------------------------------------
def race_pair(race: Race, a: str, b: str) -> Counter:
    """20 rounds of ``a`` against ``b``, each on its own request in a shared state."""
    states = shared_states(a, b)
    plan = [states[rnd % len(states)] for rnd in range(ROUNDS)]
    ids = race.requests_in(plan)
    before = {rid: len(evs) for rid, evs in events_of(race.db, ids).items()}
    rounds = []
    for rnd, (state, rid) in enumerate(zip(plan, ids, strict=True)):
        calls = [how(race, a, state, 0, rnd, rid), how(race, b, state, 1, rnd, rid)]
        race.kind.new_round(2)
        rounds.append((calls, race.racers.round(calls)))
    events, rows = events_of(race.db, ids), rows_of(race.db, ids)
    seen: Counter = Counter()
    for rnd, (rid, (calls, outcomes)) in enumerate(zip(ids, rounds, strict=True)):
        where = f"{a} vs {b}, round {rnd} ({plan[rnd]}, request {rid}): {outcomes}"
        new = events[rid][before[rid] :]
        check_chain(events[rid], where)
        won = [i for i, o in enumerate(outcomes) if o.status == 200]
        assert won, (where, "nobody won")
        # who locked first: the one whose event comes first
        first = won[0] if len(won) == 1 else min(won, key=lambda i: _first_event(new, calls[i]))
        second = 1 - first
        expected = event_names(calls[first])
        if changes_version(calls[first].action):
            check_loss(outcomes[second], calls[second], rows[rid], where)
        else:  # after a reply the other acts as if alone
            assert outcomes[second].status == 200, (where, "the reply changed nothing")
            expected += event_names(calls[second])
        assert [e.action for e in new] == expected, (where, "effects", new)
        if rows[rid].status != new[-1].to_status:
            raise AssertionError((where, "the status is the last event's", rows[rid]))
        seen[(calls[first].action, outcomes[second].code or "ok")] += 1
    return seen


def _first_event(new: list[Event], call: Call) -> int:
    name = MACHINE.action(call.action).event_name
    return next(i for i, e in enumerate(new) if e.action == name)


# -- the deadline job and re-homing on publish ---------------------------------------------
def state_for(action: str, states: tuple[str, ...], rnd: int) -> str:
    """A resting state ``action`` leaves from that is also one of ``states`` (rotating)."""
    mine = [s for s in states if s in MACHINE.action(action).sources]
    assert mine, (action, states)
    return mine[rnd % len(mine)]


def race_against(
    race: Race,
    states: tuple[str, ...],
    prepare: Callable[[list[int]], None],
    system: Callable[[Session], Any],
    system_event: Callable[[Event], bool],
    delay: Callable[[int, int], float],
) -> Counter:
    """Each round: every person's action on its own request, against one run of ``system``
    (which must meet them first); then per request either the action first (200, then the
    system's event only if its state still calls for it) or the system first (the action 409
    and nothing of it written)."""
    seen: Counter = Counter()
    for rnd in range(ROUNDS):
        plan = [state_for(a, states, rnd) for a in PEOPLE]
        ids = race.requests_in(plan)
        prepare(ids)
        before = {rid: len(evs) for rid, evs in events_of(race.db, ids).items()}
        calls = [
            how(race, a, state, 0, rnd, rid)
            for a, state, rid in zip(PEOPLE, plan, ids, strict=True)
        ]
        race.kind.new_round(len(calls) + 1, {rid: delay(rnd, i) for i, rid in enumerate(ids)})
        t0 = time.monotonic()
        outcomes, _ = race.racers.round(calls, system)
        logger.info("round %d: %.3f s", rnd, time.monotonic() - t0)
        events, rows = events_of(race.db, ids), rows_of(race.db, ids)
        for call, outcome in zip(calls, outcomes, strict=True):
            rid = call.rid
            where = f"{call.action} round {rnd} (request {rid}): {outcome}"
            new = events[rid][before[rid] :]
            check_chain(events[rid], where)
            mine = [e for e in new if not system_event(e)]
            theirs = [e for e in new if system_event(e)]
            assert len(theirs) <= 1, (where, "the system acted twice", new)
            if outcome.status == 200:
                assert [e.action for e in mine] == event_names(call), (where, new)
                assert new[: len(mine)] == mine, (where, "the system went first", new)
                seen[(call.action, "first" if not theirs else "first, then the system")] += 1
            else:
                check_loss(outcome, call, rows[rid], where)
                assert mine == [] and len(theirs) == 1, (where, "loser wrote", new)
                seen[(call.action, outcome.code)] += 1
        settle(race, ids)
    return seen


def settle(race: Race, ids: list[int]) -> None:
    """Leave the round's requests out of the next rounds' job runs."""
    with race.db.session() as s:
        s.execute(
            text(
                "UPDATE requests SET deadline_at = now() + interval '10 years',"
                " resolved_at = CASE WHEN status = 'resolved' THEN now() ELSE resolved_at END"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        s.commit()


def fire(
    app: Any, kind: Rendezvous, rid: int, calls: list[tuple[str, dict[str, str], dict[str, Any]]]
) -> list[Outcome]:
    """POST the calls on request ``rid`` at once, each from its own thread and client."""
    out: list[Outcome] = [Outcome(0)] * len(calls)

    def go(i: int, action: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        kind.enter(rid)
        try:
            r = app.test_client().post(
                f"/api/v1/requests/{rid}/{action}", headers=headers, json=body
            )
            err = (r.get_json() or {}).get("error") or {}
            out[i] = Outcome(r.status_code, err.get("code"), err.get("details") or {})
        finally:
            kind.arrive()

    threads = [threading.Thread(target=go, args=(i, *c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out
