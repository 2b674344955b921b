"""What publishing a draft would change, before anything changes (issue: impact preview).

Grids are compared by code: the community's live rows (before) against the draft's rows
(after). Buildings, requests and volunteers are placed in both with the same rule the live
system uses (the grid covering the point, lowest code on a border — ``geo.validation``), so
"moved" means exactly what a publish would do. Areas are measured in UTM m².
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.assign import GridIndex
from geo.validation import UtmProjector, repair
from layers.auth.pii import mask_name
from layers.drafts.service import (
    FINISHED_STATUSES,
    GridRow,
    _draft,
    _geom,
    _rows,
    community_generation,
    load_buildings,
    load_community,
)
from layers.grids.repo import current_generation, live_sql
from layers.requests.workflow import Status

logger = logging.getLogger(__name__)

# statuses a publish re-homes (an equality list lets PostgreSQL combine its indexes)
UNFINISHED_STATUSES = sorted({s.value for s in Status} - set(FINISHED_STATUSES))


def _live_rows(session: Session, community_id: int) -> list[GridRow]:
    cur = current_generation(session)
    rows = session.execute(
        text(
            "SELECT id, code, name, leader_user_id, households, population,"
            " ST_AsBinary(geom) AS g FROM grids"
            f" WHERE community_id = :c AND {live_sql('', ':cur')} ORDER BY code"
        ),
        {"c": community_id, "cur": cur},
    ).all()
    return [
        GridRow(r.id, r.code, r.name, r.leader_user_id, r.households, r.population, _geom(r.g))
        for r in rows
    ]


def _label(rows: list[GridRow], i: int) -> str | None:
    if i < 0:
        return None
    r = rows[i]
    return r.code if r.code else f"#{r.id}"


class _Placer:
    """Places points in one set of grid rows (index built once, reused for every layer)."""

    def __init__(self, rows: list[GridRow]) -> None:
        geoms = [repair(r.geom) for r in rows]
        geoms = [g if not g.is_empty else None for g in geoms]
        # missing codes sort after every real code, stably by position (as geo.validation)
        keys = np.array(
            [str(r.code) if r.code not in (None, "") else f"~{i:09d}" for i, r in enumerate(rows)]
        )
        self.index = GridIndex(np.array(geoms, dtype=object), keys) if rows else None
        self.labels = [_label(rows, i) for i in range(len(rows))]

    def __call__(self, points: list[BaseGeometry]) -> list[str | None]:
        if self.index is None or not len(points):
            return [None] * len(points)
        xy = shapely.get_coordinates(np.asarray(points, dtype=object))
        where = self.index.assign(xy[:, 0], xy[:, 1])
        return [self.labels[i] if i >= 0 else None for i in where.tolist()]


def _points(raw: list[Any]) -> list[BaseGeometry]:
    return list(shapely.from_wkb([bytes(p) for p in raw]))


def draft_impact(*, session: Session, draft_id: int, user_id: int | None) -> dict[str, Any]:
    """Per grid: buildings and households gained and lost, households and area before/after;
    the open requests, volunteers and building leaders whose grid changes; grid leaders who
    gain or lose area (leader of the row or bound to the code as grid_leader)."""
    draft = _draft(session, draft_id, user_id, lock=False)
    community = load_community(session, id=draft.community_id)
    before = _live_rows(session, community.id)
    after = _rows(session, draft.id)
    proj = UtmProjector(community.geom)

    place_before, place_after = _Placer(before), _Placer(after)
    b = load_buildings(session, community)
    b_before = place_before(b.rep_points)
    b_after = place_after(b.rep_points)

    codes = sorted(
        {_label(before, i) for i in range(len(before))}
        | {_label(after, i) for i in range(len(after))}
    )
    stats: dict[str, dict[str, Any]] = {
        c: {
            "code": c,
            "households_before": 0,
            "households_after": 0,
            "buildings_before": 0,
            "buildings_after": 0,
            "buildings_gained": 0,
            "buildings_lost": 0,
            "households_gained": 0,
            "households_lost": 0,
        }
        for c in codes
    }
    moved_buildings = []
    for k, (old, new) in enumerate(zip(b_before, b_after, strict=True)):
        h = int(b.households[k])
        if old is not None:
            stats[old]["households_before"] += h
            stats[old]["buildings_before"] += 1
        if new is not None:
            stats[new]["households_after"] += h
            stats[new]["buildings_after"] += 1
        if old != new:
            if old is not None:
                stats[old]["buildings_lost"] += 1
                stats[old]["households_lost"] += h
            if new is not None:
                stats[new]["buildings_gained"] += 1
                stats[new]["households_gained"] += h
            p = b.rep_points[k]
            moved_buildings.append(
                {
                    "code": b.codes[k],
                    "from": old,
                    "to": new,
                    "households": h,
                    "has_leader": bool(b.leaders[k]),
                    "point": [round(p.x, 7), round(p.y, 7)],
                }
            )
    leaders_of_buildings = [
        {
            "building": b.codes[k],
            "leader_name": mask_name(b.leaders[k]),
            "from": b_before[k],
            "to": b_after[k],
        }
        for k in range(len(b.codes))
        if b.leaders[k] and b_before[k] != b_after[k]
    ]

    # --- areas per code
    def by_code(rows: list[GridRow]) -> dict[str, BaseGeometry]:
        out: dict[str, list[BaseGeometry]] = {}
        for i, r in enumerate(rows):
            out.setdefault(_label(rows, i), []).append(proj.to_utm(repair(r.geom)))
        return {c: shapely.union_all(gs) for c, gs in out.items()}

    area_before, area_after = by_code(before), by_code(after)
    empty = shapely.Polygon()
    for c in codes:
        g0, g1 = area_before.get(c, empty), area_after.get(c, empty)
        s = stats[c]
        s["area_before_m2"] = round(float(g0.area), 1)
        s["area_after_m2"] = round(float(g1.area), 1)
        s["area_gained_m2"] = round(float(shapely.difference(g1, g0).area), 1)
        s["area_lost_m2"] = round(float(shapely.difference(g0, g1).area), 1)
        if c not in area_before:
            s["status"] = "added"
        elif c not in area_after:
            s["status"] = "removed"
        elif s["area_gained_m2"] < 1.0 and s["area_lost_m2"] < 1.0:
            s["status"] = "unchanged"
        else:
            s["status"] = "changed"

    # --- grid leaders: the row's leader and users bound to the code as grid leader
    leaders: dict[str, set[int]] = {}
    for r in before:
        if r.leader_user_id is not None and r.code:
            leaders.setdefault(r.code, set()).add(r.leader_user_id)
    for row in session.execute(
        text(
            "SELECT grid_code, user_id FROM role_bindings WHERE role_code = 'grid_leader'"
            " AND grid_code = ANY(:codes)"
        ),
        {"codes": [c for c in codes if c]},
    ):
        leaders.setdefault(row.grid_code, set()).add(row.user_id)
    names = dict(
        session.execute(
            text("SELECT id, username FROM users WHERE id = ANY(:ids)"),
            {"ids": sorted({u for us in leaders.values() for u in us})},
        ).all()
    )
    leader_changes = [
        {
            "user_id": uid,
            "username": names.get(uid),
            "grid": code,
            "area_gained_m2": stats[code]["area_gained_m2"],
            "area_lost_m2": stats[code]["area_lost_m2"],
            "grid_removed": stats[code]["status"] == "removed",
        }
        for code, uids in sorted(leaders.items())
        if code in stats and stats[code]["status"] in ("changed", "removed")
        for uid in sorted(uids)
    ]

    # --- open requests and volunteers whose grid changes
    reqs = session.execute(
        text(
            "SELECT r.id, r.number, r.status, g.code AS grid_code, ST_AsBinary(r.geom) AS p"
            " FROM requests r LEFT JOIN grids g ON g.id = r.grid_id"
            " WHERE r.community_id = :c AND r.status = ANY(:unfinished) ORDER BY r.id"
        ),
        {"c": community.id, "unfinished": UNFINISHED_STATUSES},
    ).all()
    r_after = place_after(_points([r.p for r in reqs]))
    requests_moved = [
        {"id": r.id, "number": r.number, "status": r.status, "from": r.grid_code, "to": new}
        for r, new in zip(reqs, r_after, strict=True)
        if r.grid_code is not None and r.grid_code != new
    ]
    vols = session.execute(
        text(
            # two indexed halves (by community, by location) instead of one OR: the OR made
            # PostgreSQL scan every volunteer of the district
            "SELECT id, name, ST_AsBinary(geom) AS p FROM volunteers WHERE community_id = :c"
            " AND active UNION SELECT v.id, v.name, ST_AsBinary(v.geom) FROM volunteers v,"
            " areas c WHERE c.id = :c AND v.active AND ST_Covers(c.geom, v.geom) ORDER BY id"
        ),
        {"c": community.id},
    ).all()
    v_points = _points([v.p for v in vols])
    v_before, v_after = place_before(v_points), place_after(v_points)
    volunteers_moved = [
        {"id": v.id, "name": mask_name(v.name), "from": old, "to": new}
        for v, old, new in zip(vols, v_before, v_after, strict=True)
        if old != new
    ]
    grids = [stats[c] for c in codes]
    return {
        "draft_id": draft.id,
        "community_code": community.code,
        "base_generation": draft.base_generation,
        "stale": community_generation(session, community.id) > draft.base_generation,
        "totals": {
            "grids_before": len(before),
            "grids_after": len(after),
            "grids_changed": sum(1 for g in grids if g["status"] == "changed"),
            "grids_added": sum(1 for g in grids if g["status"] == "added"),
            "grids_removed": sum(1 for g in grids if g["status"] == "removed"),
            "buildings_moved": len(moved_buildings),
            "households_moved": sum(m["households"] for m in moved_buildings),
            "requests_moved": len(requests_moved),
            "volunteers_moved": len(volunteers_moved),
            "building_leaders_moved": len(leaders_of_buildings),
            "grid_leaders_affected": len(leader_changes),
        },
        "grids": grids,
        "buildings_moved": moved_buildings,
        "building_leaders": leaders_of_buildings,
        "requests": requests_moved,
        "volunteers": volunteers_moved,
        "grid_leaders": leader_changes,
    }
