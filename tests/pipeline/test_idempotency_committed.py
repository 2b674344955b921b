"""Concurrent first submissions with one Idempotency-Key, through the app's real pool against
a committed database: exactly one request each time; the others replay it or get 409."""

from __future__ import annotations

import secrets
import threading
from collections import Counter

from sqlalchemy import text

from layers.config import Settings
from tests.pipeline.conftest import busiest_grid_point

THREADS = 4
ROUNDS = 10


def test_concurrent_first_submits_with_one_key_make_one_request(committed_db) -> None:
    from web import create_app

    with committed_db.session() as s:
        lon, lat = busiest_grid_point(s)
        before = s.scalar(text("SELECT count(*) FROM requests"))
    app = create_app(
        Settings(database_url=committed_db.url, secret_key="test-secret"), database=committed_db
    )
    app.config["MINQING_INTAKE_RATE_LIMIT"] = "100000/60"
    clients = [app.test_client() for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    keys = [secrets.token_hex(16) for _ in range(ROUNDS)]
    results: list[list[tuple[int, dict, bool]]] = [[] for _ in range(ROUNDS)]
    lock = threading.Lock()

    def resident(i: int) -> None:
        for rnd, key in enumerate(keys):
            # in odd rounds every thread sends another text: one wins, the others conflict
            text_ = f"楼道灯坏了 {i}" if rnd % 2 else "楼道灯坏了"
            body = {"lon": lon, "lat": lat, "category": "housing", "text": text_}
            barrier.wait(timeout=60)
            resp = clients[i].post("/api/v1/requests", json=body, headers={"Idempotency-Key": key})
            with lock:
                results[rnd].append(
                    (resp.status_code, resp.get_json(), "Idempotent-Replayed" in resp.headers)
                )

    threads = [threading.Thread(target=resident, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    for rnd, answers in enumerate(results):
        codes = Counter(code for code, _, _ in answers)
        created = [body for code, body, replayed in answers if code == 201 and not replayed]
        assert len(created) == 1, (rnd, answers)
        if rnd % 2:
            assert codes == {201: 1, 409: THREADS - 1}, (rnd, answers)
            assert {b["error"]["code"] for c, b, _ in answers if c == 409} == {
                "idempotency_conflict"
            }
        else:
            assert codes == {201: THREADS}, (rnd, answers)
            assert all(body == created[0] for _, body, _ in answers)  # ticket included
    with committed_db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM requests")) == before + ROUNDS
        assert s.scalar(text("SELECT count(*) FROM idempotency_keys")) == ROUNDS
        assert s.scalar(text("SELECT count(*) FROM idempotency_keys WHERE sealed IS NULL")) == 0
