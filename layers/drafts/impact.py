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

from geo.validation import UtmProjector, building_grid_index, repair
from layers.auth.pii import mask_name
from layers.drafts.service import (
    FINISHED_STATUSES,
    GridRow,
    _draft,
    _geom,
    _rows,
    community_generation,
    current_generation,
    load_buildings,
    load_community,
)

logger = logging.getLogger(__name__)


def _live_rows(session: Session, community_id: int) -> list[GridRow]:
    cur = current_generation(session)
    rows = session.execute(
        text(
            "SELECT id, code, name, leader_user_id, households, population,"
            " ST_AsBinary(geom) AS g FROM grids WHERE community_id = :c AND generation_low <= :cur"
            " AND (generation_high IS NULL OR generation_high > :cur) ORDER BY code"
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


def _place(rows: list[GridRow], points: list[BaseGeometry]) -> list[str | None]:
    where, _ = building_grid_index(
        [repair(r.geom) for r in rows], [r.code for r in rows], points, np.zeros(len(points))
    )
    return [_label(rows, int(i)) for i in where]


def draft_impact(*, session: Session, draft_id: int, user_id: int | None) -> dict[str, Any]:
    """Per grid: buildings and households gained and lost, households and area before/after;
    the open requests, volunteers and building leaders whose grid changes; grid leaders who
    gain or lose area (leader of the row or bound to the code as grid_leader)."""
    draft = _draft(session, draft_id, user_id, lock=False)
    community = load_community(session, id=draft.community_id)
    before = _live_rows(session, community.id)
    after = _rows(session, draft.id)
    proj = UtmProjector(community.geom)

    b = load_buildings(session, community)
    b_before = _place(before, b.rep_points)
    b_after = _place(after, b.rep_points)

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
            " WHERE r.community_id = :c AND NOT (r.status = ANY(:finished)) ORDER BY r.id"
        ),
        {"c": community.id, "finished": list(FINISHED_STATUSES)},
    ).all()
    r_after = _place(after, [_geom(r.p) for r in reqs])
    requests_moved = [
        {"id": r.id, "number": r.number, "status": r.status, "from": r.grid_code, "to": new}
        for r, new in zip(reqs, r_after, strict=True)
        if r.grid_code is not None and r.grid_code != new
    ]
    vols = session.execute(
        text(
            "SELECT v.id, v.name, ST_AsBinary(v.geom) AS p FROM volunteers v, areas c"
            " WHERE c.id = :c AND v.active AND (v.community_id = c.id OR ST_Covers(c.geom, v.geom))"
            " ORDER BY v.id"
        ),
        {"c": community.id},
    ).all()
    v_points = [_geom(v.p) for v in vols]
    v_before, v_after = _place(before, v_points), _place(after, v_points)
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
