"""Idempotency-Key on submit (DESIGN §3): the key alone is the scope (≥ 128 bits); same key
and body replays the first 201, another body is 409; only the key's hash is stored and the
replay is sealed under a key derived from the Idempotency-Key."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from layers.requests.idempotency import Idempotency, key_bits, seal, unseal
from tests.factories import X0, token
from tests.pipeline.conftest import CENTRE, submit


def _count(session, table: str) -> int:
    return session.scalar(text(f"SELECT count(*) FROM {table}"))


def _key() -> str:
    return secrets.token_hex(16)  # 128 bits, as the resident page makes them


def _post_from(client, address: str, headers: dict[str, str]):
    body = {"lon": CENTRE[0], "lat": CENTRE[1], "category": "elderly_care", "text": "楼道灯坏了"}
    return client.post(
        "/api/v1/requests", json=body, headers=headers, environ_base={"REMOTE_ADDR": address}
    )


def test_replay_from_another_network_and_conflict(client, session, world) -> None:
    key = _key()
    headers = {"Idempotency-Key": key}
    first = _post_from(client, "10.0.0.1", headers)
    assert first.status_code == 201, first.get_json()
    n = _count(session, "requests")
    # the phone never saw the answer and retries from another network: the same request
    again = _post_from(client, "172.16.9.9", headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()  # ticket included
    assert again.headers["Location"] == first.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers
    assert _count(session, "requests") == n
    # the key alone is the scope: a signed-in caller with the same key replays too
    signed_in = submit(client, headers={**headers, **token(client, world.users["plain"])})
    assert signed_in.status_code == 201 and signed_in.get_json() == first.get_json()
    conflict = submit(client, headers=headers, text="别的内容")
    assert conflict.status_code == 409
    error = conflict.get_json()["error"]
    assert error["code"] == "idempotency_conflict" and key not in str(error)
    assert _count(session, "requests") == n
    # key order in the body does not matter
    body = {"text": "楼道灯坏了", "category": "elderly_care", "lat": CENTRE[1], "lon": CENTRE[0]}
    same = client.post("/api/v1/requests", json=body, headers=headers)
    assert same.status_code == 201 and same.get_json()["id"] == first.get_json()["id"]
    # a failed submission does not burn its key
    out = submit(client, lon=X0 + 1, headers={"Idempotency-Key": _key()})
    assert out.status_code == 422
    assert _count(session, "idempotency_keys") == 1


def test_the_stored_row_reveals_neither_ticket_nor_key(client, session, world) -> None:
    key = _key()
    created = submit(client, headers={"Idempotency-Key": key}).get_json()
    rows = session.execute(text("SELECT * FROM idempotency_keys")).mappings().all()
    assert len(rows) == 1
    row = dict(rows[0])
    assert set(row) == {
        "key_sha256",
        "body_sha256",
        "status_code",
        "sealed",
        "request_id",
        "created_at",
    }
    assert bytes(row["key_sha256"]) == hashlib.sha256(key.encode()).digest()
    assert row["status_code"] == 201 and row["request_id"] == created["id"]
    dump = session.scalar(text("SELECT row_to_json(k)::text FROM idempotency_keys k"))
    secret = created["ticket"].partition("-")[2]
    for needle in (created["ticket"], secret, key, created["number"]):
        assert needle not in dump
        assert needle.encode() not in bytes(row["sealed"])
    # the sealed answer opens only with its own key, and only in its own row
    idem = Idempotency(key=key, body_sha256=row["body_sha256"])
    assert unseal(idem, bytes(row["sealed"])) == created
    from layers.errors import InternalError

    with pytest.raises(InternalError):
        unseal(Idempotency(key=_key(), body_sha256=row["body_sha256"]), bytes(row["sealed"]))
    assert seal(idem, created) != seal(idem, created)  # a fresh nonce each time


WEAK = [
    "k-123",
    "bad-1",
    "0" * 31,  # 124 bits of hex
    "ABCDEF0123456789abcdef0123456789"[:31],
    "0123-4567-89ab-cdef-0123-4567-89ab-cde",  # 31 hex digits between hyphens
    str(uuid.uuid4()),  # a version-4 UUID: 122 random bits
    secrets.token_urlsafe(16)[:21],  # 126 bits of base64url
    "订单-20260101-0001-甲乙丙丁戊己庚辛",  # other characters: not counted
    "key with spaces and enough length in it",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v",  # '.' is in neither alphabet
    "",
]
STRONG = [
    secrets.token_hex(16),
    secrets.token_hex(16).upper(),
    uuid.uuid4().hex,  # 32 hex digits as written
    secrets.token_urlsafe(16),  # 22 base64url characters
    base64.b64encode(secrets.token_bytes(16)).decode(),  # standard base64, '=' padding
    "Zm9vYmFyYmF6cXV1eGNvcmdlZ3JhdWx0Z2FycGx5==",
    "0123-4567-89ab-cdef-0123-4567-89ab-cdef",
]


@pytest.mark.parametrize("key", WEAK)
def test_keys_under_128_bits_are_refused(client, session, world, key) -> None:
    before = [_count(session, t) for t in ("requests", "idempotency_keys")]
    resp = submit(client, headers={"Idempotency-Key": key})
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "weak_idempotency_key"
    assert "128" in error["message"] and error["details"]["bits"] < 128
    assert [_count(session, t) for t in ("requests", "idempotency_keys")] == before


@pytest.mark.parametrize("key", STRONG)
def test_keys_of_128_bits_or_more_are_taken(key) -> None:
    assert key_bits(key) >= 128


def test_too_long_key_is_refused(client, world) -> None:
    resp = submit(client, headers={"Idempotency-Key": "a" * 201})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_field"


def test_keys_expire_after_24_hours(session, world) -> None:
    from layers.requests.schemas import body_sha256, parse_intake
    from layers.requests.service import run_escalations, submit_request

    body = {"lon": CENTRE[0], "lat": CENTRE[1], "category": "elderly_care", "text": "x"}
    idem = Idempotency(key=_key(), body_sha256=body_sha256(body))
    t0 = datetime.fromisoformat("2026-03-01T08:00:00+00:00")
    a = submit_request(session=session, intake=parse_intake(body), now=t0, idempotency=idem)
    b = submit_request(
        session=session,
        intake=parse_intake(body),
        now=t0 + timedelta(hours=23),
        idempotency=idem,
    )
    assert b.replayed and b.request_id == a.request_id and b.ticket == a.ticket
    c = submit_request(
        session=session,
        intake=parse_intake(body),
        now=t0 + timedelta(hours=25),
        idempotency=idem,
    )
    assert not c.replayed and c.request_id != a.request_id
    out = run_escalations(session=session, now=t0 + timedelta(hours=50))
    assert out["expired_keys"] == 1
