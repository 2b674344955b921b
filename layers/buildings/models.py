"""Buildings 楼栋: immutable code; their grid is derived, never stored (DESIGN §2)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, now_column, valid_geometry


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (
        gist_index("buildings"),
        gist_index("buildings", "rep_point"),
        valid_geometry(),
        CheckConstraint("households >= 0", name="households"),
        CheckConstraint("levels IS NULL OR levels > 0", name="levels"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    osm_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    building_type: Mapped[str | None] = mapped_column(String(64))
    levels: Mapped[int | None] = mapped_column(Integer)
    residential: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    households: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    households_estimated: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    # the building leader (楼栋长): personal, masked outside the viewer's street
    leader_name: Mapped[str | None] = mapped_column(String(100))
    leader_phone: Mapped[str | None] = mapped_column(String(32))
    # their account, when they have one: it may publish a public contact (layers.contacts)
    leader_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    geom = geometry("POLYGON")
    rep_point = geometry("POINT")
    created_at: Mapped[datetime] = now_column()
