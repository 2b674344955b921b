"""The generic runner over a toy entity (a wish kept in memory): no database, no requests.

Shows the runner is generic over the entity and pins its order: body, scope, legality
(or ``taken``), load, handler, effects, write, outbox, follow-ups; and ``perform``'s: read the
version and check scope on it, the action's own locks, the row lock, 409 ``conflict`` when the
version changed in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from layers.errors import BadRequest, Conflict, Forbidden
from layers.pipeline.machine import SAME, START, Action, Notify, StateMachine
from layers.pipeline.runner import Step, perform, run

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@dataclass
class Wish:
    status: str = "open"
    holder: str | None = None
    log: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    outbox: list[tuple[str, list[str]]] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    meanwhile: Callable[[Wish], None] | None = None  # another action, done before the lock


@dataclass(frozen=True)
class Actor:
    kind: str
    name: str = ""


@dataclass(frozen=True)
class Reach:
    scopes: frozenset[str]


@dataclass(frozen=True)
class Thanks:
    note: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Thanks:
        if not isinstance(body.get("note"), str):
            raise BadRequest("missing_field", field="note")
        return cls(body["note"])


def _claim(session: Any, step: Step) -> None:
    step.row.trace.append("handler")


def _check_claim(session: Any, step: Step) -> None:
    step.row.trace.append("check")
    if step.actor.name == "banned":
        raise Conflict("banned")


def _fulfil(session: Any, step: Step) -> None:
    step.follow.append(("archive", None, "auto"))


MACHINE = StateMachine(
    "wishes",
    ("open", "claimed", "fulfilled", "archived"),
    (
        Action("post", (START,), "open", listed=False),
        Action(
            "claim",
            ("open",),
            "claimed",
            scope=("member",),
            check=_check_claim,
            handler=_claim,
            taken="taken",
        ),
        Action(
            "fulfil",
            ("claimed",),
            "fulfilled",
            scope=("holder",),
            body=Thanks.parse,
            handler=_fulfil,
            notify=Notify("fulfilled", ("poster",)),
        ),
        Action("comment", ("open", "claimed"), SAME, scope=("member", "holder")),
        Action("pledge", ("open",), "claimed", scope=("member",), locks=("pledges",)),
        Action("archive", ("fulfilled",), "archived"),
    ),
)


class WishKind:
    machine = MACHINE

    def load(self, session: Any, key: Wish, *, lock: bool = True) -> Wish:
        key.trace.append("lock" if lock else "read")
        if lock and key.meanwhile is not None:
            key.meanwhile(key)
        return key

    def version(self, session: Any, row: Wish) -> tuple[str, str | None]:
        return (row.status, row.holder)

    def state(self, row: Wish) -> dict[str, Any]:
        return {"status": row.status}

    def lock(self, session: Any, names: tuple[str, ...]) -> None:
        assert names == ("pledges",)

    def status(self, row: Wish) -> str:
        return row.status

    def access(self, session: Any, actor: Actor, row: Wish) -> Reach:
        scopes = {"member"} if actor.kind == "member" else set()
        if row.holder is not None and actor.name == row.holder:
            scopes.add("holder")
        return Reach(frozenset(scopes))

    def refuse(self, action: Action, access: Reach) -> Exception:
        return Forbidden("forbidden")

    def taken(self, row: Wish) -> bool:
        return row.holder is not None

    def is_system(self, actor: Actor) -> bool:
        return actor.kind == "system"

    def system_actor(self) -> Actor:
        return Actor("system")

    def snapshot(self, row: Wish) -> dict[str, Any]:
        return {"holder": row.holder}

    def apply_load(self, session: Any, step: Step) -> None:
        if step.action.name == "claim":
            step.row.holder = step.actor.name
        step.row.trace.append("load")

    def apply(self, session: Any, step: Step) -> None:
        step.row.trace.append("effects")

    def write(self, session: Any, step: Step) -> int:
        step.row.status = step.to_status
        step.row.log.append((step.action.event_name, step.from_status, step.to_status, step.note))
        step.row.trace.append("write")
        return len(step.row.log)

    def notify(self, session: Any, step: Step, event_id: int) -> None:
        step.row.outbox.append((step.action.notify.kind, list(step.action.notify.to)))


KIND = WishKind()
MEMBER = Actor("member", "li")


def test_an_action_runs_load_handler_effects_then_write_in_that_order() -> None:
    wish = Wish()
    step = run(KIND, None, wish, "claim", actor=MEMBER, now=NOW)
    assert (step.from_status, step.to_status) == ("open", "claimed")
    assert wish.trace == ["check", "load", "handler", "effects", "write"]
    assert wish.log == [("claim", "open", "claimed", None)] and wish.holder == "li"


def test_the_check_answers_before_the_transition_is_tried() -> None:
    taken = Wish(status="claimed", holder="li")
    with pytest.raises(Conflict) as err:
        run(KIND, None, taken, "claim", actor=Actor("member", "banned"), now=NOW)
    assert err.value.code == "banned" and taken.log == []


def test_out_of_scope_is_403_and_nothing_is_written() -> None:
    wish = Wish()
    with pytest.raises(Forbidden):
        run(KIND, None, wish, "claim", actor=Actor("resident"), now=NOW)
    assert wish.log == [] and wish.status == "open"


def test_a_bad_body_is_400_even_before_scope() -> None:
    wish = Wish(status="claimed", holder="li")
    with pytest.raises(BadRequest):
        run(KIND, None, wish, "fulfil", actor=Actor("resident"), now=NOW, body={})


def test_second_claim_gets_the_taken_code_and_an_illegal_one_names_the_allowed() -> None:
    wish = Wish()
    run(KIND, None, wish, "claim", actor=MEMBER, now=NOW)
    with pytest.raises(Conflict) as taken:
        run(KIND, None, wish, "claim", actor=Actor("member", "wang"), now=NOW)
    assert taken.value.code == "taken"
    done = Wish(status="archived")
    with pytest.raises(Conflict) as illegal:
        run(KIND, None, done, "comment", actor=MEMBER, now=NOW)
    assert illegal.value.code == "illegal_transition"
    assert illegal.value.details["allowed"] == []


def test_same_state_action_and_follow_ups_are_recorded_through_the_runner() -> None:
    wish = Wish()
    run(KIND, None, wish, "comment", actor=MEMBER, now=NOW)
    run(KIND, None, wish, "claim", actor=MEMBER, now=NOW)
    run(KIND, None, wish, "fulfil", actor=Actor("member", "li"), now=NOW, body={"note": "谢谢"})
    assert [e[:3] for e in wish.log] == [
        ("comment", "open", "open"),
        ("claim", "open", "claimed"),
        ("fulfil", "claimed", "fulfilled"),
        ("archive", "fulfilled", "archived"),
    ]
    assert wish.log[2][3] == "谢谢" and wish.log[3][3] == "auto"
    assert wish.outbox == [("fulfilled", ["poster"])]
    assert wish.status == "archived"


def test_effect_columns_are_checked_when_the_table_is_built() -> None:
    with pytest.raises(ValueError, match="load"):
        Action("x", ("open",), "open", load="relase")
    with pytest.raises(ValueError, match="deadline"):
        Action("x", ("open",), "open", deadline="tomorrow")


def test_the_system_is_always_in_scope() -> None:
    wish = Wish(status="fulfilled")
    run(KIND, None, wish, "archive", actor=Actor("system"), now=NOW)
    assert wish.status == "archived"


class Transaction:
    """What ``perform`` asks of a session: commit or roll back."""

    def __init__(self) -> None:
        self.ends: list[str] = []

    def commit(self) -> None:
        self.ends.append("commit")

    def rollback(self) -> None:
        self.ends.append("rollback")


def _take(wish: Wish) -> None:
    wish.status, wish.holder = "claimed", "wang"


def test_perform_reads_the_version_then_locks_and_runs_when_nothing_changed() -> None:
    wish, tx = Wish(), Transaction()
    perform(KIND, tx, wish, "claim", actor=MEMBER, now=NOW)
    assert wish.trace[:2] == ["read", "lock"] and wish.holder == "li"
    assert tx.ends == ["commit"]


def test_a_change_between_the_read_and_the_lock_is_a_conflict_naming_the_state() -> None:
    wish, tx = Wish(meanwhile=lambda w: setattr(w, "status", "claimed")), Transaction()
    with pytest.raises(Conflict) as err:
        perform(KIND, tx, wish, "comment", actor=MEMBER, now=NOW)
    assert err.value.code == "conflict"
    assert err.value.details == {"action": "comment", "status": "claimed"}
    assert wish.log == [] and tx.ends == ["rollback"]  # legal still, but not what was seen


def test_the_loser_of_a_claim_gets_the_taken_code() -> None:
    wish = Wish(meanwhile=_take)
    with pytest.raises(Conflict) as err:
        perform(KIND, Transaction(), wish, "claim", actor=MEMBER, now=NOW)
    assert err.value.code == "taken" and wish.holder == "wang" and wish.log == []


def test_scope_is_checked_on_what_the_caller_saw_before_the_conflict() -> None:
    wish = Wish(meanwhile=_take)
    with pytest.raises(Forbidden):
        perform(KIND, Transaction(), wish, "claim", actor=Actor("resident"), now=NOW)


def test_a_version_the_caller_names_must_still_be_the_rows() -> None:
    wish = Wish()
    with pytest.raises(Conflict) as err:
        perform(KIND, Transaction(), wish, "comment", actor=MEMBER, now=NOW, expected=("x", None))
    assert err.value.code == "conflict" and wish.log == []
    perform(KIND, Transaction(), wish, "comment", actor=MEMBER, now=NOW, expected=("open", None))
    assert [e[0] for e in wish.log] == ["comment"]


def test_an_actions_own_locks_come_before_the_row_lock() -> None:
    wish = Wish()
    calls: list[str] = []
    kind = WishKind()
    kind.lock = lambda session, names: calls.append(f"{names[0]} after {wish.trace[-1]}")
    perform(kind, Transaction(), wish, "pledge", actor=MEMBER, now=NOW)
    assert calls == ["pledges after read"] and wish.trace[:2] == ["read", "lock"]
