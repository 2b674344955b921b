"""A request's detail lists what THIS actor may do (``workflow.actions_for``): legal from the
state, the permission held and the request reached in one of the row's scopes. Expected lists
written by hand from DESIGN §3 and the permission table, not read from the action table."""

from __future__ import annotations

from tests.factories import token
from tests.pipeline.conftest import submit


def _allowed(client, rid: int, headers) -> list[str]:
    r = client.get(f"/api/v1/requests/{rid}", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["allowed_actions"]


def test_each_actor_sees_only_its_own_actions_on_an_assigned_request(client, world) -> None:
    rid = submit(client).get_json()["id"]  # assigned to the west grid, offered to volunteers
    handoffs = ["resolve", "reassign", "escalate", "reject", "mark_duplicate", "reply"]
    want = {
        "grid_leader": handoffs,
        # a grid member neither rejects nor reassigns (the permission table)
        "grid_member": ["resolve", "escalate", "mark_duplicate", "reply"],
        "community_staff": handoffs,
        "admin": handoffs,
        # an offered volunteer: take it or say no; nothing of the staff's
        "volunteer": ["claim", "decline_offer"],
    }
    for role, expected in want.items():
        assert sorted(_allowed(client, rid, token(client, world.users[role]))) == sorted(
            expected
        ), role


def test_the_assignee_and_the_leader_on_claimed_work(client, world) -> None:
    rid = submit(client).get_json()["id"]
    vol = token(client, world.users["volunteer"])
    assert client.post(f"/api/v1/requests/{rid}/claim", headers=vol).status_code == 200
    assert sorted(_allowed(client, rid, vol)) == ["give_back", "resolve", "start"]
    leader = token(client, world.users["grid_leader"])
    got = _allowed(client, rid, leader)
    assert "claim" not in got and "withdraw" not in got and "give_back" not in got
    assert sorted(got) == ["escalate", "reassign", "reply", "resolve", "start"]
