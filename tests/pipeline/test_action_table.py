"""The requests' action table is complete and consistent with the rest of the system."""

from __future__ import annotations

from layers.auth.permissions import PERMISSIONS
from layers.pipeline.machine import SAME
from layers.requests.access import NO_ACCESS
from layers.requests.states import Status
from layers.requests.workflow import ACTIONS_TABLE, MACHINE, REQUEST_ACTIONS, allowed_actions

KNOWN_SCOPES = {"staff", "assignee", "offered", "resident"}


def test_every_performed_action_has_its_permission_row_and_a_known_scope() -> None:
    for action in ACTIONS_TABLE:
        if action.permission is not None:
            assert action.permission in PERMISSIONS, action.name
            assert action.scope, f"{action.name}: a permission but nobody in scope"
        assert set(action.scope) <= KNOWN_SCOPES, action.name
    assert NO_ACCESS.scopes == frozenset()


def test_every_request_action_is_routed(app) -> None:
    rules = {r.rule for r in app.url_map.iter_rules()}
    for name in REQUEST_ACTIONS:
        assert f"/api/v1/requests/<int:request_id>/{name}" in rules


def test_no_state_is_a_dead_end_unless_it_is_final() -> None:
    final = {Status.CLOSED, Status.REJECTED, Status.DUPLICATE, Status.WITHDRAWN}
    for status in Status:
        leads = [a for a in ACTIONS_TABLE if status in a.sources and a.target != SAME]
        assert bool(leads) != (status in final), status


def test_every_state_is_reachable_from_submit() -> None:
    seen, frontier = {"submitted"}, ["submitted"]
    while frontier:
        status = frontier.pop()
        for name in allowed_actions(status):
            target = MACHINE.next_status(status, name)
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == {s.value for s in Status}


def test_bookkeeping_rows_are_not_offered_as_actions() -> None:
    assert "rehome" not in allowed_actions("assigned")
    assert "submit" not in allowed_actions("submitted")
    assert MACHINE.next_status("assigned", "rehome") == "assigned"
