"""20 volunteers on a barrier claim the same request, 50 rounds: exactly one wins each."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import text

from layers.auth.permissions import Grant
from layers.errors import Conflict
from layers.requests.schemas import parse_intake
from layers.requests.service import Actor, claim_request, submit_request
from tests.factories import mini_district
from tests.pipeline.conftest import CENTRE, add_volunteer

N_VOLUNTEERS = 20
ROUNDS = 50


def test_twenty_volunteers_claim_the_same_request(committed_db) -> None:
    with committed_db.session() as s:
        mini = mini_district(s)
        vols = [
            add_volunteer(
                s,
                mini.community,
                f"志愿者{i}",
                CENTRE[0] + 0.0001 * i,
                CENTRE[1],
                username=f"cc_vol{i}",
                load_limit=ROUNDS,
            )
            for i in range(N_VOLUNTEERS)
        ]
        s.commit()
        actors = [Actor(kind="user", user_id=v.user_id, grant=Grant(own=True)) for v in vols]
        body = {"lon": CENTRE[0], "lat": CENTRE[1], "category": "elderly_care", "text": "x"}
        request_ids = [
            submit_request(session=s, intake=parse_intake(body), k=N_VOLUNTEERS).request_id
            for _ in range(ROUNDS)
        ]
        offers = s.scalar(
            text("SELECT count(*) FROM request_offers WHERE request_id = ANY(:ids)"),
            {"ids": request_ids},
        )
        assert offers == ROUNDS * N_VOLUNTEERS

    barrier = threading.Barrier(N_VOLUNTEERS)
    outcomes: list[list[str]] = [[] for _ in range(ROUNDS)]
    lock = threading.Lock()

    def volunteer(i: int) -> None:
        for rnd, rid in enumerate(request_ids):
            with committed_db.session() as s:
                barrier.wait(timeout=30)
                try:
                    claim_request(session=s, request_id=rid, actor=actors[i])
                    result = "ok"
                except Conflict as exc:
                    result = exc.code
                except Exception as exc:
                    result = f"error:{exc!r}"
            with lock:
                outcomes[rnd].append(result)

    threads = [threading.Thread(target=volunteer, args=(i,)) for i in range(N_VOLUNTEERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    for rnd, results in enumerate(outcomes):
        assert Counter(results) == {"ok": 1, "already_claimed": N_VOLUNTEERS - 1}, (rnd, results)
    with committed_db.session() as s:
        per_request = s.execute(
            text(
                "SELECT request_id, count(*) FROM request_events WHERE action = 'claim'"
                " AND request_id = ANY(:ids) GROUP BY request_id"
            ),
            {"ids": request_ids},
        ).all()
        assert sorted(r[0] for r in per_request) == sorted(request_ids)
        assert {r[1] for r in per_request} == {1}
        statuses = s.scalars(
            text("SELECT DISTINCT status FROM requests WHERE id = ANY(:ids)"), {"ids": request_ids}
        ).all()
        assert statuses == ["claimed"]
        total_load = s.scalar(
            text("SELECT sum(active_load) FROM volunteers WHERE id = ANY(:v)"),
            {"v": [v.id for v in vols]},
        )
        assert total_load == ROUNDS
