"""Requests 民情诉求, their append-only history, offers, idempotency keys and the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, in_values, now_column
from layers.requests.states import OPEN, OwnerLevel, Status

STATUSES = tuple(s.value for s in Status)
# The open statuses as an SQL predicate: the partial index below and the duplicates query
# must spell it the same way for the planner to use the index.
OPEN_STATUSES_SQL = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(OPEN)))
OWNER_LEVELS = tuple(o.value for o in OwnerLevel)


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        gist_index("requests"),
        in_values("status", STATUSES, "status"),
        in_values("owner_level", OWNER_LEVELS, "owner_level"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating"),
        CheckConstraint("char_length(text) <= 2000", name="text_length"),
        Index("ix_requests_status_deadline", "status", "deadline_at"),
        # a volunteer's work; most requests have no assignee (migration 0006)
        Index(
            "ix_requests_assignee_id",
            "assignee_id",
            postgresql_where=text("assignee_id IS NOT NULL"),
        ),
        # possible duplicates: nearest open requests of one category (migration 0004)
        Index(
            "ix_requests_open_category_geom_gist",
            "category",
            "geom",
            postgresql_using="gist",
            postgresql_where=text(OPEN_STATUSES_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    # SHA-256 of the whole ticket; found through the request id the ticket names
    ticket_hash: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(String(100))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    owner_level: Mapped[str] = mapped_column(String(16))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("requests.id"))
    building_code: Mapped[str | None] = mapped_column(String(24))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # set at intake, never changed (按期结案率); deadline_at is the current level's (0008)
    first_deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # some level's deadline passed before it was met (kept when the level changes)
    was_overdue: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    geom = geometry("POINT")
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()


class RequestEvent(Base):
    """Append-only history (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    at: Mapped[datetime] = now_column()
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    owner_level: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))


class RequestOffer(Base):
    """Volunteers offered a request (接单候选), ranked by distance."""

    __tablename__ = "request_offers"

    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(
        ForeignKey("volunteers.id"), primary_key=True, index=True
    )
    rank: Mapped[int] = mapped_column(SmallInteger)
    distance_m: Mapped[float] = mapped_column(Float)
    distance_method: Mapped[str] = mapped_column(String(16))
    offered_at: Mapped[datetime] = now_column()


class IdempotencyKey(Base):
    """Idempotency-Key on submit (``layers.requests.idempotency``): the key alone is the
    scope and only its SHA-256 is kept; the first 201 is sealed under a key derived from
    the Idempotency-Key, so a dump reveals no ticket. Kept 24 h."""

    __tablename__ = "idempotency_keys"

    key_sha256: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    # nonce ‖ AES-256-GCM ciphertext ‖ tag of the response JSON; NULL only inside the
    # transaction that took the key
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"))
    created_at: Mapped[datetime] = now_column()


class Notification(Base):
    """Outbox: one entry per event someone must act on; delivery channels come later."""

    __tablename__ = "notifications"
    # each row names a user or a volunteer: index only that one (migration 0006)
    __table_args__ = tuple(
        Index(f"ix_notifications_{c}", c, postgresql_where=text(f"{c} IS NOT NULL"))
        for c in ("recipient_user_id", "recipient_volunteer_id")
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # no foreign key: the log is append-only and the id comes from the same write (0006)
    event_id: Mapped[int] = mapped_column(BigInteger, index=True)
    recipient_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recipient_volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = now_column()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
