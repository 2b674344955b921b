"""Idempotency-Key on submit (DESIGN §3): the key alone is the scope, only its hash is kept.

A client that never saw the 201 (a lost response, a double tap, a retry from another network)
sends the same key and body again and gets the first 201 back: the same request, the same
ticket. The same key with another body is 409 ``idempotency_conflict``.

What a database dump shows of a key: its SHA-256 (the primary key), the body's SHA-256, the
request id and the time. The stored 201 (ticket included) is sealed with AES-256-GCM under a
key derived from the Idempotency-Key itself (HKDF-SHA256 with a fixed label), so only a
client holding the Idempotency-Key can open it; the key's hash is the associated data, so a
sealed answer cannot be moved to another row. Rows are kept 24 h (``IDEMPOTENCY_TTL``; the
deadline job purges them).

Key strength: at least 128 random bits as written (``key_bits``): 32 or more hex digits
(hyphens between them count for nothing), or 22 or more base64 or base64url characters
(A–Z a–z 0–9 and + / or - _, '=' padding not counted). A key of hex digits only is counted as
hex. A UUID in its hyphenated layout is refused: its layout fixes the version and variant, leaving
at most 122 random bits (a version-4 UUID; other versions far fewer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from layers.errors import BadRequest, Conflict, InternalError
from layers.requests.models import IdempotencyKey
from layers.requests.schemas import body_sha256

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 200
MIN_KEY_BITS = 128
UUID_RANDOM_BITS = 122  # RFC 9562: a version-4 UUID; the layout fixes 6 of its 128 bits

_HKDF_INFO = b"minqing idempotency replay v1"
_NONCE_BYTES = 12
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_HEX = re.compile(r"[0-9A-Fa-f-]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")  # either alphabet, standard or URL-safe


def key_bits(key: str) -> int:
    """The most random bits a key can carry as written (0 for a key of other characters)."""
    if _UUID.fullmatch(key):
        return UUID_RANDOM_BITS
    if _HEX.fullmatch(key):
        return 4 * (len(key) - key.count("-"))
    if _BASE64.fullmatch(key):
        return 6 * len(key.rstrip("="))
    return 0


@dataclass(frozen=True)
class Idempotency:
    """One submission's Idempotency-Key and the hash of its body. The key itself never
    leaves memory: it is hashed for the row and derives the replay's sealing key."""

    key: str = field(repr=False)
    body_sha256: str

    @property
    def key_sha256(self) -> bytes:
        return hashlib.sha256(self.key.encode()).digest()


def idempotency_for(raw_key: str | None, body: dict[str, Any]) -> Idempotency | None:
    """The submission's Idempotency-Key checked (400 ``weak_idempotency_key`` under 128
    bits, see the module's rule) with the body's hash; None without the header."""
    if raw_key is None:
        return None
    key = raw_key.strip()
    if len(key) > MAX_KEY_CHARS:
        raise BadRequest(
            "invalid_field", field=HEADER, reason=f"at most {MAX_KEY_CHARS} characters"
        )
    bits = key_bits(key)
    if bits < MIN_KEY_BITS:
        raise BadRequest("weak_idempotency_key", bits=bits)
    return Idempotency(key=key, body_sha256=body_sha256(body))


@dataclass(frozen=True)
class StoredResponse:
    """The first answer given under a key, opened with that key."""

    status_code: int
    body: dict[str, Any]
    request_id: int | None


def _aead(key: str) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        key.encode()
    )
    return AESGCM(derived)


def seal(idem: Idempotency, body: dict[str, Any]) -> bytes:
    """``body`` as JSON, encrypted under the key's derived key: nonce ‖ ciphertext ‖ tag."""
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return nonce + _aead(idem.key).encrypt(nonce, plain, idem.key_sha256)


def unseal(idem: Idempotency, sealed: bytes) -> dict[str, Any]:
    nonce, cipher = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        plain = _aead(idem.key).decrypt(nonce, cipher, idem.key_sha256)
    except InvalidTag:
        logger.error("a stored idempotent response does not open with its key")
        raise InternalError() from None
    return json.loads(plain)


def claim_key(session: Session, idem: Idempotency, now: datetime) -> StoredResponse | None:
    """Take the key for this submission, in the caller's transaction, or return the first
    answer given under it (409 ``idempotency_conflict`` for another body).

    The INSERT … ON CONFLICT DO NOTHING holds the key until the caller's transaction ends:
    a concurrent submission with the same key waits on it, then replays the answer
    committed under it (or takes the key if that transaction rolled back). The row is
    written whole (``record_response``) before the transaction that took it commits, so
    no one ever reads a half-written one. An expired row of the same key is removed
    first: the key then starts afresh."""
    key_sha256 = idem.key_sha256
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.key_sha256 == key_sha256,
            IdempotencyKey.created_at < now - IDEMPOTENCY_TTL,
        )
    )
    taken = session.execute(
        pg_insert(IdempotencyKey)
        .values(key_sha256=key_sha256, body_sha256=idem.body_sha256, status_code=0, created_at=now)
        .on_conflict_do_nothing(index_elements=["key_sha256"])
        .returning(IdempotencyKey.key_sha256)
    ).first()
    if taken is not None:
        return None
    row = session.execute(
        select(IdempotencyKey).where(IdempotencyKey.key_sha256 == key_sha256)
    ).scalar_one()
    if row.body_sha256 != idem.body_sha256:
        raise Conflict("idempotency_conflict")
    if row.sealed is None:  # cannot happen: the row is completed in the transaction taking it
        raise InternalError()
    return StoredResponse(
        status_code=row.status_code, body=unseal(idem, row.sealed), request_id=row.request_id
    )


def record_response(
    session: Session, idem: Idempotency, status_code: int, body: dict[str, Any], request_id: int
) -> None:
    """Complete the row taken by ``claim_key`` with the sealed answer."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key_sha256 == idem.key_sha256)
        .values(status_code=status_code, sealed=seal(idem, body), request_id=request_id)
    )
