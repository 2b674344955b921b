"""The one runner: performs any row of any action table, in the same order every time.

1. the body is parsed by the row's schema (400: a malformed body is refused whoever sends
   it, before the entity is even loaded);
2. the actor must reach the entity in one of the row's ``scope`` ways (403 otherwise; the
   system always may);
3. the row's ``check`` looks up what the action needs (the grid it names, the volunteer, the
   level above; 400 / 422 / 409 with the action's own code);
4. the transition must be legal from the current state (409 ``illegal_transition`` naming
   the allowed actions, or the row's ``taken`` code when someone else got there first);
5. the declared load effect (taking or giving back a slot of the assignee's load, first, so
   that a released volunteer counts as free to whatever the handler does next); the row's
   handler with its own effects; the other declared effects (points, deadline, timestamp);
   the entity's one event writer, which records the state change and the event; the outbox
   rows; then any follow-up action the handler asked for (a low rating reopens), each
   performed by the system through this same runner.

An entity kind (``EntityKind``) supplies how to load, reach, change and record its rows;
``perform`` wraps the whole in one transaction over a row lock, so every action is atomic
against every other. The lock alone would let the loser of a race act on a state it never
saw (a second escalation skipping a level, a resolve refused 403 because an escalation took
the assignee away): ``perform`` therefore reads the entity's ``version`` (for a request its
status, owner, assignee and offers) before it waits for the lock, checks the actor's scope on
what it read, and answers 409 ``conflict`` with the current state (or the row's ``taken``
code) when the locked row's version is another one. Without a concurrent change the version
is the same and the order above is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from layers.errors import Conflict
from layers.pipeline.machine import Action, StateMachine
from layers.transactions import unit_of_work

logger = logging.getLogger(__name__)


@dataclass
class Step:
    """One action being performed: what the handler, the effects and the writer share."""

    action: Action
    row: Any
    actor: Any
    access: Any
    body: Any
    now: datetime
    from_status: str
    to_status: str
    options: dict[str, Any]
    note: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    users: list[int] = field(default_factory=list)  # recipients found by the handler
    volunteers: list[int] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)  # the row's values before the step
    found: dict[str, Any] = field(default_factory=dict)  # what the row's check looked up
    follow: list[tuple[str, Any, str | None]] = field(default_factory=list)  # (action, body, note)


class EntityKind(Protocol):
    """What the runner needs to know of one kind of entity (requests, wishes, bookings…)."""

    machine: StateMachine

    def load(self, session: Session, key: Any, *, lock: bool = True) -> Any: ...
    def version(self, session: Session, row: Any) -> Hashable:
        """What an actor acts upon: any change of it between the caller's read and the locked
        row is a conflict. It must hold every value ``access`` depends on (the runner reuses
        the access it found on the caller's read when the version is unchanged)."""
        ...

    def state(self, row: Any) -> dict[str, Any]:
        """The current state a conflict answer names (e.g. status and owner level)."""
        ...

    def lock(self, session: Session, names: tuple[str, ...]) -> None:
        """Take the action's ``locks`` (the row's lock comes after them)."""
        ...

    def status(self, row: Any) -> str: ...
    def access(self, session: Session, actor: Any, row: Any) -> Any: ...
    def refuse(self, action: Action, access: Any) -> Exception: ...
    def taken(self, row: Any) -> bool: ...
    def snapshot(self, row: Any) -> dict[str, Any]: ...
    def is_system(self, actor: Any) -> bool: ...
    def system_actor(self) -> Any: ...
    def apply_load(self, session: Session, step: Step) -> None: ...
    def apply(self, session: Session, step: Step) -> None: ...
    def write(self, session: Session, step: Step) -> int: ...
    def notify(self, session: Session, step: Step, event_id: int) -> None: ...


_UNPARSED = object()


def parse_body(kind: EntityKind, name: str, body: dict[str, Any] | None) -> Any:
    """The body of action ``name`` parsed by its schema (400 / 422), or None without one."""
    action = kind.machine.action(name)
    return action.body(body or {}) if action.body is not None else None


def run(
    kind: EntityKind,
    session: Session,
    row: Any,
    name: str,
    *,
    actor: Any,
    now: datetime,
    body: dict[str, Any] | None = None,
    parsed: Any = _UNPARSED,
    note: str | None = None,
    options: dict[str, Any] | None = None,
    access: Any = None,
) -> Step:
    """Perform action ``name`` on ``row`` (already loaded and locked) inside the caller's
    transaction; returns the step that was recorded. ``access``: the actor's access when the
    caller already found it for this version of the row."""
    action = kind.machine.action(name)
    if parsed is _UNPARSED:
        parsed = parse_body(kind, name, body)
    if access is None:
        access = kind.access(session, actor, row)
    require_scope(kind, action, actor, access)
    status = kind.status(row)
    step = Step(
        action=action,
        row=row,
        actor=actor,
        access=access,
        body=parsed,
        now=now,
        from_status=status,
        to_status=status,
        options=dict(options or {}),
        note=note if note is not None else getattr(parsed, "note", None),
        before=kind.snapshot(row),
    )
    if action.check is not None:
        action.check(session, step)
    target = kind.machine.next_status(status, name)
    if target is None:
        if action.taken is not None and kind.taken(row):
            raise Conflict(action.taken, status=status)
        kind.machine.require(status, name)
    assert target is not None
    step.to_status = target
    kind.apply_load(session, step)
    if action.handler is not None:
        action.handler(session, step)
    kind.apply(session, step)
    event_id = kind.write(session, step)
    if action.notify is not None:
        kind.notify(session, step, event_id)
    for follow_name, follow_body, follow_note in step.follow:
        run(
            kind,
            session,
            row,
            follow_name,
            actor=kind.system_actor(),
            now=now,
            parsed=follow_body,
            note=follow_note,
            options=step.options,
        )
    return step


def version_tag(version: Hashable) -> str:
    """A short opaque tag of an entity's version (an HTTP ETag): a page sends back the tag of
    what it showed (If-Match) and acts on that version or gets 409 ``conflict``."""
    raw = json.dumps(version, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def require_scope(kind: EntityKind, action: Action, actor: Any, access: Any) -> None:
    """403 (the kind's answer) unless the actor reaches the entity in one of the action's
    ``scope`` ways; the system always does."""
    if not kind.is_system(actor) and not (set(action.scope) & access.scopes):
        raise kind.refuse(action, access)


def conflict(kind: EntityKind, action: Action, row: Any) -> Conflict:
    """409 for the loser of a race, naming the current state: the row's ``taken`` code when
    someone else took what it wanted, ``conflict`` otherwise."""
    state = kind.state(row)
    if action.taken is not None and kind.taken(row):
        return Conflict(action.taken, **state)
    return Conflict("conflict", action=action.name, **state)


def perform(
    kind: EntityKind,
    session: Session,
    key: Any,
    name: str,
    *,
    actor: Any,
    now: datetime,
    body: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    expected: Hashable | None = None,
) -> Any:
    """Parse the body, read the entity ``key`` as the caller sees it (its version, and the
    actor's scope on it: 403), lock it, and unless its version changed meanwhile (409
    ``conflict``, see the module docstring) run action ``name`` on it and commit (all or
    nothing); returns the row. ``expected``: the version the caller acted upon, when it
    knows one (a page it read earlier: the version or its ``version_tag``); another version is
    a conflict as well."""
    parsed = parse_body(kind, name, body)
    action = kind.machine.action(name)
    with unit_of_work(session):
        seen_row = kind.load(session, key, lock=False)
        seen = kind.version(session, seen_row)
        access = kind.access(session, actor, seen_row)
        require_scope(kind, action, actor, access)
        if action.locks:
            kind.lock(session, action.locks)
        row = kind.load(session, key)
        current = kind.version(session, row)
        stale = expected is not None and expected not in (current, version_tag(current))
        if current != seen or stale:
            logger.debug("%s %s: version changed under the caller (%s)", name, key, current)
            raise conflict(kind, action, row)
        run(
            kind,
            session,
            row,
            name,
            actor=actor,
            now=now,
            parsed=parsed,
            options=options,
            access=access,
        )
    return row
