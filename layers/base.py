"""Declarative base and the column helpers every layer shares."""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import CheckConstraint, DateTime, Index, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID = 4326

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def geometry(kind: str, *, nullable: bool = False) -> Mapped:
    """A SRID-4326 geometry column; its GiST index is declared with ``gist_index``."""
    return mapped_column(Geometry(kind, srid=SRID, spatial_index=False), nullable=nullable)


def gist_index(table: str, column: str = "geom", **kw: object) -> Index:
    return Index(f"ix_{table}_{column}_gist", column, postgresql_using="gist", **kw)


def valid_geometry(column: str = "geom") -> CheckConstraint:
    """Geometry validity enforced by the database, not only by importers."""
    return CheckConstraint(f"ST_IsValid({column})", name=f"{column}_valid")


def in_values(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)


def now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
