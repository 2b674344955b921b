"""One row per (bucket, key): the hits in its current window and when that window ends."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base

BUCKET_CHARS = 40
KEY_CHARS = 200


class RateLimit(Base):
    """A fixed window per key, opened by the key's first hit and lasting the limit's window
    (``layers.ratelimits.service``). UNLOGGED and fillfactor 50 (migration 0010): the counts
    are worth less than a WAL record per request (a crash empties the table, which forgives
    everyone once), and a hit's UPDATE stays heap-only. Rows whose window has ended are purged
    by the deadline job."""

    __tablename__ = "rate_limits"
    __table_args__ = ({"prefixes": ["UNLOGGED"]},)

    bucket: Mapped[str] = mapped_column(String(BUCKET_CHARS), primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_CHARS), primary_key=True)
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hits: Mapped[int] = mapped_column(Integer)
