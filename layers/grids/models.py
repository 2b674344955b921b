"""Grids 网格 and their versions (generations, DESIGN §2)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, now_column, valid_geometry


class Generation(Base):
    """A published version of the grid layer; the current one is the highest id."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    published_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    published_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    draft_id: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class Grid(Base):
    """One versioned grid row; live iff generation_low <= current < coalesce(high, inf)."""

    __tablename__ = "grids"
    __table_args__ = (
        gist_index("grids"),
        gist_index(
            "grids_live",
            postgresql_where=text("generation_high IS NULL"),
        ),
        valid_geometry(),
        CheckConstraint("code ~ '^[0-9]{15}$'", name="code_format"),
        CheckConstraint(
            "generation_high IS NULL OR generation_high > generation_low", name="generations"
        ),
        CheckConstraint("households >= 0 AND population >= 0", name="counts"),
        UniqueConstraint("code", "generation_low"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(15), index=True)
    name: Mapped[str] = mapped_column(String(200))
    community_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    leader_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    households: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    population: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    generation_low: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    generation_high: Mapped[int | None] = mapped_column(ForeignKey("generations.id"))
    geom = geometry("MULTIPOLYGON")
    created_at: Mapped[datetime] = now_column()
