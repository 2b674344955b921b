"""15-minute service circles 一刻钟服务圈 around venues."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, in_values, now_column, valid_geometry


class ServiceCircle(Base):
    __tablename__ = "service_circles"
    __table_args__ = (
        gist_index("service_circles"),
        valid_geometry(),
        in_values("method", ("network", "buffer"), "method"),
        in_values("budget_unit", ("m", "min"), "budget_unit"),
        CheckConstraint("budget_m > 0", name="budget"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    tier: Mapped[str] = mapped_column(String(16))
    budget_m: Mapped[float] = mapped_column(Float)
    budget_unit: Mapped[str] = mapped_column(String(4))
    buffer_m: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))
    network_version: Mapped[int | None] = mapped_column(Integer)
    geom = geometry("MULTIPOLYGON")
    built_at: Mapped[datetime] = now_column()
