"""A leader's public contact (公开联系方式): what residents may see unmasked, by consent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, now_column


class PublicContact(Base):
    """The display name and work phone a grid leader or a building leader published for
    residents, and when they consented; withdrawing deletes the row (the audit log keeps
    both events). Personal names and phones (``users``, ``buildings.leader_*``) stay masked
    by role: only this row is shown unmasked."""

    __tablename__ = "public_contacts"
    __table_args__ = (
        CheckConstraint("length(btrim(display_name)) > 0", name="display_name_given"),
        CheckConstraint("work_phone ~ '^[0-9+() -]{3,32}$'", name="work_phone_format"),
    )

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str] = mapped_column(String(100))
    work_phone: Mapped[str] = mapped_column(String(32))
    consented_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = now_column()
