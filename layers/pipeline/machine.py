"""A state machine as one table of actions (DESIGN §3: states and transitions defined once).

Each ``Action`` row says everything about one action: the states it leaves from and the one
it enters (or ``SAME``), the permission row it needs, who is in scope, its body schema, its
declared effects and the event it writes. The runner (``layers.pipeline.runner``) performs
any row; set-based writers (intake, bulk import, re-homing) derive their status and event
columns from the same rows; ``layers.pipeline.reference`` copies the allowed
(action, from, to) triples into PostgreSQL, where a trigger refuses any other.

Generic over the entity: requests use it today; wishes, claims, bookings and visits bring
their own tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from layers.errors import Conflict

logger = logging.getLogger(__name__)

SAME = "<same>"  # target of an action that keeps the state (a reply, a re-homing)
START = None  # the "from" state of the action that creates an entity
DEADLINES = ("level", "restart")  # the declared deadline effects an entity kind applies
LOADS = ("take", "release", "drop")  # the declared load effects


@dataclass(frozen=True)
class Notify:
    """Outbox rows an action writes: ``kind`` for the recipients the named rules find.
    With ``unaddressed`` an event nobody is known for still gets one row (never invisible)."""

    kind: str
    to: tuple[str, ...]
    unaddressed: bool = True


@dataclass(frozen=True)
class Action:
    """One row of an action table.

    - ``sources`` / ``target``: states it leaves from and enters (``SAME``: stays);
    - ``permission``: the row of ``layers.auth.permissions.PERMISSIONS`` it needs (None:
      only the system or a set-based writer performs it);
    - ``scope``: how an actor must reach the entity (e.g. ``staff``, ``assignee``,
      ``offered``, ``resident``); the system is always in scope;
    - ``body``: parses the request body into the handler's input (raises 400 / 422);
    - ``check``: looks up what the action needs before the transition is tried (422 for a
      grid or volunteer that does not exist, say), leaving it in ``step.found``;
    - ``deadline``: ``None`` keeps it, ``"level"`` starts a new one when the entity reaches
      another owning level (a hand-off within a level moves nothing), ``"restart"`` starts a
      new one at the same level;
    - ``load``: ``"take"`` a slot of the assignee's load, ``"release"`` it, ``"drop"`` it and
      clear the assignee;
    - ``points``: ledger event name (or a function of the body) credited to the assignee;
    - ``stamp``: timestamp column set to now (``resolved_at``, ``closed_at``);
    - ``notify``: outbox rows; ``event``: the event's action name (default: the row's name);
    - ``handler``: the action's own effects, run inside the runner's transaction;
    - ``taken``: error code when the action fails because someone else already took it;
    - ``listed``: named among a state's allowed actions (False for bookkeeping rows that
      only set-based writers record, such as a re-homing);
    - ``locks``: named locks the entity kind takes before the row lock, never after it (so
      nothing holding the row waits for them): e.g. ``grids``, not while a publish retires
      the grid rows the action could put the entity on.
    """

    name: str
    sources: tuple[str | None, ...]
    target: str
    permission: str | None = None
    scope: tuple[str, ...] = ()
    body: Callable[[dict[str, Any]], Any] | None = None
    check: Callable[..., None] | None = None
    deadline: str | None = None
    load: str | None = None
    points: str | Callable[[Any], str] | None = None
    stamp: str | None = None
    notify: Notify | None = None
    event: str | None = None
    handler: Callable[..., None] | None = None
    taken: str | None = None
    listed: bool = True
    locks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for column, value, allowed in (
            ("deadline", self.deadline, DEADLINES),
            ("load", self.load, LOADS),
        ):
            if value is not None and value not in allowed:
                raise ValueError(f"{self.name}.{column}: {value!r} is not one of {allowed}")
        # states as plain strings (enum members compare equal but would leak into rows)
        object.__setattr__(
            self, "sources", tuple(None if s is START else str(s) for s in self.sources)
        )
        object.__setattr__(self, "target", str(self.target))

    @property
    def event_name(self) -> str:
        return self.event or self.name

    def target_from(self, status: str | None) -> str:
        """The state this action leads to from ``status`` (``SAME`` resolved)."""
        if self.target == SAME:
            assert status is not None
            return status
        return self.target


@dataclass(frozen=True)
class StateMachine:
    """An entity's states and its action table (the only place its transitions live)."""

    name: str
    states: tuple[str, ...]
    actions: tuple[Action, ...]
    by_name: dict[str, Action] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.actions]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: an action is listed twice")
        known = set(self.states)
        for a in self.actions:
            bad = {s for s in a.sources if s is not START and s not in known}
            if a.target != SAME and a.target not in known:
                bad.add(a.target)
            if bad:
                raise ValueError(f"{self.name}.{a.name}: unknown states {sorted(bad)}")
        object.__setattr__(self, "by_name", {a.name: a for a in self.actions})

    def action(self, name: str) -> Action:
        return self.by_name[name]

    def allowed_actions(self, status: str) -> list[str]:
        """Actions legal from ``status``, in table order (bookkeeping rows left out)."""
        return [a.name for a in self.actions if a.listed and status in a.sources]

    def next_status(self, status: str | None, name: str) -> str | None:
        """The state action ``name`` leads to from ``status``, or None when not allowed."""
        a = self.by_name.get(name)
        if a is None or status not in a.sources:
            return None
        return a.target_from(status)

    def require(self, status: str, name: str) -> str:
        """``next_status`` or 409 ``illegal_transition`` naming the actions allowed now."""
        target = self.next_status(status, name)
        if target is None:
            raise Conflict(
                "illegal_transition",
                action=name,
                status=status,
                allowed=self.allowed_actions(status),
            )
        return target

    def chain(self, names: Iterable[str], start: str | None = START) -> list[tuple[str, Any, str]]:
        """(event name, from, to) of each step of a legal path of actions from ``start``
        (what a set-based writer records); ValueError on an illegal step."""
        steps, status = [], start
        for name in names:
            target = self.next_status(status, name)
            if target is None:
                raise ValueError(f"{self.name}: {name} is not allowed from {status}")
            target = str(target)
            steps.append((self.by_name[name].event_name, status, str(target)))
            status = target
        return steps

    def triples(self) -> list[tuple[str, str | None, str]]:
        """Every allowed (event name, from, to): what the database's guard accepts."""
        out = []
        for a in self.actions:
            for s in a.sources:
                to = a.target_from(s) if s is not START else a.target
                out.append((a.event_name, None if s is START else str(s), str(to)))
        return sorted(set(out), key=lambda t: (t[0], t[1] or "", t[2]))
