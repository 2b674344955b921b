"""The one event writer: every change of a request's status and every history row.

Four ways of writing, all derived from the action table (``layers.requests.workflow``):

- ``write_step``: the runner's path, one request at a time (ORM row locked by the runner);
- ``INTAKE_INSERT_SQL`` with ``intake_events``: intake's single INSERT statement, whose event
  chain (submit, then assign or triage) comes from ``MACHINE.chain``;
- ``history_sql``: the bulk import's set-based INSERT, whose statuses and event chains are
  generated from ``MACHINE.chain`` for each kind of historical outcome;
- ``record_rehome``: re-homing on publish, the table's same-state ``rehome`` action.

No other module writes ``request_events`` or ``requests.status`` (a test scans for it), and
PostgreSQL refuses any (action, from, to) the table does not list (migration 0007).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from graphlib import TopologicalSorter
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.pipeline.runner import Step
from layers.requests.models import Notification, RequestEvent
from layers.requests.workflow import MACHINE

logger = logging.getLogger(__name__)

_EVENT_COLUMNS = (
    "request_id, at, actor_user_id, actor_kind, action, from_status, to_status, owner_level,"
    " note, data"
)


def write_step(session: Session, step: Step) -> int:
    """Set the request's new status and append the step's event; returns the event id."""
    req = step.row
    req.status = step.to_status
    req.updated_at = step.now
    event = RequestEvent(
        request_id=req.id,
        at=step.now,
        actor_user_id=step.actor.user_id,
        actor_kind=step.actor.kind,
        action=step.action.event_name,
        from_status=step.from_status,
        to_status=step.to_status,
        owner_level=req.owner_level,
        note=step.note,
        data=step.data,
    )
    session.add(event)
    session.flush()
    return event.id


def write_outbox(session: Session, event_id: int, kind: str, rows: list[dict]) -> None:
    """Outbox rows ``{"u": user, "v": volunteer}`` for one event."""
    session.add_all(
        Notification(
            event_id=event_id, recipient_user_id=r["u"], recipient_volunteer_id=r["v"], kind=kind
        )
        for r in rows
    )


# -- intake -----------------------------------------------------------------------------------
# Intake writes in one statement: the request, its first events in order, the offers, and the
# outbox rows of the event someone must act on (``notify`` names its action).
INTAKE_INSERT_SQL = text(
    "WITH r AS (INSERT INTO requests (id, number, ticket_hash, category, text, contact_name,"
    " contact_phone, status, owner_level, grid_id, community_id, building_code, deadline_at,"
    " first_deadline_at, source, geom, created_at, updated_at)"
    " VALUES (:id, :number, :ticket_hash, :category, :text, :contact_name, :contact_phone,"
    " :status, :owner_level, :grid_id, :community_id, :building_code, :deadline, :deadline,"
    " :source, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :now, :now) RETURNING id),"
    f" e AS (INSERT INTO request_events ({_EVENT_COLUMNS})"
    " SELECT r.id, :now, x.actor_user_id, x.actor_kind, x.action, x.from_status, x.to_status,"
    " :owner_level, x.note, x.data FROM r, jsonb_to_recordset(CAST(:events AS jsonb)) AS"
    " x(ord int, actor_user_id bigint, actor_kind text, action text, from_status text,"
    " to_status text, note text, data jsonb) ORDER BY x.ord RETURNING id, action),"
    " o AS (INSERT INTO request_offers (request_id, volunteer_id, rank, distance_m,"
    " distance_method, offered_at) SELECT r.id, x.v, x.rank, x.d, :method, :now FROM r,"
    " unnest(CAST(:offer_ids AS bigint[]), CAST(:offer_ranks AS int[]),"
    " CAST(:offer_m AS float8[])) AS x(v, rank, d))"
    " INSERT INTO notifications (event_id, recipient_user_id, recipient_volunteer_id, kind)"
    " SELECT e.id, x.u, x.v, :kind FROM e, jsonb_to_recordset(CAST(:recipients AS jsonb)) AS"
    " x(u bigint, v bigint) WHERE e.action = :notify"
)


def intake_events(
    second: str,
    *,
    resident_user_id: int | None,
    submit_data: dict[str, Any],
    note: str | None,
    data: dict[str, Any],
) -> tuple[str, str]:
    """(the request's status, the JSON of its first events): ``submit`` by the resident
    (or their account), then ``second`` (``assign`` or ``triage``) by the system."""
    chain = MACHINE.chain(("submit", second))
    actors = [
        (resident_user_id, "user" if resident_user_id else "resident", None, submit_data),
        (None, "system", note, data),
    ]
    rows = [
        {
            "ord": i,
            "actor_user_id": user,
            "actor_kind": kind,
            "action": action,
            "from_status": from_status,
            "to_status": to_status,
            "note": step_note,
            "data": step_data,
        }
        for i, ((action, from_status, to_status), (user, kind, step_note, step_data)) in enumerate(
            zip(chain, actors, strict=True)
        )
    ]
    return chain[-1][2], json.dumps(rows, ensure_ascii=False)


# -- bulk import of history ------------------------------------------------------------------
def _sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def history_sql(
    chains: Mapping[tuple[Any, bool, bool], Sequence[str]],
    *,
    source: str,
    columns: Mapping[str, str],
    order_by: str,
    source_key: tuple[str, str, str],
    at_sql: Mapping[str, str],
    actor_kind: Mapping[str, str],
    data_param: str = ":data",
) -> str:
    """Two CTEs, ``ins`` and ``ev``, that write imported history set-based: the requests of
    CTE ``source`` (``columns``: request column -> SQL over a source row; the status is
    added here) in ``order_by`` order, and every request's chain of events.

    ``chains`` maps (outcome, triaged, rated) to the actions a request of that kind went
    through (each step legal in the table); ``source_key`` is the SQL of those three over a
    source row. The status is the chain's last; each chain's events are written in order at
    the times ``at_sql`` gives (SQL over ``ins``), by the actors of ``actor_kind`` (both keyed
    by event name; actor default: the system)."""
    # keys whose chain does not depend on "rated" are tested without it
    merged: dict[tuple[Any, bool, bool | None], Sequence[str]] = {}
    for (outcome, triaged, rated), actions in chains.items():
        other = chains.get((outcome, triaged, not rated))
        key = (outcome, triaged, None if other == actions else rated)
        merged[key] = actions
    keys = list(merged)
    if len(keys) > 30:
        raise ValueError("history_sql: at most 30 kinds of chain (one bit each)")
    steps = {key: MACHINE.chain(merged[key]) for key in keys}
    finals = {key: s[-1][2] for key, s in steps.items()}
    # a written request's chain is found again from (status, triaged, rated): one per key
    found_by = [(finals[k], k[1], k[2]) for k in keys]
    if len(set(found_by)) != len(found_by):
        raise ValueError("history_sql: two chains end in the same status for the same kind")
    outcome_sql, triaged_sql, rated_sql = source_key
    status_sql = _case(
        [(f"{outcome_sql} = {_sql_value(k[0])}", triaged_sql, rated_sql) for k in keys],
        keys,
        [_sql_literal(finals[k]) for k in keys],
    )
    # one order of all distinct steps that keeps every chain's order
    order: TopologicalSorter = TopologicalSorter()
    for s in steps.values():
        for i, item in enumerate(s):
            order.add(item, *s[:i])
    masks: dict[tuple, int] = {}
    for bit, key in enumerate(keys):
        for item in steps[key]:
            masks[item] = masks.get(item, 0) | (1 << bit)
    values = ",\n  ".join(
        f"({_sql_literal(action)}, {_sql_literal(from_s)}, {_sql_literal(to_s)},"
        f" {at_sql[action]}, {_sql_literal(actor_kind.get(action, 'system'))}, {masks[item]})"
        for item in order.static_order()
        for action, from_s, to_s in [item]
    )
    chain_of = _case(
        [
            (
                f"ins.status = {_sql_literal(finals[k])}",
                "ins.grid_id IS NULL",
                "ins.rating IS NOT NULL",
            )
            for k in keys
        ],
        keys,
        [str(bit) for bit in range(len(keys))],
    )
    returning = {"id", "status", "owner_level", "grid_id", "rating"}
    returning |= {sql.removeprefix("ins.") for sql in at_sql.values()}
    insert_sql = (
        f"ins AS (INSERT INTO requests ({', '.join(columns)}, status)"
        f" SELECT {', '.join(columns.values())}, {status_sql} FROM {source}"
        f" ORDER BY {order_by} RETURNING {', '.join(sorted(returning))})"
    )
    events_sql = (
        f"ev AS (INSERT INTO request_events ({_EVENT_COLUMNS})"
        " SELECT ins.id, e.at, NULL, e.actor_kind, e.action, e.from_status, e.to_status,"
        f" ins.owner_level, NULL, CAST({data_param} AS jsonb)"
        f" FROM ins CROSS JOIN LATERAL (SELECT {chain_of} AS bit) k"
        f" CROSS JOIN LATERAL (VALUES\n  {values}\n)"
        " AS e(action, from_status, to_status, at, actor_kind, mask)"
        " WHERE (e.mask >> k.bit) & 1 = 1 RETURNING 1)"
    )
    return f"{insert_sql},\n{events_sql}"


def _case(
    tests: Sequence[tuple[str, str, str]],
    keys: Sequence[tuple[Any, bool, bool | None]],
    results: Sequence[str],
) -> str:
    """CASE choosing ``results[i]`` where test ``(first, triaged, rated)`` holds for key i
    (a key's ``rated`` of None: not tested)."""
    whens = [
        f"WHEN {first} AND ({triaged}) = {key[1]}"
        + (f" AND ({rated}) = {key[2]}" if key[2] is not None else "")
        + f" THEN {result}"
        for (first, triaged, rated), key, result in zip(tests, keys, results, strict=True)
    ]
    return "CASE " + " ".join(whens) + " END"


def _sql_value(value: Any) -> str:
    return str(int(value)) if isinstance(value, int | bool) else _sql_literal(str(value))


# -- re-homing on publish ---------------------------------------------------------------------
def record_rehome(
    session: Session,
    *,
    moves: Sequence[tuple[int, int]],
    statuses: Sequence[str],
    owner_levels: Sequence[str],
    notes: Sequence[str],
    data: Iterable[dict[str, Any]],
    user_id: int | None,
) -> None:
    """Move requests to new grid rows (``moves``: (request id, new grid id)) and append one
    ``rehome`` event each, in two statements (an executemany cost ~50 ms per 1.4k); by the
    planner ``user_id``, or by the system (None: the deadline job's sweep)."""
    bad = {st for st in statuses if MACHINE.next_status(st, "rehome") is None}
    if bad:
        raise ValueError(f"rehome is not allowed from {sorted(bad)}")
    ids = [m[0] for m in moves]
    session.execute(
        text(
            "UPDATE requests r SET grid_id = m.new_id, updated_at = now() FROM"
            " (SELECT unnest(CAST(:ids AS bigint[])) AS id,"
            " unnest(CAST(:new AS bigint[])) AS new_id) m"
            " WHERE r.id = m.id"
        ),
        {"ids": ids, "new": [m[1] for m in moves]},
    )
    action = MACHINE.action("rehome").event_name
    session.execute(
        text(
            f"INSERT INTO request_events ({_EVENT_COLUMNS})"
            " SELECT e.r, now(), :u, :kind, :action, e.st, e.st, e.ol, e.note,"
            " CAST(e.data AS jsonb)"
            " FROM unnest(CAST(:r AS bigint[]), CAST(:st AS text[]), CAST(:ol AS text[]),"
            " CAST(:note AS text[]), CAST(:data AS text[])) AS e(r, st, ol, note, data)"
            " ORDER BY e.r"
        ),
        {
            "u": user_id,
            "kind": "system" if user_id is None else "user",
            "action": action,
            "r": ids,
            "st": list(statuses),
            "ol": list(owner_levels),
            "note": list(notes),
            "data": [json.dumps(d) for d in data],
        },
    )
