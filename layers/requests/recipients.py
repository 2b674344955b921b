"""Who must act on a request: the people the action table's ``notify`` rules name.

- ``grid_team``: the grid's leader (its row) and the accounts bound as its leader;
- ``owner``: the grid team at the grid level, else the staff bound to the owning area
  (community, its street or the district);
- ``offered``: the volunteers the action offered the request to;
- ``previous_assignee``: the volunteer who held it before the action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from layers.auth.models import RoleBinding
from layers.requests.states import OwnerLevel

logger = logging.getLogger(__name__)

# The leader of grid ``g`` (its row) and the accounts bound as its leader, leader first.
GRID_PEOPLE_SQL = (
    "array_remove(g.leader_user_id || ARRAY(SELECT rb.user_id FROM role_bindings rb"
    " WHERE rb.grid_code = g.code AND rb.role_code = 'grid_leader' ORDER BY rb.user_id), NULL)"
)
_LEVEL_STEPS = {"community": 0, "street": 1, "district": 2}


def grid_people(session: Session, grid_id: int | None) -> list[int]:
    """The grid's leader (grid row) and the accounts bound as its leader."""
    if grid_id is None:
        return []
    people = session.scalar(
        text(f"SELECT {GRID_PEOPLE_SQL} FROM grids g WHERE g.id = :g"), {"g": grid_id}
    )
    return list(people or [])


def _level_area_id(session: Session, community_id: int | None, level: str) -> int | None:
    """The area owning a request at ``level`` (community, its street, or the district)."""
    area_id = community_id
    for _ in range(_LEVEL_STEPS.get(level, 0)):
        if area_id is None:
            return None
        area_id = session.scalar(text("SELECT parent_id FROM areas WHERE id = :a"), {"a": area_id})
    return area_id


def level_people(session: Session, community_id: int | None, level: str) -> list[int]:
    """Staff bound to the area owning a request of ``community_id`` at ``level``."""
    area_id = _level_area_id(session, community_id, level)
    if area_id is None:
        return []
    return list(
        session.scalars(
            select(RoleBinding.user_id)
            .where(
                RoleBinding.area_id == area_id,
                RoleBinding.role_code.in_(("community_staff", "street_staff")),
            )
            .order_by(RoleBinding.user_id)
        ).all()
    )


def owner_people(
    session: Session, owner_level: str, grid_id: int | None, community_id: int | None
) -> list[int]:
    """Who must act on a request at its owner level."""
    if owner_level == OwnerLevel.GRID:
        return grid_people(session, grid_id)
    return level_people(session, community_id, owner_level)


RULES = ("grid_team", "owner", "offered", "previous_assignee")


def addressees(
    rules: Iterable[str],
    *,
    grid_team: Callable[[], Iterable[int]],
    owner: Callable[[], Iterable[int]],
    offered: Iterable[int | None] = (),
    previous_assignee: int | None = None,
) -> tuple[list[int], list[int | None]]:
    """(users, volunteers) the named ``rules`` address; the people lookups run only for the
    rules named (intake passes what it has already read)."""
    users: list[int] = []
    volunteers: list[int | None] = []
    for rule in rules:
        if rule == "grid_team":
            users += grid_team()
        elif rule == "owner":
            users += owner()
        elif rule == "offered":
            volunteers += offered
        elif rule == "previous_assignee":
            volunteers.append(previous_assignee)
        else:
            raise ValueError(f"unknown recipients rule {rule!r}")
    return users, volunteers


def outbox_rows(
    users: Iterable[int | None], volunteers: Iterable[int | None], *, unaddressed: bool = True
) -> list[dict]:
    """Outbox addressees ``{"u": user, "v": volunteer}``, each once; with ``unaddressed`` one
    row for nobody when nobody is known, so the work is never invisible."""
    rows = [{"u": u, "v": None} for u in dict.fromkeys(u for u in users if u is not None)]
    rows += [{"u": None, "v": v} for v in dict.fromkeys(v for v in volunteers if v is not None)]
    if not rows and unaddressed:
        return [{"u": None, "v": None}]
    return rows
