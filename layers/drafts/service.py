"""Planner drafts: open, edit, validate, publish as generation N+1, restore (DESIGN §2, §5).

A draft is a private copy of one community's live grid rows. Every edit runs in one
transaction on the draft (its row locked), then the whole draft is validated (``geo.validation``)
and the households per grid recomputed from the buildings (a building belongs to the grid
covering its representative point). Edits live in ``layers.drafts.edits``, file
reading in ``layers.drafts.upload``, publishing and restoring in ``layers.drafts.publish``;
this module holds the draft itself, its community and buildings, and its validation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely import wkb
from shapely.geometry import MultiPolygon, mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.validation import (
    SEVERITY,
    Finding,
    ValidationRules,
    polygonal_part,
    validate_grids,
)
from layers.drafts.models import GridDraft
from layers.errors import BadRequest, Conflict, NotFound
from layers.grids.repo import current_generation, live_sql
from layers.requests.workflow import TERMINAL

logger = logging.getLogger(__name__)

PERSONS_PER_HOUSEHOLD = 2.6  # as the demo district (7th census average 2.62)
DEFAULT_RULES = {"households_min": 300, "households_max": 500}
EDIT_OPS = (
    "draw",
    "split",
    "merge",
    "move_boundary",
    "rename",
    "delete",
    "repair",
    "renumber",
    "replace_upload",
    "propose",
)
CODE_FIELDS = ("code", "grid_code", "wgbm", "编码", "网格编码")
NAME_FIELDS = ("name", "grid_name", "wgmc", "名称", "网格名称")
_CRS_HELP = "wgs84, gcj02, bd09, EPSG:<code>"
FINISHED_STATUSES = tuple(sorted(s.value for s in TERMINAL))

# finding code -> (zh-CN, en) message templates over the finding's params
FINDING_MESSAGES: dict[str, tuple[str, str]] = {
    "no_grids": ("社区内没有任何网格。", "The community has no grids."),
    "empty_geometry": ("网格 {grid} 没有面积。", "Grid {grid} has no area."),
    "invalid_geometry": (
        "网格 {grid} 的几何无效（{reason}）；自动修复（make_valid）后面积 {repaired_area_m2} m²，"
        "可用 repair 操作采用。",
        "Grid {grid} is invalid ({reason}); make_valid would repair it to {repaired_area_m2} m² "
        "— apply it with the repair edit.",
    ),
    "overlap": ("网格 {grids} 重叠 {area_m2} m²。", "Grids {grids} overlap by {area_m2} m²."),
    "gap": (
        "社区内有 {area_m2} m² 不属于任何网格。",
        "{area_m2} m² of the community is in no grid.",
    ),
    "outside_community": (
        "网格 {grid} 有 {area_m2} m² 超出本社区{other_communities}。",
        "{area_m2} m² of grid {grid} lies outside the community{other_communities}.",
    ),
    "code_missing": ("网格 {grid} 没有编码。", "Grid {grid} has no code."),
    "code_duplicate": ("编码 {code} 重复 {count} 次。", "Code {code} is used {count} times."),
    "code_malformed": ("编码 {code} 不合规：{reason}", "Code {code} is malformed: {reason}"),
    "building_cut": (
        "楼栋 {building} 被网格边界切分（{grids}）。",
        "Building {building} is cut by a grid boundary ({grids}).",
    ),
    "households_out_of_range": (
        "网格 {grid} 有 {households} 户，超出 {min}–{max} 户的范围。",
        "Grid {grid} has {households} households, outside {min}–{max}.",
    ),
    "non_contiguous": (
        "网格 {grid} 由 {parts} 块不相连的部分组成。",
        "Grid {grid} has {parts} separate parts.",
    ),
}
assert set(FINDING_MESSAGES) == set(SEVERITY)


def finding_message(f: Finding, locale: str) -> str:
    zh, en = FINDING_MESSAGES[f.code]
    params = dict(f.params)
    for k, v in params.items():
        if isinstance(v, list):
            params[k] = ", ".join(str(x) for x in v)
    if f.code == "outside_community":
        others = f.params.get("other_communities") or []
        joined = ", ".join(others)
        params["other_communities"] = (
            (f"，伸入 {joined}" if not locale.lower().startswith("en") else f", into {joined}")
            if others
            else ""
        )
    return (en if locale.lower().startswith("en") else zh).format(**params)


def finding_feature(f: Finding, locale: str) -> dict[str, Any]:
    """A finding as a GeoJSON Feature (geometry in WGS84, null when it has none)."""
    geom = f.geometry_lonlat
    return {
        "type": "Feature",
        "geometry": mapping(geom) if geom is not None and not geom.is_empty else None,
        "properties": {
            "code": f.code,
            "severity": f.severity,
            "message": finding_message(f, locale),
            "params": f.params,
            "grids": list(f.grids),
        },
    }


def validation_document(findings: Sequence[Finding], locale: str) -> dict[str, Any]:
    blocking = sum(1 for f in findings if f.blocking)
    return {
        "publishable": blocking == 0,
        "blocking": blocking,
        "warnings": len(findings) - blocking,
        "findings": {
            "type": "FeatureCollection",
            "features": [finding_feature(f, locale) for f in findings],
        },
    }


# --------------------------------------------------------------------------- loading


@dataclass
class Community:
    id: int
    code: str
    name: str
    geom: BaseGeometry  # lon/lat


@dataclass
class Buildings:
    codes: list[str]
    geoms: list[BaseGeometry]
    rep_points: list[BaseGeometry]
    households: np.ndarray
    leaders: list[str | None]


@dataclass
class GridRow:
    """A draft grid in memory; ``id`` None until inserted."""

    id: int | None
    code: str | None
    name: str | None
    leader_user_id: int | None
    households: int
    population: int
    geom: BaseGeometry  # lon/lat MultiPolygon, maybe invalid


def _geom(raw: Any) -> BaseGeometry:
    return wkb.loads(bytes(raw))


def _ewkb(geom: BaseGeometry) -> str:
    g = geom if isinstance(geom, MultiPolygon) else polygonal_part(geom)
    return shapely.to_wkb(g, hex=True, include_srid=False)


def load_community(
    session: Session, *, code: str | None = None, id: int | None = None
) -> Community:
    row = session.execute(
        text(
            "SELECT id, code, name, ST_AsBinary(geom) AS g FROM areas WHERE level = 'community'"
            " AND (code = :code OR id = :id)"
        ),
        {"code": code, "id": id},
    ).first()
    if row is None:
        raise NotFound("unknown_area", code=code if code is not None else str(id))
    return Community(row.id, row.code, row.name, _geom(row.g))


class _OtherCommunities(Mapping):
    """The neighbouring communities (code → outline), read on first use: validation needs
    them only to name where a grid sticks out, which is rare."""

    def __init__(self, session: Session, community: Community) -> None:
        self._session, self._community = session, community
        self._data: dict[str, BaseGeometry] | None = None

    def _load(self) -> dict[str, BaseGeometry]:
        if self._data is None:
            self._data = other_communities(self._session, self._community)
        return self._data

    def __getitem__(self, key: str) -> BaseGeometry:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def other_communities(session: Session, community: Community) -> dict[str, BaseGeometry]:
    rows = session.execute(
        text(
            "SELECT o.code, ST_AsBinary(o.geom) AS g FROM areas o, areas c WHERE c.id = :c"
            " AND o.level = 'community' AND o.id <> c.id AND ST_DWithin(o.geom, c.geom, 0.01)"
        ),
        {"c": community.id},
    ).all()
    return {r.code: _geom(r.g) for r in rows}


def load_buildings(session: Session, community: Community) -> Buildings:
    rows = session.execute(
        text(
            "SELECT b.code, b.households, b.leader_name, ST_AsBinary(b.geom) AS g,"
            " ST_AsBinary(b.rep_point) AS p FROM buildings b, areas c"
            " WHERE c.id = :c AND ST_Covers(c.geom, b.rep_point) ORDER BY b.code"
        ),
        {"c": community.id},
    ).all()
    if not rows:
        return Buildings([], [], [], np.zeros(0, dtype=np.int64), [])
    # columns in one pass, one vectorised WKB parse each (per-row work dominated ~1k buildings)
    codes, households, leaders, g, p = zip(*rows, strict=True)
    return Buildings(
        list(codes),
        list(shapely.from_wkb(list(g))),
        list(shapely.from_wkb(list(p))),
        np.array(households, dtype=np.int64),
        list(leaders),
    )


def community_generation(session: Session, community_id: int) -> int:
    """The last generation that changed this community's grids (0 when it never had any)."""
    return int(
        session.scalar(
            text(
                "SELECT coalesce(max(greatest(generation_low, coalesce(generation_high, 0))), 0)"
                " FROM grids WHERE community_id = :c"
            ),
            {"c": community_id},
        )
    )


def _draft(session: Session, draft_id: int, user_id: int | None, *, lock: bool) -> GridDraft:
    q = session.query(GridDraft).filter(GridDraft.id == draft_id)
    if lock:
        q = q.with_for_update()
    draft = q.one_or_none()
    if draft is None or (user_id is not None and draft.created_by != user_id):
        # private to its planner: others cannot even learn it exists
        raise NotFound("draft_not_found", draft_id=draft_id)
    return draft


def _open_draft(session: Session, draft_id: int, user_id: int | None) -> GridDraft:
    draft = _draft(session, draft_id, user_id, lock=True)
    if draft.status != "open":
        raise Conflict("draft_closed", draft_id=draft_id, status=draft.status)
    return draft


def _rows(session: Session, draft_id: int) -> list[GridRow]:
    rows = session.execute(
        text(
            "SELECT id, code, name, leader_user_id, households, population,"
            " ST_AsBinary(geom) AS g FROM draft_grids WHERE draft_id = :d ORDER BY code, id"
        ),
        {"d": draft_id},
    ).all()
    return [
        GridRow(r.id, r.code, r.name, r.leader_user_id, r.households, r.population, _geom(r.g))
        for r in rows
    ]


def _rules(draft: GridDraft) -> ValidationRules:
    r = {**DEFAULT_RULES, **(draft.rules or {})}
    return ValidationRules(
        households_min=int(r["households_min"]), households_max=int(r["households_max"])
    )


# --------------------------------------------------------------------------- create / read


def create_draft(
    *,
    session: Session,
    community_code: str,
    user_id: int,
    households_min: int | None = None,
    households_max: int | None = None,
) -> int:
    """A new draft holding a copy of the community's live grid rows; returns its id."""
    community = load_community(session, code=community_code)
    rules = dict(DEFAULT_RULES)
    if households_min is not None:
        rules["households_min"] = int(households_min)
    if households_max is not None:
        rules["households_max"] = int(households_max)
    if not 0 < rules["households_min"] <= rules["households_max"]:
        raise BadRequest("validation_failed", reason="need 0 < households_min <= households_max")
    draft = GridDraft(
        community_id=community.id,
        base_generation=community_generation(session, community.id),
        created_by=user_id,
        rules=rules,
    )
    session.add(draft)
    session.flush()
    live = live_sql("", ":cur")
    session.execute(
        text(
            "INSERT INTO draft_grids (draft_id, code, name, leader_user_id, households,"
            " population, geom) SELECT :d, code, name, leader_user_id, households, population,"
            f" geom FROM grids WHERE community_id = :c AND {live} ORDER BY code"
        ),
        {"d": draft.id, "c": community.id, "cur": current_generation(session)},
    )
    session.commit()
    logger.info("draft %s of community %s opened by user %s", draft.id, community.code, user_id)
    return draft.id


def list_drafts(*, session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        text(
            "SELECT d.id, d.status, d.base_generation, d.created_at, d.updated_at, c.code,"
            " c.name, (SELECT count(*) FROM draft_grids g WHERE g.draft_id = d.id) AS n"
            " FROM grid_drafts d JOIN areas c ON c.id = d.community_id"
            " WHERE d.created_by = :u ORDER BY d.id DESC"
        ),
        {"u": user_id},
    ).all()
    return [
        {
            "id": r.id,
            "status": r.status,
            "community_code": r.code,
            "community_name": r.name,
            "base_generation": r.base_generation,
            "grids": r.n,
            "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat(),
        }
        for r in rows
    ]


@dataclass
class DraftState:
    draft: GridDraft
    community: Community
    rows: list[GridRow]
    findings: list[Finding]


def _validate(
    session: Session, draft: GridDraft, community: Community, rows: list[GridRow]
) -> list[Finding]:
    b = load_buildings(session, community)
    return validate_grids(
        [r.geom for r in rows],
        [r.code for r in rows],
        community.geom,
        community_code=community.code,
        grid_keys=[r.id for r in rows],
        building_geoms_lonlat=b.geoms,
        building_rep_points_lonlat=b.rep_points,
        building_households=b.households,
        building_codes=b.codes,
        other_communities_lonlat=_OtherCommunities(session, community),
        rules=_rules(draft),
    )


def draft_state(*, session: Session, draft_id: int, user_id: int | None) -> DraftState:
    draft = _draft(session, draft_id, user_id, lock=False)
    community = load_community(session, id=draft.community_id)
    rows = _rows(session, draft.id)
    return DraftState(draft, community, rows, _validate(session, draft, community, rows))


def draft_document(state: DraftState, locale: str, *, stale: bool | None = None) -> dict[str, Any]:
    """The draft as the API shows it: metadata, grids (GeoJSON), validation."""
    d = state.draft
    features = [
        {
            "type": "Feature",
            "id": r.id,
            "geometry": mapping(r.geom),
            "properties": {
                "id": r.id,
                "code": r.code,
                "name": r.name,
                "leader_user_id": r.leader_user_id,
                "households": r.households,
                "population": r.population,
            },
        }
        for r in state.rows
    ]
    return {
        "draft": {
            "id": d.id,
            "community_code": state.community.code,
            "community_name": state.community.name,
            "base_generation": d.base_generation,
            "status": d.status,
            "stale": stale,
            "rules": {**DEFAULT_RULES, **(d.rules or {})},
            "created_by": d.created_by,
            "created_at": d.created_at.isoformat() if d.created_at else None,
            "updated_at": d.updated_at.isoformat() if d.updated_at else None,
            "published_generation": d.published_generation,
        },
        "grids": {"type": "FeatureCollection", "features": features},
        "validation": validation_document(state.findings, locale),
    }


def is_stale(session: Session, draft: GridDraft) -> bool:
    return community_generation(session, draft.community_id) > draft.base_generation


def discard_draft(*, session: Session, draft_id: int, user_id: int) -> None:
    draft = _open_draft(session, draft_id, user_id)
    draft.status = "discarded"
    session.commit()
