"""Edits of a planner's draft: draw, split, merge, move a boundary, rename, delete, repair,
renumber, replace from a file, propose a partition — each one transaction on the locked draft,
stored with its findings (``_store``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, text
from sqlalchemy.orm import Session

from geo.codes import grid_sequence, is_valid_grid_code
from geo.crs import to_wgs84
from geo.edits import EditError, draw_grid, merge_grids, move_boundary, split_grid
from geo.validation import (
    UtmProjector,
    households_per_grid,
    polygonal_part,
    repair,
)
from layers.drafts.models import GridDraft
from layers.drafts.service import (
    EDIT_OPS,
    PERSONS_PER_HOUSEHOLD,
    Community,
    GridRow,
    _ewkb,
    _geom,
    _open_draft,
    _rows,
    load_buildings,
    load_community,
)
from layers.drafts.upload import read_grid_file
from layers.errors import BadRequest, Conflict, MinqingError, NotFound, Unprocessable

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- edits


def _parse_geometry(value: Any, kinds: tuple[str, ...], field: str, crs: str) -> BaseGeometry:
    if not isinstance(value, dict) or value.get("type") not in kinds:
        raise BadRequest(
            "validation_failed", reason=f"{field} must be a GeoJSON {' or '.join(kinds)}"
        )
    try:
        geom = shape(value)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException) as e:
        raise BadRequest("validation_failed", reason=f"{field}: {e}") from e
    coords = shapely.get_coordinates(geom)
    if len(coords) == 0 or not np.isfinite(coords).all():
        raise BadRequest("validation_failed", reason=f"{field} has no usable coordinates")
    lon, lat = coords[:, 0], coords[:, 1]
    if (np.abs(lon) > 180).any() or (np.abs(lat) > 90).any():
        raise Unprocessable("coordinates_out_of_range", lon=float(lon[0]), lat=float(lat[0]))
    if crs != "wgs84":
        try:
            geom = shapely.transform(
                geom, lambda xy: np.column_stack(to_wgs84(xy[:, 0], xy[:, 1], crs))
            )
        except ValueError as e:
            raise BadRequest(
                "unknown_crs",
                crs=crs,
                supported="wgs84, gcj02, bd09, EPSG:<code>",
                available="wgs84, gcj02, bd09, EPSG:<code>",
            ) from e
    return geom


def _find(rows: list[GridRow], ref: Any) -> GridRow:
    for r in rows:
        if (isinstance(ref, int) and not isinstance(ref, bool) and r.id == ref) or (
            isinstance(ref, str) and r.code == ref
        ):
            return r
    raise NotFound("draft_grid_not_found", grid=str(ref))


def _edit_error(e: EditError, proj: UtmProjector | None = None) -> MinqingError:
    params = dict(e.params)
    if "repair" in params:
        rep = params.pop("repair")
        if proj is not None:
            rep = proj.to_lonlat(rep)
        params["repair"] = mapping(rep)
    return Unprocessable(e.code, **params)


def _used_codes(session: Session, community: Community, rows: list[GridRow]) -> set[str]:
    past = session.scalars(
        text("SELECT DISTINCT code FROM grids WHERE community_id = :c"), {"c": community.id}
    ).all()
    return {c for c in past if c} | {r.code for r in rows if r.code}


def _new_codes(session: Session, community: Community, rows: list[GridRow], n: int) -> list[str]:
    """``n`` unused codes after the highest sequence the community ever used."""
    seqs = [
        int(c[12:])
        for c in _used_codes(session, community, rows)
        if is_valid_grid_code(c) and c.startswith(community.code)
    ]
    start = max(seqs, default=0) + 1
    if start + n - 1 > 999:
        raise Conflict("grid_codes_exhausted", community_code=community.code)
    return [f"{community.code}{s:03d}" for s in range(start, start + n)]


def _invalid_input(geom: BaseGeometry, proj: UtmProjector, what: str) -> Unprocessable:
    reason = shapely.is_valid_reason(geom)
    fixed = repair(geom)
    return Unprocessable(
        "invalid_geometry",
        reason=(
            f"{what}: {reason}; make_valid would give {len(fixed.geoms)} polygon(s) of "
            f"{proj.to_utm(fixed).area:.0f} m² — send repair: true to use it"
        ),
        what=what,
        geos_reason=reason,
        repair=mapping(fixed),
    )


def apply_edit(*, session: Session, draft_id: int, user_id: int, body: dict[str, Any]) -> dict:
    """Apply one edit (``body["op"]``) to an open draft in one transaction.

    Returns what changed: ``{"op", "created": [codes], "changed": [...], "removed": [...]}``.
    Nothing is written when the edit fails.
    """
    op = body.get("op")
    if op not in EDIT_OPS:
        raise BadRequest("unknown_op", op=str(op), available=", ".join(EDIT_OPS))
    draft = _open_draft(session, draft_id, user_id)
    community = load_community(session, id=draft.community_id)
    rows = _rows(session, draft.id)
    proj = UtmProjector(community.geom)
    crs = str(body.get("crs") or "wgs84").lower()
    try:
        result = _EDITS[op](session, draft, community, rows, proj, body, crs)
    except EditError as e:
        session.rollback()
        raise _edit_error(e, proj) from e
    except MinqingError:
        session.rollback()
        raise
    new_rows, summary = result
    _store(session, draft, community, rows, new_rows)
    session.commit()
    summary["op"] = op
    return summary


def _edit_draw(session, draft, community, rows, proj, body, crs):
    drawn = _parse_geometry(body.get("geometry"), ("Polygon", "MultiPolygon"), "geometry", crs)
    if not drawn.is_valid:
        if not body.get("repair"):
            raise _invalid_input(drawn, proj, "drawn polygon")
        drawn = repair(drawn)
    mode = body.get("mode", "clip")
    new_utm, after_utm = draw_grid(
        proj.to_utm(drawn),
        [proj.to_utm(repair(r.geom)) for r in rows],
        proj.to_utm(community.geom),
        mode=mode,
    )
    code = body.get("code") or _new_codes(session, community, rows, 1)[0]
    out, changed = [], []
    for r, a in zip(rows, after_utm, strict=True):
        if mode == "carve" and not a.equals(polygonal_part(proj.to_utm(repair(r.geom)))):
            changed.append(r.code)
            if a.is_empty:
                continue
            r = GridRow(r.id, r.code, r.name, r.leader_user_id, 0, 0, proj.to_lonlat(a))
        out.append(r)
    name = body.get("name") or f"{community.name}新网格"
    out.append(GridRow(None, code, name, None, 0, 0, proj.to_lonlat(new_utm)))
    removed = [c for c in changed if c not in {r.code for r in out}]
    return out, {
        "created": [code],
        "changed": [c for c in changed if c not in removed],
        "removed": removed,
    }


def _edit_split(session, draft, community, rows, proj, body, crs):
    target = _find(rows, body.get("grid"))
    line = _parse_geometry(body.get("line"), ("LineString",), "line", crs)
    pieces = split_grid(proj.to_utm(repair(target.geom)), LineString(proj.to_utm(line)))
    codes = [target.code, *_new_codes(session, community, rows, len(pieces) - 1)]
    out = [r for r in rows if r is not target]
    base_name = target.name or ""
    for i, (piece, code) in enumerate(zip(pieces, codes, strict=True)):
        name = base_name if i == 0 else f"{base_name}（{i + 1}）"
        leader = target.leader_user_id if i == 0 else None
        rid = target.id if i == 0 else None
        out.append(GridRow(rid, code, name, leader, 0, 0, proj.to_lonlat(piece)))
    return out, {"created": codes[1:], "changed": [target.code], "removed": []}


def _edit_merge(session, draft, community, rows, proj, body, crs):
    refs = body.get("grids")
    if not isinstance(refs, list) or len(refs) < 2:
        raise BadRequest("validation_failed", reason="grids must list at least two grids")
    targets = [_find(rows, ref) for ref in refs]
    if len({id(t) for t in targets}) != len(targets):
        raise BadRequest("validation_failed", reason="a grid is listed twice")
    merged = merge_grids([proj.to_utm(repair(t.geom)) for t in targets])
    keep = min(targets, key=lambda t: (t.code is None, t.code or "", t.id or 0))
    code = body.get("code") or keep.code
    name = body.get("name") or keep.name
    out = [r for r in rows if all(r is not t for t in targets)]
    out.append(GridRow(keep.id, code, name, keep.leader_user_id, 0, 0, proj.to_lonlat(merged)))
    removed = [t.code for t in targets if t is not keep]
    return out, {"created": [], "changed": [code], "removed": removed}


def _edit_move(session, draft, community, rows, proj, body, crs):
    refs = body.get("grids")
    if not isinstance(refs, list) or len(refs) != 2:
        raise BadRequest("validation_failed", reason="grids must name the two neighbours")
    a, b = (_find(rows, ref) for ref in refs)
    if a is b:
        raise BadRequest("validation_failed", reason="the two grids must differ")
    line = _parse_geometry(body.get("line"), ("LineString",), "line", crs)
    new_a, new_b = move_boundary(
        proj.to_utm(repair(a.geom)), proj.to_utm(repair(b.geom)), LineString(proj.to_utm(line))
    )
    out = []
    for r in rows:
        if r is a:
            r = GridRow(a.id, a.code, a.name, a.leader_user_id, 0, 0, proj.to_lonlat(new_a))
        elif r is b:
            r = GridRow(b.id, b.code, b.name, b.leader_user_id, 0, 0, proj.to_lonlat(new_b))
        out.append(r)
    return out, {"created": [], "changed": [a.code, b.code], "removed": []}


def _edit_rename(session, draft, community, rows, proj, body, crs):
    target = _find(rows, body.get("grid"))
    old = target.code
    if "code" in body:
        code = body["code"]
        if code is not None and not isinstance(code, str):
            raise BadRequest("validation_failed", reason="code must be a string")
        target.code = code or None
    if "name" in body:
        target.name = body["name"]
    if "leader_user_id" in body:
        uid = body["leader_user_id"]
        if uid is not None and not session.scalar(
            text("SELECT 1 FROM users WHERE id = :u"), {"u": uid}
        ):
            raise NotFound("unknown_user", username=str(uid))
        target.leader_user_id = uid
    return rows, {"created": [], "changed": [old], "removed": [], "code": target.code}


def _edit_delete(session, draft, community, rows, proj, body, crs):
    target = _find(rows, body.get("grid"))
    return [r for r in rows if r is not target], {
        "created": [],
        "changed": [],
        "removed": [target.code],
    }


def _edit_repair(session, draft, community, rows, proj, body, crs):
    targets = [_find(rows, body["grid"])] if body.get("grid") is not None else rows
    changed = []
    for t in targets:
        if not t.geom.is_valid:
            t.geom = repair(t.geom)
            changed.append(t.code)
    return rows, {"created": [], "changed": changed, "removed": []}


def _edit_renumber(session, draft, community, rows, proj, body, crs):
    """DESIGN §2 sequence for every grid (north first, then west) — or only missing ones."""
    only_missing = bool(body.get("only_missing", False))
    usable = [r for r in rows if not repair(r.geom).is_empty]
    if not usable:
        return rows, {"created": [], "changed": [], "removed": []}
    xy = shapely.get_coordinates(
        shapely.point_on_surface(np.array([proj.to_utm(repair(r.geom)) for r in usable]))
    )
    ymax = proj.to_utm(community.geom).bounds[3]
    seq = grid_sequence(xy, max(ymax, float(xy[:, 1].max())))
    changed = []
    if only_missing:
        todo = [
            r
            for r in usable
            if not (r.code and is_valid_grid_code(r.code) and r.code.startswith(community.code))
        ]
        order = sorted(todo, key=lambda r: seq[usable.index(r)])
        for r, code in zip(
            order,
            _new_codes(session, community, [r for r in rows if r not in todo], len(todo)),
            strict=True,
        ):
            changed.append(code)
            r.code = code
    else:
        for r, s in zip(usable, seq, strict=True):
            code = f"{community.code}{int(s):03d}"
            if code != r.code:
                changed.append(code)
                r.code = code
    return rows, {"created": [], "changed": changed, "removed": []}


def _edit_replace(session, draft, community, rows, proj, body, crs):
    fc = body.get("geojson")
    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection":
        raise BadRequest("validation_failed", reason="geojson must be a FeatureCollection")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.geojson"
        path.write_text(json.dumps(fc), encoding="utf-8")
        new_rows, info = read_grid_file(
            path,
            community,
            crs=body.get("crs"),
            code_field=body.get("code_field"),
            name_field=body.get("name_field"),
        )
    return new_rows, {
        "created": [r.code for r in new_rows],
        "changed": [],
        "removed": [r.code for r in rows],
        **info,
    }


def _edit_propose(session, draft, community, rows, proj, body, crs):
    import geopandas as gpd

    from geo.partition import partition_community

    lo = int(body.get("households_min", draft.rules.get("households_min", 300)))
    hi = int(body.get("households_max", draft.rules.get("households_max", 500)))
    if not 0 < lo <= hi:
        raise BadRequest("validation_failed", reason="need 0 < households_min <= households_max")
    b = load_buildings(session, community)
    if not len(b.codes):
        raise Unprocessable("partition_failed", reason="the community has no buildings")
    buildings = gpd.GeoDataFrame(
        {"households": b.households}, geometry=[proj.to_utm(g) for g in b.geoms], crs=proj.crs
    )
    streets: list[BaseGeometry] = []
    if body.get("follow_streets", True):
        streets = [
            proj.to_utm(_geom(r.g))
            for r in session.execute(
                text(
                    "SELECT ST_AsBinary(e.geom) AS g FROM network_edges e, areas c WHERE c.id = :c"
                    " AND ST_Intersects(e.geom, c.geom)"
                ),
                {"c": community.id},
            )
        ]
    try:
        grids = partition_community(
            proj.to_utm(community.geom),
            buildings,
            gpd.GeoSeries(streets, crs=proj.crs),
            households_min=lo,
            households_max=hi,
        )
    except ValueError as e:
        raise Unprocessable("partition_failed", reason=str(e)) from e
    draft.rules = {**(draft.rules or {}), "households_min": lo, "households_max": hi}
    out = [
        GridRow(
            None,
            f"{community.code}{i + 1:03d}",
            f"{community.name}第{i + 1}网格",
            None,
            0,
            0,
            proj.to_lonlat(g),
        )
        for i, g in enumerate(grids.geometry)
    ]
    return out, {
        "created": [r.code for r in out],
        "changed": [],
        "removed": [r.code for r in rows],
        "in_range": int(grids["in_range"].sum()),
    }


_EDITS = {
    "draw": _edit_draw,
    "split": _edit_split,
    "merge": _edit_merge,
    "move_boundary": _edit_move,
    "rename": _edit_rename,
    "delete": _edit_delete,
    "repair": _edit_repair,
    "renumber": _edit_renumber,
    "replace_upload": _edit_replace,
    "propose": _edit_propose,
}


def _store(
    session: Session,
    draft: GridDraft,
    community: Community,
    before: list[GridRow],
    after: list[GridRow],
) -> None:
    """Write ``after`` as the draft's rows with households recomputed; touch only changes."""
    b = load_buildings(session, community)
    per = households_per_grid(
        [r.geom for r in after], [r.code for r in after], b.rep_points, b.households
    )
    keep_ids = {r.id for r in after if r.id is not None}
    gone = [r.id for r in before if r.id not in keep_ids]
    if gone:
        session.execute(text("DELETE FROM draft_grids WHERE id = ANY(:ids)"), {"ids": gone})
    for r, h in zip(after, per, strict=True):
        r.households = int(h)
        r.population = round(int(h) * PERSONS_PER_HOUSEHOLD)
        values = {
            "code": r.code,
            "name": r.name,
            "leader": r.leader_user_id,
            "h": r.households,
            "p": r.population,
            "g": _ewkb(r.geom),
        }
        if r.id is None:
            r.id = session.execute(
                text(
                    "INSERT INTO draft_grids (draft_id, code, name, leader_user_id, households,"
                    " population, geom) VALUES (:d, :code, :name, :leader, :h, :p,"
                    " ST_SetSRID(ST_GeomFromWKB(decode(:g, 'hex')), 4326)) RETURNING id"
                ),
                {"d": draft.id, **values},
            ).scalar_one()
        else:
            session.execute(
                text(
                    "UPDATE draft_grids SET code = :code, name = :name, leader_user_id = :leader,"
                    " households = :h, population = :p,"
                    " geom = ST_SetSRID(ST_GeomFromWKB(decode(:g, 'hex')), 4326) WHERE id = :id"
                ),
                {"id": r.id, **values},
            )
    draft.updated_at = func.now()


def replace_from_file(
    *,
    session: Session,
    draft_id: int,
    user_id: int,
    path: Path,
    crs: str | None = None,
    code_field: str | None = None,
    name_field: str | None = None,
) -> dict[str, Any]:
    """Replace the draft's grids by a file's polygons — all or nothing."""
    draft = _open_draft(session, draft_id, user_id)
    community = load_community(session, id=draft.community_id)
    before = _rows(session, draft.id)
    try:
        rows, info = read_grid_file(
            path, community, crs=crs, code_field=code_field, name_field=name_field
        )
    except MinqingError:
        session.rollback()
        raise
    _store(session, draft, community, before, rows)
    session.commit()
    return {
        "op": "replace_upload",
        "created": [r.code for r in rows],
        "changed": [],
        "removed": [r.code for r in before],
        **info,
    }
