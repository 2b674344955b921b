"""Administrative areas: district 区 → street 街道 → community 社区."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, String
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, in_values, now_column, valid_geometry

AREA_LEVELS = ("district", "street", "community")
CODE_LENGTH = {"district": 6, "street": 9, "community": 12}


class Area(Base):
    __tablename__ = "areas"
    __table_args__ = (
        gist_index("areas"),
        valid_geometry(),
        in_values("level", AREA_LEVELS, "level"),
        CheckConstraint(
            "(level = 'district' AND code ~ '^[0-9]{6}$' AND parent_id IS NULL)"
            " OR (level = 'street' AND code ~ '^[0-9]{9}$' AND parent_id IS NOT NULL)"
            " OR (level = 'community' AND code ~ '^[0-9]{12}$' AND parent_id IS NOT NULL)",
            name="code_matches_level",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    geom = geometry("MULTIPOLYGON")
    created_at: Mapped[datetime] = now_column()
