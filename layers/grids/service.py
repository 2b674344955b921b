"""Reading live grids by code (the grid a QR code or a binding names)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth.pii import mask_name, mask_phone
from layers.contacts.service import public_contact_join
from layers.errors import NotFound
from layers.grids.repo import LIVE_GRIDS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridCard:
    """What a printed service card (and ``/r``) shows: public facts, the leader's personal
    contact masked, and the public contact they published with consent, as it is."""

    code: str
    name: str
    community: str
    street: str
    households: int
    leader_name: str | None
    leader_phone: str | None
    centroid_lonlat: tuple[float, float]
    public_name: str | None = None
    public_phone: str | None = None


def grid_card(*, session: Session, code: str) -> GridCard:
    """The live grid ``code`` for its service card; 404 ``unknown_grid`` if none is live."""
    row = session.execute(
        text(
            f"""
            SELECT g.code, g.name, c.name AS community, s.name AS street, g.households,
                   coalesce(lu.display_name, bu.display_name) AS leader_name,
                   coalesce(lu.phone, bu.phone) AS leader_phone,
                   pc.display_name AS public_name, pc.work_phone AS public_phone,
                   ST_X(ST_PointOnSurface(g.geom)) AS lon, ST_Y(ST_PointOnSurface(g.geom)) AS lat
            FROM grids g
            JOIN areas c ON c.id = g.community_id
            LEFT JOIN areas s ON s.id = c.parent_id
            LEFT JOIN users lu ON lu.id = g.leader_user_id
            LEFT JOIN LATERAL (
                SELECT u.id, u.display_name, u.phone
                FROM role_bindings b JOIN users u ON u.id = b.user_id
                WHERE b.grid_code = g.code AND b.role_code = 'grid_leader' AND u.active
                ORDER BY b.id LIMIT 1
            ) bu ON TRUE
            {public_contact_join("coalesce(lu.id, bu.id)")}
            WHERE g.code = :code AND {LIVE_GRIDS}
            """
        ),
        {"code": code},
    ).first()
    if row is None:
        raise NotFound("unknown_grid", code=code)
    return GridCard(
        code=row.code,
        name=row.name,
        community=row.community,
        street=row.street,
        households=row.households,
        leader_name=mask_name(row.leader_name),
        leader_phone=mask_phone(row.leader_phone),
        centroid_lonlat=(row.lon, row.lat),
        public_name=row.public_name,
        public_phone=row.public_phone,
    )


def grids_bounds(
    session: Session, codes: list[str]
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(south, west), (north, east) around the live grids ``codes``."""
    row = session.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(g.geom)"
            f" AS e FROM grids g WHERE g.code = ANY(:c) AND {LIVE_GRIDS}) x"
        ),
        {"c": list(codes)},
    ).one()
    if row[0] is None:
        return None
    return (row[1], row[0]), (row[3], row[2])


def grid_bounds(
    session: Session, code: str
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(south, west), (north, east) of the live grid ``code``."""
    return grids_bounds(session, [code])
