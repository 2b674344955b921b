"""Publishing a draft as generation N+1 and restoring a past generation (DESIGN §2, §5): the
publish lock, the stale and blocking checks, closing and opening grid rows, re-homing the
requests that are not finished (the action table's ``rehome``), the audit entry."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.assign import GridIndex
from layers.drafts.models import GridDraft
from layers.drafts.service import (
    DEFAULT_RULES,
    FINISHED_STATUSES,
    Community,
    _open_draft,
    _rows,
    _validate,
    community_generation,
    finding_feature,
    load_community,
)
from layers.errors import Conflict, MinqingError, NotFound
from layers.grids.repo import PUBLISH_LOCK_KEY, current_generation, live_sql
from layers.requests.events import record_rehome
from layers.transactions import unit_of_work

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- publish / restore


def _publish_rows(
    session: Session,
    draft: GridDraft,
    community: Community,
    user_id: int,
    *,
    action: str,
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The publish path shared by drafts and restores; the caller holds the publish lock."""
    base = community_generation(session, community.id)
    if base > draft.base_generation:
        raise Conflict(
            "draft_stale",
            draft_id=draft.id,
            community_code=community.code,
            base_generation=draft.base_generation,
            current_generation=base,
        )
    rows = _rows(session, draft.id)
    findings = _validate(session, draft, community, rows)
    blocking = [f for f in findings if f.blocking]
    if blocking:
        raise Conflict(
            "draft_blocked",
            draft_id=draft.id,
            count=len(blocking),
            codes=", ".join(sorted({f.code for f in blocking})),
            findings=[finding_feature(f, "en") for f in blocking],
        )
    new_gen = current_generation(session) + 1
    live = f"community_id = :c AND {live_sql('', ':cur')}"
    session.execute(
        text(
            "INSERT INTO generations (id, published_by, draft_id, summary)"
            " VALUES (:id, :u, :d, CAST(:s AS jsonb))"
        ),
        {
            "id": new_gen,
            "u": user_id,
            "d": draft.id,
            "s": json.dumps({"community_code": community.code, "action": action}),
        },
    )
    closed = session.execute(
        text(f"UPDATE grids SET generation_high = :g WHERE {live} RETURNING id, code"),
        {"g": new_gen, "c": community.id, "cur": new_gen - 1},
    ).all()
    opened = session.execute(
        text(
            "INSERT INTO grids (code, name, community_id, leader_user_id, households, population,"
            " generation_low, geom) SELECT code, coalesce(name, code), :c, leader_user_id,"
            " households, population, :g, geom FROM draft_grids WHERE draft_id = :d"
            " ORDER BY code RETURNING id, code"
        ),
        {"c": community.id, "g": new_gen, "d": draft.id},
    ).all()
    rehomed = _rehome(session, [r.id for r in closed], [r.id for r in opened], new_gen, user_id)
    summary = {
        "community_code": community.code,
        "action": action,
        "grids_closed": len(closed),
        "grids_opened": len(opened),
        "codes_removed": sorted({r.code for r in closed} - {r.code for r in opened}),
        "codes_added": sorted({r.code for r in opened} - {r.code for r in closed}),
        "requests_rehomed": rehomed["count"],
        "requests_changed_grid": rehomed["changed"],
        "warnings": len(findings),
        **(extra_summary or {}),
    }
    session.execute(
        text("UPDATE generations SET summary = CAST(:s AS jsonb) WHERE id = :id"),
        {"s": json.dumps(summary), "id": new_gen},
    )
    session.execute(
        text(
            "INSERT INTO audit_log (user_id, action, draft_id, generation, summary)"
            " VALUES (:u, :a, :d, :g, CAST(:s AS jsonb))"
        ),
        {"u": user_id, "a": action, "d": draft.id, "g": new_gen, "s": json.dumps(summary)},
    )
    draft.status = "published"
    draft.published_generation = new_gen
    logger.info("generation %d published (%s of %s): %s", new_gen, action, community.code, summary)
    return {"generation": new_gen, "draft_id": draft.id, **summary}


def _rehome(
    session: Session,
    closed_ids: list[int],
    opened_ids: list[int],
    generation: int,
    user_id: int | None,
) -> dict[str, int]:
    """Move the not-finished requests of closed grid rows to the new row covering them
    (lowest code on a border; the nearest when none covers), one ``rehome`` event each
    (the action table's same-state row, written by ``layers.requests.events``).

    The placement runs in Python with ``geo.assign.GridIndex`` (PostGIS ``ST_Covers``
    semantics, lowest code on a shared border — checked against PostGIS by the import bench):
    a per-request LATERAL over the new rows cost ~0.2 s for a community's ~1.4k open requests.

    The rows are locked as the runner locks them (FOR NO KEY UPDATE): an action under way is
    waited for and its result re-homed; an action that comes later finds the request on
    another grid row and answers 409 ``conflict``. FOR UPDATE would also block the key-share
    lock of a duplicate pointing at one of them, and deadlock with its action.
    """
    if not closed_ids:
        return {"count": 0, "changed": 0}
    reqs = session.execute(
        text(
            "SELECT r.id, r.status, r.owner_level, og.id AS old_id, og.code AS old_code,"
            " ST_X(r.geom) AS x, ST_Y(r.geom) AS y"
            " FROM requests r JOIN grids og ON og.id = r.grid_id"
            " WHERE r.grid_id = ANY(:closed) AND NOT (r.status = ANY(:finished))"
            " ORDER BY r.id FOR NO KEY UPDATE OF r"
        ),
        {"closed": closed_ids, "finished": list(FINISHED_STATUSES)},
    ).all()
    if not reqs or not opened_ids:
        return {"count": 0, "changed": 0}
    grids = session.execute(
        text("SELECT id, code, ST_AsBinary(geom) AS g FROM grids WHERE id = ANY(:ids)"),
        {"ids": opened_ids},
    ).all()
    geoms = np.array(shapely.from_wkb([bytes(g.g) for g in grids]), dtype=object)
    codes = np.array([g.code for g in grids])
    x = np.array([r.x for r in reqs], dtype=np.float64)
    y = np.array([r.y for r in reqs], dtype=np.float64)
    where = GridIndex(geoms, codes).assign(x, y)
    covered = where >= 0
    if not covered.all():
        # nearest new row (planar distance, as ST_Distance on geometry), then lowest code
        by_code = np.argsort(codes, kind="stable")
        for k in np.flatnonzero(~covered):
            dist = shapely.distance(shapely.Point(x[k], y[k]), geoms[by_code])
            where[k] = by_code[int(np.argmin(dist))]
    new_ids = [int(grids[i].id) for i in where]
    new_codes = [str(codes[i]) for i in where]
    notes, data = [], []
    for r, new_id, new_code, cov in zip(reqs, new_ids, new_codes, covered.tolist(), strict=True):
        if r.old_code == new_code:
            note = f"网格边界第 {generation} 版发布，诉求仍属网格 {new_code}。"
        else:
            note = (
                f"网格边界第 {generation} 版发布，诉求所在位置由网格 {r.old_code} 划入 {new_code}。"
            )
        if not cov:
            note += "（该点不在任何新网格内，归入最近的网格。）"
        notes.append(note)
        data.append(
            {
                "generation": generation,
                "old_grid_code": r.old_code,
                "new_grid_code": new_code,
                "old_grid_id": r.old_id,
                "new_grid_id": new_id,
                "covered": bool(cov),
                "reason": "grid_redraw",
            }
        )
    record_rehome(
        session,
        moves=[(r.id, new_id) for r, new_id in zip(reqs, new_ids, strict=True)],
        statuses=[r.status for r in reqs],
        owner_levels=[r.owner_level for r in reqs],
        notes=notes,
        data=data,
        user_id=user_id,
    )
    changed = sum(1 for r, c in zip(reqs, new_codes, strict=True) if r.old_code != c)
    return {"count": len(reqs), "changed": changed}


# Open requests on a grid row retired by one of the last few publishes (alias g = grids).
_STRAGGLERS_SQL = text(
    "SELECT DISTINCT r.grid_id FROM grids g JOIN requests r ON r.grid_id = g.id"
    " WHERE g.generation_high IS NOT NULL AND g.generation_high > :since"
    " AND NOT (r.status = ANY(:finished)) ORDER BY r.grid_id"
)


def rehome_stragglers(*, session: Session, recent: int = 3) -> dict[str, int]:
    """Re-home open requests that a write racing a publish left on a grid row it retired.

    Actions that put a request on a grid row wait for a publish (the ``grids`` lock of the
    action table), but intake and the bulk import write in one autocommit statement each and
    take no lock: one that read the grids before a publish and wrote after it leaves its
    request on a dead row, which no leader sees. The deadline job sweeps them up every cycle,
    looking only at rows retired by the last ``recent`` publishes (the race's window), under
    the publish lock, through the same ``rehome`` events as a publish (by the system)."""
    with unit_of_work(session):
        params = {
            "since": current_generation(session) - recent,
            "finished": list(FINISHED_STATUSES),
        }
        if session.scalars(_STRAGGLERS_SQL, params).first() is None:
            return {"count": 0, "changed": 0}
        _lock_publish(session)
        closed = list(session.scalars(_STRAGGLERS_SQL, params).all())
        opened = list(
            session.scalars(
                text(
                    f"SELECT g.id FROM grids g WHERE {live_sql('g')} AND g.community_id IN"
                    " (SELECT community_id FROM grids WHERE id = ANY(:closed))"
                ),
                {"closed": closed},
            ).all()
        )
        moved = _rehome(session, closed, opened, current_generation(session), user_id=None)
    if moved["count"]:
        logger.warning("re-homed %d request(s) left on retired grid rows", moved["count"])
    return moved


def _lock_publish(session: Session) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PUBLISH_LOCK_KEY})


def publish_draft(*, session: Session, draft_id: int, user_id: int) -> dict[str, Any]:
    """Publish an open draft as generation N+1 in one transaction (see module docstring)."""
    _lock_publish(session)
    try:
        draft = _open_draft(session, draft_id, user_id)
        community = load_community(session, id=draft.community_id)
        result = _publish_rows(session, draft, community, user_id, action="publish")
    except MinqingError:
        session.rollback()
        raise
    session.commit()
    return result


def restore_generation(
    *, session: Session, generation: int, user_id: int, community_code: str | None = None
) -> dict[str, Any]:
    """Undo: publish again, as generation N+1, the rows a community had at ``generation``.

    Without ``community_code`` the community is the one changed since ``generation`` (409
    ``restore_ambiguous`` when several were, ``nothing_to_restore`` when none was).
    """
    _lock_publish(session)
    try:
        current = current_generation(session)
        if not session.scalar(text("SELECT 1 FROM generations WHERE id = :g"), {"g": generation}):
            raise NotFound("unknown_generation", generation=generation)
        changed = session.execute(
            text(
                "SELECT DISTINCT c.id, c.code FROM grids g JOIN areas c ON c.id = g.community_id"
                " WHERE g.generation_low > :n OR (g.generation_high > :n)"
                " ORDER BY c.code"
            ),
            {"n": generation},
        ).all()
        if community_code is not None:
            changed = [c for c in changed if c.code == community_code]
        if not changed:
            raise Conflict("nothing_to_restore", generation=generation, current_generation=current)
        if len(changed) > 1:
            raise Conflict(
                "restore_ambiguous",
                generation=generation,
                communities=", ".join(c.code for c in changed),
            )
        community = load_community(session, id=changed[0].id)
        draft = GridDraft(
            community_id=community.id,
            base_generation=community_generation(session, community.id),
            created_by=user_id,
            rules=dict(DEFAULT_RULES),
        )
        session.add(draft)
        session.flush()
        session.execute(
            text(
                "INSERT INTO draft_grids (draft_id, code, name, leader_user_id, households,"
                " population, geom) SELECT :d, code, name, leader_user_id, households, population,"
                f" geom FROM grids WHERE community_id = :c AND {live_sql('', ':n')} ORDER BY code"
            ),
            {"d": draft.id, "c": community.id, "n": generation},
        )
        result = _publish_rows(
            session,
            draft,
            community,
            user_id,
            action="restore",
            extra_summary={"restored_generation": generation},
        )
    except MinqingError:
        session.rollback()
        raise
    session.commit()
    return result


def list_generations(*, session: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.execute(
        text(
            "SELECT g.id, g.published_at, g.draft_id, g.summary, u.username FROM generations g"
            " LEFT JOIN users u ON u.id = g.published_by ORDER BY g.id DESC LIMIT :lim"
        ),
        {"lim": limit},
    ).all()
    current = current_generation(session)
    return [
        {
            "id": r.id,
            "current": r.id == current,
            "published_at": r.published_at.isoformat(),
            "published_by": r.username,
            "draft_id": r.draft_id,
            "summary": r.summary,
        }
        for r in rows
    ]
