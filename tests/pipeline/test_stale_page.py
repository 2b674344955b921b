"""An action from a page that shows an old version of the request (If-Match with the
detail's ETag) acts on that version only: someone acted meanwhile → 409 ``conflict`` with the
current state, and nothing is written."""

from __future__ import annotations

from tests.factories import token
from tests.pipeline.conftest import request_events, submit


def test_an_action_from_a_stale_page_is_a_conflict(client, session, world) -> None:
    rid = submit(client).get_json()["id"]
    leader = token(client, world.users["grid_leader"])
    seen = client.get(f"/api/v1/requests/{rid}", headers=leader)
    etag = seen.headers["ETag"]
    assert etag.strip('"') == seen.get_json()["version"]
    # meanwhile a volunteer claims it
    vol = token(client, world.users["volunteer"])
    assert client.post(f"/api/v1/requests/{rid}/claim", headers=vol).status_code == 200
    before = request_events(session, rid)
    stale = client.post(
        f"/api/v1/requests/{rid}/reassign",
        headers={**leader, "If-Match": etag},
        json={"volunteer_id": world.volunteers["mid"].id, "reason": "他更近"},
    )
    assert stale.status_code == 409, stale.get_json()
    error = stale.get_json()["error"]
    assert error["code"] == "conflict" and error["details"]["status"] == "claimed"
    assert request_events(session, rid) == before
    # with the version the page shows now, the same action goes through
    fresh = client.get(f"/api/v1/requests/{rid}", headers=leader)
    assert fresh.headers["ETag"] != etag
    ok = client.post(
        f"/api/v1/requests/{rid}/reply",
        headers={**leader, "If-Match": fresh.headers["ETag"]},
        json={"note": "志愿者已接单，今天上门"},
    )
    assert ok.status_code == 200, ok.get_json()
    # no If-Match (or *): acts on whatever is current, as before
    anyway = client.post(
        f"/api/v1/requests/{rid}/reply", headers={**leader, "If-Match": "*"}, json={"note": "好"}
    )
    assert anyway.status_code == 200
