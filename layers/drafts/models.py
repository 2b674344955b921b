"""Grid drafts (a planner's private redraw of one community) and the audit log.

A draft copies the community's live grid rows and remembers the generation it started from
(``base_generation``); publishing turns it into generation N+1 (DESIGN §2). Draft geometries
may be invalid (an uploaded file's bowtie): validation reports them with their repair and
publishing refuses them, so no validity constraint here, unlike ``grids``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, in_values, now_column

DRAFT_STATUSES = ("open", "published", "discarded")


class GridDraft(Base):
    __tablename__ = "grid_drafts"
    __table_args__ = (in_values("status", DRAFT_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    base_generation: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    # planning rules the draft is validated against (households range, tolerances)
    rules: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    published_generation: Mapped[int | None] = mapped_column(ForeignKey("generations.id"))


class DraftGrid(Base):
    __tablename__ = "draft_grids"
    __table_args__ = (gist_index("draft_grids"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    draft_id: Mapped[int] = mapped_column(
        ForeignKey("grid_drafts.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str | None] = mapped_column(String(64))  # may be missing / malformed
    name: Mapped[str | None] = mapped_column(String(200))
    leader_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    households: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    population: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    geom = geometry("MULTIPOLYGON")


class AuditEntry(Base):
    """Who did what to the grid layer, when (publish, restore); append-only by convention."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()"), nullable=False
    )
    action: Mapped[str] = mapped_column(String(32))
    draft_id: Mapped[int | None] = mapped_column(ForeignKey("grid_drafts.id"), index=True)
    generation: Mapped[int | None] = mapped_column(ForeignKey("generations.id"))
    summary: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
