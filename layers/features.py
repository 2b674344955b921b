"""Read any map layer as GeoJSON features by bbox, paged by an opaque keyset cursor.

The layer registry is the single list of layer names the API, the tiles and the maps use.
Layers with personal data (volunteers, requests) are filtered to the caller's grant and mask
names and phones unless the grant allows them. A public layer with a few personal columns
(the buildings' leaders) masks them except in the streets of the caller's bindings that may see
names (issue 16: nobody's contact crosses a street boundary); the public contact a leader
published with consent (``layers.contacts``) is shown as it is.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.auth.permissions import Grant
from layers.auth.pii import mask_name, mask_phone
from layers.bbox import BBox
from layers.contacts.service import public_contact_join
from layers.display_crs import bbox_to_wgs84, geometry_to_display
from layers.errors import BadRequest, NotFound
from layers.grids.repo import LIVE_GRIDS, grid_at_point_sql, live_sql, subtree_sql

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerSpec:
    name: str
    from_sql: str  # FROM clause with alias t for the row, t.id and t.geom required
    columns: str  # select list of properties
    personal: bool = False
    where: str = "TRUE"
    scope_sql: Callable[[Grant, str], tuple[str, dict[str, Any]]] | None = None
    mask: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    simplify: bool = False  # polygons simplified to the map's zoom when one is given
    # public layers with masked columns: where a grant's unmasked part sees them (SQL)
    unmask_sql: Callable[[Grant, str], tuple[str, dict[str, Any]]] | None = None


def _subtree_sql(community_col: str, grid_code_col: str | None) -> Callable[[Grant, str], tuple]:
    """Scope filter: rows in the granted areas' subtrees or granted grids (bind parameters
    named after ``prefix``, so the scope and the unmasked part can share one statement).

    Rows without a grid of their own (volunteers) are in a granted grid's scope when they
    belong to the community that grid is in: a leader dispatches to neighbours too.
    """

    def build(grant: Grant, prefix: str = "scope") -> tuple[str, dict[str, Any]]:
        if grant.everything:
            return "TRUE", {}
        clauses = []
        params: dict[str, Any] = {}
        areas, grids = f"{prefix}_areas", f"{prefix}_grids"
        if grant.area_ids:
            clauses.append(subtree_sql(community_col, areas))
            params[areas] = sorted(grant.area_ids)
        if grant.grid_codes:
            params[grids] = sorted(grant.grid_codes)
            if grid_code_col:
                clauses.append(f"{grid_code_col} = ANY(:{grids})")
            else:
                clauses.append(
                    f"{community_col} IN (SELECT g.community_id FROM grids g"
                    f" WHERE g.code = ANY(:{grids}) AND {LIVE_GRIDS})"
                )
        return ("(" + " OR ".join(clauses) + ")") if clauses else "FALSE", params

    return build


def _street_sql(point: str) -> Callable[[Grant, str], tuple[str, dict[str, Any]]]:
    """Predicate for a public layer's personal columns: the row (at ``point``: its live
    grid's community) lies in a street of the grant — the street of each bound community or
    grid, each bound street, or everything under a bound district; everywhere with
    ``everything``."""

    def build(grant: Grant, prefix: str = "pii") -> tuple[str, dict[str, Any]]:
        if grant.everything:
            return "TRUE", {}
        if not (grant.area_ids or grant.grid_codes):
            return "FALSE", {}
        areas, grids = f"{prefix}_areas", f"{prefix}_grids"
        streets: list[str] = []
        params: dict[str, Any] = {}
        if grant.area_ids:
            streets.append(
                "SELECT CASE WHEN a.level = 'community' THEN a.parent_id ELSE a.id END"
                f" FROM areas a WHERE a.id = ANY(:{areas})"
            )
            params[areas] = sorted(grant.area_ids)
        if grant.grid_codes:
            streets.append(
                "SELECT c.parent_id FROM grids g JOIN areas c ON c.id = g.community_id"
                f" WHERE g.code = ANY(:{grids}) AND {LIVE_GRIDS}"
            )
            params[grids] = sorted(grant.grid_codes)
        community = f"({grid_at_point_sql(point, 'g.community_id')})"
        clause = (
            f"{community} IN (WITH RECURSIVE sub AS (SELECT id FROM areas WHERE id IN"
            f" ({' UNION '.join(streets)}) UNION SELECT a.id FROM areas a"
            " JOIN sub ON a.parent_id = sub.id) SELECT id FROM sub)"
        )
        return clause, params

    return build


LAYERS: dict[str, LayerSpec] = {
    spec.name: spec
    for spec in (
        LayerSpec(
            "areas",
            "areas t LEFT JOIN areas p ON p.id = t.parent_id",
            "t.code, t.name, t.name_en, t.level, p.code AS parent_code",
            simplify=True,
        ),
        LayerSpec(
            "grids",
            "grids t JOIN areas c ON c.id = t.community_id",
            "t.code, t.name, c.code AS community_code, c.name AS community_name,"
            " t.households, t.population, t.generation_low",
            where=live_sql("t"),
            simplify=True,
        ),
        LayerSpec(
            "buildings",
            f"buildings t {public_contact_join('t.leader_user_id')}",
            "t.code, t.name, t.building_type, t.levels, t.residential, t.households,"
            " t.households_estimated, t.leader_name, t.leader_phone,"
            " pc.display_name AS leader_public_name, pc.work_phone AS leader_public_phone,"
            f" ({grid_at_point_sql('t.rep_point', 'g.code')}) AS grid_code",
            mask=(("leader_name", mask_name), ("leader_phone", mask_phone)),
            unmask_sql=_street_sql("t.rep_point"),
        ),
        LayerSpec(
            "venues",
            "venues t",
            "t.category, t.name, t.opening_hours, t.capacity, t.shared, t.address",
            where="t.active",
        ),
        LayerSpec(
            "service_circles",
            "service_circles t",
            "t.venue_id, t.category, t.tier, t.budget_m, t.budget_unit, t.method,"
            " t.network_version",
            simplify=True,
        ),
        LayerSpec(
            "volunteers",
            "volunteers t LEFT JOIN areas c ON c.id = t.community_id",
            "t.name, t.phone, c.code AS community_code, t.skills, t.availability,"
            " t.load_limit, t.active_load, t.points",
            personal=True,
            where="t.active",
            scope_sql=_subtree_sql("t.community_id", None),
            mask=(("name", mask_name), ("phone", mask_phone)),
        ),
        LayerSpec(
            "requests",
            "requests t LEFT JOIN grids g ON g.id = t.grid_id",
            "t.number, t.category, t.text, t.status, t.owner_level, g.code AS grid_code,"
            " t.deadline_at, t.created_at, t.rating, t.contact_name, t.contact_phone",
            personal=True,
            scope_sql=_subtree_sql("t.community_id", "g.code"),
            mask=(("contact_name", mask_name), ("contact_phone", mask_phone)),
        ),
    )
}


def layer_spec(name: str) -> LayerSpec:
    try:
        return LAYERS[name]
    except KeyError:
        raise NotFound("unknown_layer", layer=name, available=", ".join(LAYERS)) from None


def encode_cursor(layer: str, after_id: int) -> str:
    raw = json.dumps({"l": layer, "a": after_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(layer: str, cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["l"] != layer or not isinstance(data["a"], int) or data["a"] < 0:
            raise ValueError
        return int(data["a"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest("invalid_cursor") from None


MAX_ZOOM = 24


def zoom_geometry_sql(zoom: int | None) -> tuple[str, dict[str, Any]]:
    """``ST_AsGeoJSON`` of ``t.geom`` for a map at ``zoom``: simplified within half a pixel
    (Web Mercator, 256 px tiles; a degree of longitude is the widest a pixel gets) and with
    no more decimals than a pixel can show. ``None``: the stored geometry, 7 decimals."""
    if zoom is None:
        return "ST_AsGeoJSON(t.geom, 7)", {}
    deg_per_px = 360.0 / (256 * 2**zoom)
    decimals = min(7, max(4, math.ceil(-math.log10(deg_per_px)) + 1))
    sql = f"ST_AsGeoJSON(ST_SimplifyPreserveTopology(t.geom, :simplify_deg), {decimals})"
    return sql, {"simplify_deg": deg_per_px / 2}


@dataclass
class FeaturePage:
    features: list[dict[str, Any]]
    next_cursor: str | None


def _json_value(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def read_features(
    *,
    session: Session,
    layer: str,
    grant: Grant,
    bbox: BBox | None,
    limit: int,
    cursor: str | None,
    display_crs: str = "wgs84",
    zoom: int | None = None,
    pii_grant: Grant | None = None,
) -> FeaturePage:
    """One page of ``layer`` as RFC 7946 features, ordered by id.

    ``pii_grant`` (the caller's grant for ``layers.read_personal``; None for anonymous
    callers) decides where a public layer's personal columns are shown unmasked: within the
    streets of its bindings that may see names.

    ``display_crs`` (gcj02 / bd09) shifts the output — and reads ``bbox`` — for basemaps drawn
    in those systems; the default is plain WGS84. ``zoom`` (the map's) simplifies the polygons
    of big-outline layers (grids, areas, circles) to what that zoom can show: a district's 600
    grids drop from ~1 MB to ~0.15 MB at zoom 13.
    """
    if zoom is not None and not 0 <= zoom <= MAX_ZOOM:
        raise BadRequest("invalid_field", field="zoom", reason=f"an integer 0–{MAX_ZOOM}")
    bbox = bbox_to_wgs84(bbox, display_crs)
    spec = layer_spec(layer)
    after_id = decode_cursor(layer, cursor)
    params: dict[str, Any] = {"after_id": after_id, "lim": limit + 1}
    where = [spec.where, "t.id > :after_id"]
    if bbox is not None:
        where.append("t.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(zip(("x0", "y0", "x1", "y1"), bbox, strict=True))
    # names and phones: unmasked where a binding whose role may see them reaches the row
    unmasked = "TRUE" if grant.pii else "FALSE"
    if spec.scope_sql is not None:
        clause, scope_params = spec.scope_sql(grant, "scope")
        where.append(clause)
        params.update(scope_params)
        if spec.mask and not grant.pii:
            unmasked, pii_params = spec.scope_sql(grant.unmasked(), "pii")
            params.update(pii_params)
    elif spec.mask:  # a public layer: the public grant says nothing about names
        unmasked = "FALSE"
        if spec.unmask_sql is not None and pii_grant is not None:
            unmasked, pii_params = spec.unmask_sql(pii_grant.unmasked(), "pii")
            params.update(pii_params)
    geom_sql, geom_params = zoom_geometry_sql(zoom if spec.simplify else None)
    params.update(geom_params)
    sql = (
        f"SELECT t.id AS _id, {geom_sql} AS _geom, ({unmasked}) AS _pii, {spec.columns} "
        f"FROM {spec.from_sql} WHERE {' AND '.join(where)} ORDER BY t.id LIMIT :lim"
    )
    rows = session.execute(text(sql), params).mappings().all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    features = []
    for row in rows:
        props = {k: _json_value(v) for k, v in row.items() if not k.startswith("_")}
        if not row["_pii"]:
            for key, fn in spec.mask:
                props[key] = fn(props.get(key))
        features.append(
            {
                "type": "Feature",
                "id": row["_id"],
                "geometry": geometry_to_display(json.loads(row["_geom"]), display_crs),
                "properties": props,
            }
        )
    next_cursor = encode_cursor(layer, rows[-1]["_id"]) if has_more and rows else None
    return FeaturePage(features=features, next_cursor=next_cursor)
