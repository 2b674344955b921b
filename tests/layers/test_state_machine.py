"""The generic state machine (``layers.pipeline.machine``) on a toy table: no database."""

from __future__ import annotations

import pytest

from layers.errors import Conflict
from layers.pipeline.machine import SAME, START, Action, StateMachine

STATES = ("open", "taken", "done", "closed")


def toy(*extra: Action) -> StateMachine:
    """A lending desk: open -> taken -> done -> closed, plus a note and a give-back."""
    return StateMachine(
        "toy",
        STATES,
        (
            Action("create", (START,), "open", listed=False),
            Action("take", ("open",), "taken"),
            Action("give_back", ("taken",), "open"),
            Action("finish", ("taken",), "done"),
            Action("note", ("open", "taken", "done"), SAME),
            Action("archive", ("done",), "closed", event="archived"),
            Action("touch", ("open", "taken"), SAME, listed=False),
            *extra,
        ),
    )


@pytest.fixture
def machine() -> StateMachine:
    return toy()


def test_unknown_states_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"toy\.lose: unknown states \['lost'\]"):
        toy(Action("lose", ("open",), "lost"))
    with pytest.raises(ValueError, match=r"unknown states \['nowhere'\]"):
        toy(Action("wander", ("nowhere", "open"), "closed"))
    with pytest.raises(ValueError, match=r"unknown states \['gone', 'lost'\]"):
        toy(Action("vanish", ("lost",), "gone"))


def test_an_action_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        toy(Action("take", ("done",), "open"))


def test_next_status(machine: StateMachine) -> None:
    assert machine.next_status("open", "take") == "taken"
    assert machine.next_status("taken", "give_back") == "open"
    assert machine.next_status(START, "create") == "open"
    assert machine.next_status("done", "take") is None  # not from here
    assert machine.next_status("open", "fly") is None  # no such action
    assert machine.next_status(START, "take") is None


def test_same_target_keeps_the_state(machine: StateMachine) -> None:
    assert machine.next_status("taken", "note") == "taken"
    assert machine.next_status("done", "note") == "done"
    assert machine.next_status("closed", "note") is None
    assert machine.action("note").target_from("open") == "open"


def test_allowed_actions_in_table_order_without_bookkeeping_rows(machine: StateMachine) -> None:
    assert machine.allowed_actions("open") == ["take", "note"]  # "touch" is not listed
    assert machine.allowed_actions("taken") == ["give_back", "finish", "note"]
    assert machine.allowed_actions("done") == ["note", "archive"]
    assert machine.allowed_actions("closed") == []
    # a bookkeeping row is still performable, just never offered
    assert machine.next_status("open", "touch") == "open"


def test_require_answers_409_naming_the_allowed_actions(machine: StateMachine) -> None:
    assert machine.require("open", "take") == "taken"
    with pytest.raises(Conflict) as caught:
        machine.require("done", "take")
    err = caught.value
    assert err.status == 409 and err.code == "illegal_transition"
    assert err.details["allowed"] == ["note", "archive"]
    assert err.details["action"] == "take" and err.details["status"] == "done"
    with pytest.raises(Conflict) as unknown:
        machine.require("closed", "fly")
    assert unknown.value.code == "illegal_transition"
    assert unknown.value.details["allowed"] == []


def test_chain_gives_event_from_to_of_each_step(machine: StateMachine) -> None:
    assert machine.chain(["create", "take", "note", "finish", "archive"]) == [
        ("create", None, "open"),
        ("take", "open", "taken"),
        ("note", "taken", "taken"),
        ("finish", "taken", "done"),
        ("archived", "done", "closed"),  # the row's event name, not its action name
    ]
    assert machine.chain(["give_back", "take"], start="taken") == [
        ("give_back", "taken", "open"),
        ("take", "open", "taken"),
    ]
    assert machine.chain([]) == []


def test_chain_raises_on_an_illegal_step(machine: StateMachine) -> None:
    with pytest.raises(ValueError, match="toy: finish is not allowed from open"):
        machine.chain(["create", "finish"])
    with pytest.raises(ValueError, match="take is not allowed from None"):
        machine.chain(["take"])  # nothing exists before it is created
    with pytest.raises(ValueError, match="fly is not allowed"):
        machine.chain(["create", "fly"])


def test_triples_list_every_allowed_event_from_to_once(machine: StateMachine) -> None:
    assert machine.triples() == [
        ("archived", "done", "closed"),
        ("create", None, "open"),
        ("finish", "taken", "done"),
        ("give_back", "taken", "open"),
        ("note", "done", "done"),
        ("note", "open", "open"),
        ("note", "taken", "taken"),
        ("take", "open", "taken"),
        ("touch", "open", "open"),  # unlisted rows are still allowed transitions
        ("touch", "taken", "taken"),
    ]


def test_two_actions_sharing_an_event_name_give_one_triple_each() -> None:
    m = toy(Action("take_again", ("open",), "taken", event="take"))
    assert [t for t in m.triples() if t[0] == "take"] == [("take", "open", "taken")]


def test_string_enum_states_come_out_as_plain_strings() -> None:
    from enum import StrEnum

    class S(StrEnum):
        A = "a"
        B = "b"

    m = StateMachine("e", ("a", "b"), (Action("go", (START, S.A), S.B),))
    triples = m.triples()
    assert triples == [("go", None, "b"), ("go", "a", "b")]
    assert all(type(x) is str for t in triples for x in t if x is not None)
