"""The walking network: nodes keep their OSM ids, edges their length in metres."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Identity,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.base import Base, geometry, gist_index, now_column, valid_geometry


class NetworkVersion(Base):
    """Each import of the network is a version; worker caches are keyed by it."""

    __tablename__ = "network_versions"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    source: Mapped[str] = mapped_column(String(300))
    summary: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = now_column()


class NetworkNode(Base):
    __tablename__ = "network_nodes"
    __table_args__ = (gist_index("network_nodes"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    osm_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    geom = geometry("POINT")


class NetworkEdge(Base):
    __tablename__ = "network_edges"
    __table_args__ = (
        gist_index("network_edges"),
        valid_geometry(),
        CheckConstraint("length_m >= 0", name="length"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    source: Mapped[int] = mapped_column(ForeignKey("network_nodes.id"), index=True)
    target: Mapped[int] = mapped_column(ForeignKey("network_nodes.id"), index=True)
    length_m: Mapped[float] = mapped_column(Float)
    osm_way_id: Mapped[int | None] = mapped_column(BigInteger)
    highway: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    geom = geometry("LINESTRING")
