"""Accounts, roles and role bindings to areas or grids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Integer,
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
