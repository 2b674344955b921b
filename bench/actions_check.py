"""The actions bench's model check: what the database says happened, against what may.

After the load, the events written on the plan's requests (``request_events`` rows after the
snapshot) are replayed per request, in commit order, through a model written from DESIGN §3
(not from the action table, so a wrong table row shows): the states each action leaves and
enters, its load effect, one escalation level at a time. Findings:

- double effects (must be 0): ``two_claims_won``; ``escalation_skipped_level`` (an
  escalation that did not go exactly one level up); ``both_won`` (both actions of a
  contended pair took effect: DESIGN §3 and issue 14 want exactly one effect per race — two
  escalations from one observed level are the level skipped); ``stale_transition`` (an
  event whose from-state is not the state the request was in); ``extra_events`` (more than
  one event for a 200, or any for a refused action); ``stray_events`` (an event no action
  of the plan asked for); ``load_counter_off`` (a volunteer's ``active_load`` differing from
  the model's count by the end);
- other violations (must be 0 too): ``lost_effects`` (a 200 without its event),
  ``state_mismatch`` (the row's status, owner level or assignee differ from the replay),
  ``illegal_event`` (a transition the model does not allow), ``unstable_codes`` (a refusal
  without a code listed in ``layers/errors.py``);
- reported: each pair kind's outcomes (one won, both won, none won, unknown) and for each
  pair both of which won how the two met at the server (``_pair_outcome``: ``raced``, the
  second read the request before the first committed, so the runner's version check owed it
  a 409; ``serialised``, the second began on the state the first left, which only a version
  sent by the client could refuse; ``close``), timed by a bench-only trigger in the scratch
  database that notes when each event row is written (``install_clock``); the losers' codes,
  losers answered other than 409 (DESIGN: "a concurrent action gets 409"), single actions
  refused.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from bench.actions_plan import Unit
from layers.db import Database
from layers.errors import MESSAGES

logger = logging.getLogger(__name__)

SAME = "<same>"
TERMINAL = frozenset({"closed", "rejected", "duplicate", "withdrawn"})
WORK = frozenset({"assigned", "claimed", "in_progress"})
HOLDS_LOAD = frozenset({"claimed", "in_progress"})
LEVELS = ("grid", "community", "street", "district")
ALL = frozenset(
    {"submitted", "triage", "resolved", "rated", *WORK, *TERMINAL}
)  # every state of DESIGN §3
# action -> (states it leaves from, state it enters, load effect): DESIGN §3, by hand
MODEL: dict[str, tuple[frozenset[str], str, str | None]] = {
    "claim": (frozenset({"assigned"}), "claimed", "take"),
    "resolve": (WORK, "resolved", "release"),
    "reassign": (WORK, "assigned", "drop"),
    "escalate": (frozenset({"triage"}) | WORK, "assigned", "drop"),
    "decline_offer": (frozenset({"assigned"}), SAME, None),
    "give_back": (HOLDS_LOAD, "assigned", "drop"),
    "reject": (frozenset({"submitted", "triage", "assigned"}), "rejected", "drop"),
    "mark_duplicate": (frozenset({"submitted", "triage", "assigned"}), "duplicate", "drop"),
    "reply": (ALL - TERMINAL, SAME, None),
}
DOUBLE = (
    "two_claims_won",
    "escalation_skipped_level",
    "both_won",
    "stale_transition",
    "extra_events",
    "stray_events",
    "load_counter_off",
)
OTHER = ("lost_effects", "state_mismatch", "illegal_event", "unstable_codes")
EXAMPLES = 5
RACE_MARGIN_S = 0.005  # the second of a pair began this much before the first's event write


@dataclass(frozen=True)
class RowState:
    status: str
    owner_level: str
    assignee_id: int | None


@dataclass(frozen=True)
class Event:
    id: int
    request_id: int
    actor_user_id: int | None
    action: str
    from_status: str | None
    to_status: str
    owner_level: str | None
    at: float = 0.0  # epoch seconds: when the server began the action (``request_events.at``)
    written: float | None = None  # epoch seconds: when the row was inserted (the bench clock)


@dataclass(frozen=True)
class Outcome:
    """What the client saw of one shot: HTTP status (-1 failed, -2 unsent), "ok" or the
    error code, and when it was sent and answered (epoch seconds)."""

    status: int
    code: str
    sent: float = 0.0
    done: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    rows: dict[int, RowState]
    loads: dict[int, int]
    last_event_id: int


def snapshot(database: Database, request_ids: list[int], volunteer_ids: list[int]) -> Snapshot:
    """The requests' state, the volunteers' loads and the last event id, now."""
    with database.session() as s:
        rows = {
            r[0]: RowState(r[1], r[2], r[3])
            for r in s.execute(
                text(
                    "SELECT id, status, owner_level, assignee_id FROM requests WHERE id = ANY(:ids)"
                ),
                {"ids": request_ids},
            )
        }
        loads = dict(
            s.execute(
                text("SELECT id, active_load FROM volunteers WHERE id = ANY(:ids)"),
                {"ids": volunteer_ids},
            ).all()
        )
        last = s.scalar(text("SELECT coalesce(max(id), 0) FROM request_events"))
    return Snapshot(rows, loads, int(last))


CLOCK_SQL = (
    "CREATE TABLE bench_event_clock (event_id bigint PRIMARY KEY, written_at timestamptz NOT NULL)",
    "CREATE FUNCTION bench_event_clock() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO bench_event_clock VALUES (NEW.id, clock_timestamp()); RETURN NULL; END $$",
    "CREATE TRIGGER bench_event_clock AFTER INSERT ON request_events FOR EACH ROW"
    " EXECUTE FUNCTION bench_event_clock()",
)


def install_clock(database: Database) -> None:
    """Bench-only (the scratch database): note when each event row is inserted, the last
    write before its transaction commits, to tell a race from a serialised pair."""
    with database.session() as s:
        for statement in CLOCK_SQL:
            s.execute(text(statement))
        s.commit()


def remove_clock(database: Database) -> None:
    with database.session() as s:
        s.execute(text("DROP TRIGGER IF EXISTS bench_event_clock ON request_events"))
        s.commit()


def events_after(database: Database, request_ids: list[int], after_id: int) -> list[Event]:
    with database.session() as s:
        return [
            Event(*r)
            for r in s.execute(
                text(
                    "SELECT e.id, e.request_id, e.actor_user_id, e.action, e.from_status,"
                    " e.to_status, e.owner_level, extract(epoch FROM e.at)::float8,"
                    " extract(epoch FROM c.written_at)::float8 FROM request_events e"
                    " LEFT JOIN bench_event_clock c ON c.event_id = e.id"
                    " WHERE e.id > :after AND e.request_id = ANY(:ids) ORDER BY e.id"
                ),
                {"after": after_id, "ids": request_ids},
            )
        ]


class _Findings:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[int]] = defaultdict(list)
        self.double_requests: set[int] = set()

    def add(self, kind: str, key: int) -> None:
        """One finding on request ``key`` (a volunteer's id for ``load_counter_off``)."""
        self.counts[kind] += 1
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(key)
        if kind in DOUBLE and kind != "load_counter_off":
            self.double_requests.add(key)


def _replay(
    request_id: int,
    state: RowState,
    events: list[Event],
    volunteer_of: dict[int, int],
    delta: Counter[int],
    found: _Findings,
) -> RowState:
    status, level, assignee = state.status, state.owner_level, state.assignee_id
    for e in events:
        sources, target, load = MODEL.get(e.action, (frozenset(), "", None))
        if e.from_status != status:
            found.add("stale_transition", request_id)
        if status not in sources or e.to_status != (status if target == SAME else target):
            found.add("illegal_event", request_id)
        if e.action == "claim":
            if assignee is not None or status in HOLDS_LOAD:
                found.add("two_claims_won", request_id)
            assignee = volunteer_of.get(e.actor_user_id or -1)
            if assignee is not None:
                delta[assignee] += 1
        elif load in ("release", "drop"):
            if assignee is not None and status in HOLDS_LOAD:
                delta[assignee] -= 1
            if load == "drop":
                assignee = None
        if e.action == "escalate":
            up = LEVELS.index(level) + 1 if level in LEVELS else len(LEVELS)
            if up >= len(LEVELS) or e.owner_level != LEVELS[up]:
                found.add("escalation_skipped_level", request_id)
        status = e.to_status
        level = e.owner_level or level
    return RowState(status, level, assignee)


def _pair_outcome(
    u: Unit, outs: list[Outcome], mine: list[list[Event]], found: _Findings
) -> tuple[str, str | None, float | None]:
    """(one_won / both_won / none_won / unknown; for both_won how the two met — ``raced``:
    the second began at the server at least ``RACE_MARGIN_S`` before the first's event was
    written, so it read the request before the first committed and was due a 409;
    ``serialised``: it began after that write, on the state the first left; ``close``:
    in between; and that gap in ms)."""
    if any(o.status < 200 or o.status >= 500 for o in outs):
        return "unknown", None, None
    won = [i for i, o in enumerate(outs) if 200 <= o.status < 300]
    if len(won) < 2:
        return ("one_won" if won else "none_won"), None, None
    found.add("both_won", u.request_id)
    if not all(mine) or mine[0][0].written is None or mine[1][0].written is None:
        return "both_won", "unclear", None
    first, second = sorted(won, key=lambda i: mine[i][0].id)
    gap = (mine[first][0].written or 0.0) - mine[second][0].at
    how = "raced" if gap >= RACE_MARGIN_S else "serialised" if gap < 0 else "close"
    return "both_won", how, round(gap * 1000.0, 1)


def check(
    units: list[Unit],
    outcomes: list[Outcome],
    users: dict[str, int],
    before: Snapshot,
    events: list[Event],
    after: Snapshot,
) -> dict[str, Any]:
    """Findings of the model check. ``outcomes``: one per shot in plan order (unit by unit);
    ``users``: username -> user id; ``before`` / ``after``: the snapshots around the load;
    ``events``: what was written in between."""
    found = _Findings()
    volunteer_of = {
        users[s.actor]: s.volunteer_id
        for u in units
        for s in u.shots
        if s.volunteer_id is not None and s.actor in users
    }
    by_key: dict[tuple[int, int | None, str], list[Event]] = defaultdict(list)
    by_request: dict[int, list[Event]] = defaultdict(list)
    for e in events:
        by_key[(e.request_id, e.actor_user_id, e.action)].append(e)
        by_request[e.request_id].append(e)
    matched: set[int] = set()
    loser_codes: dict[str, Counter[str]] = defaultdict(Counter)
    refused_singles: Counter[str] = Counter()
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    both_won: list[dict[str, Any]] = []
    unknown = 0
    k = 0
    for u in units:
        outs = outcomes[k : k + len(u.shots)]
        k += len(u.shots)
        mine = [by_key.get((u.request_id, users.get(s.actor), s.action), []) for s in u.shots]
        for o, evs in zip(outs, mine, strict=True):
            matched.update(e.id for e in evs)
            if 200 <= o.status < 300:
                if not evs:
                    found.add("lost_effects", u.request_id)
                elif len(evs) > 1:
                    found.add("extra_events", u.request_id)
            elif 400 <= o.status < 500:
                if evs:
                    found.add("extra_events", u.request_id)
                if o.code not in MESSAGES:
                    found.add("unstable_codes", u.request_id)
                if u.contended:
                    loser_codes[u.kind][f"{o.status} {o.code}"] += 1
                else:
                    refused_singles[f"{u.kind}: {o.status} {o.code}"] += 1
            else:  # 5xx, failed or unsent: the client does not know the outcome
                unknown += 1
        if u.contended:
            outcome, how, gap_ms = _pair_outcome(u, outs, mine, found)
            pairs[u.kind][outcome] += 1
            if how is not None:
                pairs[u.kind][f"both_won_{how}"] += 1
                if len(both_won) < EXAMPLES * 2:
                    both_won.append(
                        {"request": u.request_id, "kind": u.kind, "how": how, "gap_ms": gap_ms}
                    )
    for e in events:
        if e.id not in matched:
            found.add("stray_events", e.request_id)
    delta: Counter[int] = Counter()
    for rid, state in before.rows.items():
        model = _replay(rid, state, by_request.get(rid, []), volunteer_of, delta, found)
        if after.rows.get(rid) != model:
            found.add("state_mismatch", rid)
    for vid, load in before.loads.items():
        if after.loads.get(vid) != load + delta[vid]:
            found.add("load_counter_off", vid)
    losers = sum(loser_codes.values(), Counter())
    return {
        # requests with a double effect, plus volunteers whose load counter is off
        "double_effects": len(found.double_requests) + found.counts["load_counter_off"],
        "findings": {k: found.counts[k] for k in (*DOUBLE, *OTHER)},
        "violations": sum(found.counts[k] for k in OTHER),
        "examples": dict(found.examples),
        "pairs": {kind: dict(c) for kind, c in sorted(pairs.items())},
        "both_won": both_won,
        "loser_codes": {kind: dict(c) for kind, c in sorted(loser_codes.items())},
        "losers_not_409": sum(n for c, n in losers.items() if not c.startswith("409 ")),
        "refused_singles": dict(refused_singles),
        "unknown_outcomes": unknown,
        "answered_2xx": sum(1 for o in outcomes if 200 <= o.status < 300),
        "events": len(events),
    }
