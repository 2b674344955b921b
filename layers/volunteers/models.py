"""Volunteers (在职党员"双报到"、志愿者) registered with their home community."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, now_column


class Volunteer(Base):
    __tablename__ = "volunteers"
    __table_args__ = (
        gist_index("volunteers"),
        CheckConstraint("load_limit >= 0 AND active_load >= 0", name="load"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    skills: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), default=list, server_default=text("'{}'")
    )
    availability: Mapped[dict] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    load_limit: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    active_load: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    geom = geometry("POINT")
    registered_at: Mapped[datetime] = now_column()


class VolunteerSkillPoint(Base):
    """Derived, kept by triggers on ``volunteers`` (migration 0004): one row per skill of each
    volunteer who can take work now (active, below the load limit), with the home point and
    what an offer shows and ranks by, so "nearest volunteers who can take a request of
    category X" is one KNN scan of the (category, geom) GiST index, no join. Never written
    by the application."""

    __tablename__ = "volunteer_skill_points"
    __table_args__ = (
        Index(
            "ix_volunteer_skill_points_category_geom", "category", "geom", postgresql_using="gist"
        ),
    )

    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    geom = geometry("POINT")
    name: Mapped[str] = mapped_column(String(100))
    availability: Mapped[dict] = mapped_column(JSONB)
    active_load: Mapped[int] = mapped_column(Integer)
