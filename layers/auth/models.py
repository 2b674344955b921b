"""Accounts, roles and role bindings to areas or grids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, in_values, now_column

SCOPE_KINDS = ("global", "area", "grid")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    token_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = now_column()


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (in_values("scope_kind", SCOPE_KINDS, "scope_kind"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))
    scope_kind: Mapped[str] = mapped_column(String(16))


class RoleBinding(Base):
    """A user holds a role over an area (and its subtree), a grid (by code) or everything."""

    __tablename__ = "role_bindings"
    __table_args__ = (
        UniqueConstraint("user_id", "role_code", "area_id", "grid_code"),
        CheckConstraint("area_id IS NULL OR grid_code IS NULL", name="one_scope"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_code: Mapped[str] = mapped_column(ForeignKey("roles.code"))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    created_at: Mapped[datetime] = now_column()


class AuthSession(Base):
    """A signed-in browser session, kept server-side so that logout ends it (the cookie holds
    a random id; only its SHA-256 is stored). It ends when revoked, after ``idle`` without a
    request, at ``expires_at`` whatever happens, and when the account's token version moves
    (password change or reset, sign out everywhere, deactivation)."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = now_column()
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))


class LoginThrottle(Base):
    """Failed-login counters: one row per account name (``u:`` + a keyed hash of the name as
    typed, existing or not, so a delay tells nothing about which names exist) and one per
    client address (``a:`` + address). ``next_allowed_at`` refuses attempts until then."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_allowed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


LOGIN_CHANNELS = ("form", "token", "account")
LOGIN_OUTCOMES = (
    "success",
    "failure",
    "throttled",
    "logout",
    "signed_out_everywhere",
    "password_changed",
    "password_change_failed",
)


class LoginEvent(Base):
    """The login audit log: who, when, from where, with what, and how it ended. Never a
    password; the name typed is kept only when it names an account (a password typed into
    the name field must not land here)."""

    __tablename__ = "login_events"
    __table_args__ = (
        in_values("channel", LOGIN_CHANNELS, "channel"),
        in_values("outcome", LOGIN_OUTCOMES, "outcome"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = now_column()
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    username: Mapped[str | None] = mapped_column(String(80))
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
