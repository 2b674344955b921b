"""The pipeline against a hand-written expected matrix: action × state × (in / out of scope).

Written from DESIGN §3, NOT from the action table (nothing here imports it): a wrong row in
``layers/requests/workflow.py`` — a source state added or dropped, a wrong target — fails a
cell. Every cell goes through the HTTP API on a fresh request put into the state. Roles × one
state are covered by ``test_permissions.py``; this file covers the states.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from layers.requests.schemas import parse_intake
from layers.requests.service import submit_request
from tests.factories import forge_status, token
from tests.pipeline.conftest import CENTRE, add_volunteer

STATES = (
    "submitted",
    "triage",
    "assigned",
    "claimed",
    "in_progress",
    "resolved",
    "rated",
    "closed",
    "rejected",
    "duplicate",
    "withdrawn",
)
OPEN = {"submitted", "triage", "assigned", "claimed", "in_progress"}  # 未结
NOT_FINISHED = set(STATES) - {"closed", "rejected", "duplicate", "withdrawn"}
SAME = "same"

# DESIGN §3, by hand: (states the action leaves from, the state it leads to).
EXPECTED: dict[str, tuple[set[str], str]] = {
    "assign": ({"submitted", "triage"}, "assigned"),
    "claim": ({"assigned"}, "claimed"),
    "start": ({"claimed"}, "in_progress"),
    "resolve": ({"assigned", "claimed", "in_progress"}, "resolved"),
    "reopen": ({"resolved", "rated"}, "assigned"),
    "reassign": ({"assigned", "claimed", "in_progress"}, "assigned"),
    "escalate": ({"triage", "assigned", "claimed", "in_progress"}, "assigned"),
    "reject": ({"submitted", "triage", "assigned"}, "rejected"),
    "mark_duplicate": ({"submitted", "triage", "assigned"}, "duplicate"),
    "reply": (NOT_FINISHED, SAME),
    "decline_offer": ({"assigned"}, SAME),
    "give_back": ({"claimed", "in_progress"}, "assigned"),
    # the resident's, through the ticket
    "withdraw": (OPEN, "withdrawn"),
    "rate": ({"resolved"}, "closed"),  # 5 stars: rated, then closed
}

# Who performs it in scope: street staff (both communities), the offered volunteer, the
# assignee, or the resident holding the ticket.
PERFORMER = {
    "claim": "offered",
    "decline_offer": "offered",
    "start": "assignee",
    "give_back": "assignee",
    "withdraw": "resident",
    "rate": "resident",
}


def _performer(action: str) -> str:
    return PERFORMER.get(action, "staff")


def _body(action: str, world, original: int) -> dict:
    return {
        "assign": {"grid_code": world.mini.west.code},
        "resolve": {"note": "已处理"},
        "reopen": {"note": "居民反映未解决"},
        "reassign": {"grid_code": world.mini.east.code, "reason": "属东网格"},
        "escalate": {"reason": "需社区协调"},
        "reject": {"reason": "不属实"},
        "mark_duplicate": {"duplicate_of": original, "reason": "同一处问题"},
        "reply": {"note": "已联系物业"},
        "decline_offer": {"note": "出差"},
        "give_back": {"reason": "走不开"},
        "rate": {"rating": 5},
        "withdraw": {"note": "已自行解决"},
    }.get(action, {})


def _fresh(session, world, action: str, state: str) -> tuple[int, str]:
    """A request in the west grid (offered to the near and mid volunteers) put into
    ``state``: the near volunteer is the assignee where the assignee acts, the mid one where
    someone else took it."""
    body = {"lon": CENTRE[0], "lat": CENTRE[1], "category": "elderly_care", "text": action}
    outcome = submit_request(session=session, intake=parse_intake(body))
    holds = state in ("claimed", "in_progress", "resolved", "rated", "closed")
    who = world.volunteers["near" if _performer(action) == "assignee" else "mid"].id
    assignee = who if holds or _performer(action) == "assignee" else None
    forge_status(
        session,
        "UPDATE requests SET status = :s, assignee_id = :v,"
        " resolved_at = CASE WHEN :resolved THEN now() END,"
        " closed_at = CASE WHEN :closed THEN now() END WHERE id = :i",
        {
            "s": state,
            "v": assignee,
            "i": outcome.request_id,
            "resolved": state in ("resolved", "rated", "closed"),
            "closed": state in ("closed", "rejected", "duplicate", "withdrawn"),
        },
    )
    return outcome.request_id, outcome.ticket


def _status(session, rid: int) -> str:
    return session.scalar(text("SELECT status FROM requests WHERE id = :r"), {"r": rid})


def _events(session, rid: int) -> int:
    return session.scalar(
        text("SELECT count(*) FROM request_events WHERE request_id = :r"), {"r": rid}
    )


@pytest.fixture
def people(client, session, world) -> dict[str, dict]:
    stranger = add_volunteer(
        session,
        world.mini.community,
        "赵路人",
        CENTRE[0] + 0.004,
        CENTRE[1],
        username="pl_vol3",
        skills=("housing",),  # never offered an elderly_care request
    )
    assert stranger.id
    return {
        "staff": token(client, world.users["street_staff"]),
        "other_staff": token(client, world.users["other_leader"]),  # the east grid's
        "offered": token(client, world.users["volunteer"]),  # near
        "assignee": token(client, world.users["volunteer"]),
        "other_volunteer": token(client, "pl_vol3"),
    }


def _call(client, people, action: str, rid: int, ticket: str, body: dict, *, in_scope: bool):
    performer = _performer(action)
    if performer == "resident":
        key = ticket if in_scope else ticket[:-4] + ("0000" if ticket[-4:] != "0000" else "1111")
        return client.post(f"/api/v1/tickets/{key}/{action}", json=body)
    who = performer if in_scope else "other_staff" if performer == "staff" else "other_volunteer"
    return client.post(f"/api/v1/requests/{rid}/{action}", headers=people[who], json=body)


def _refusal(action: str, state: str, *, in_scope: bool) -> tuple[int, set[str]]:
    """The status code and the acceptable error codes of a refused cell."""
    performer = _performer(action)
    if not in_scope:
        if performer == "resident":
            return 404, {"unknown_ticket"}
        if performer == "staff":
            return 403, {"forbidden"}
        return 403, {"not_offered", "forbidden"}
    if performer == "offered":
        if action == "claim" and state in ("claimed", "in_progress"):
            return 409, {"already_claimed"}  # DESIGN: the first to claim wins
        return 403, {"not_offered", "offer_lapsed"}  # the offer lapsed (or never was)
    return 409, {"illegal_transition"}


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_every_state_against_the_expected_matrix(client, session, world, people, action) -> None:
    sources, target = EXPECTED[action]
    original = submit_request(
        session=session,
        intake=parse_intake(
            {"lon": CENTRE[0], "lat": CENTRE[1], "category": "elderly_care", "text": "原单"}
        ),
    ).request_id
    body = _body(action, world, original)
    wrong = []
    for state in STATES:
        for in_scope in (True, False):
            rid, ticket = _fresh(session, world, action, state)
            events = _events(session, rid)
            r = _call(client, people, action, rid, ticket, body, in_scope=in_scope)
            if in_scope and state in sources:
                expected = (200, {None})
                after = state if target == SAME else target
            else:
                expected = _refusal(action, state, in_scope=in_scope)
                after = state
            got_code = (r.get_json() or {}).get("error", {}).get("code")
            ok = r.status_code == expected[0] and got_code in expected[1]
            ok = ok and _status(session, rid) == after
            changed = _events(session, rid) != events
            ok = ok and changed == (r.status_code == 200)
            if not ok:
                wrong.append((state, in_scope, r.status_code, got_code, _status(session, rid)))
    assert not wrong, (action, wrong)
