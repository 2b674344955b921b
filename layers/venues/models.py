"""Venues and service points 活动阵地、便民服务点."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, now_column


class Venue(Base):
    __tablename__ = "venues"
    __table_args__ = (
        gist_index("venues"),
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    osm_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    opening_hours: Mapped[str | None] = mapped_column(String(200))
    capacity: Mapped[int | None] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    address: Mapped[str | None] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    geom = geometry("POINT")
    created_at: Mapped[datetime] = now_column()
