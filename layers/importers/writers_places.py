"""Writers of the place layers from a file: areas (nested codes checked against their
parents), buildings (households estimated where unknown) and venues."""

from __future__ import annotations

import hashlib
import logging
import re

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.households import estimate_households, is_residential, parse_osm_number
from layers.catalogues import venue_categories
from layers.importers.common import (
    _LEVEL_BY_LENGTH,
    _LEVEL_NAMES,
    _PARENT_LEVEL,
    LayerReport,
    _clip,
    _column,
    _nothing_valid,
    _Options,
    _positive_int,
    _upsert_counts,
    _utm_srid,
    _values,
)
from layers.importers.store import (
    copy_rows,
    ewkb_hex,
    temp_table,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- areas


def _area_level(code: str | None, level_text: str | None) -> tuple[str | None, str | None]:
    """(level, rejection reason) of an area row."""
    if code is None or not code.isascii() or not code.isdigit():
        return None, "bad_code"
    by_length = _LEVEL_BY_LENGTH.get(len(code))
    if by_length is None:
        return None, "bad_code"
    if level_text is None:
        return by_length, None
    level = _LEVEL_NAMES.get(level_text.strip().lower())
    if level is None:
        return None, "unknown_level"
    if level != by_length:
        return None, "code_does_not_match_level"
    return level, None


def _write_areas(session: Session, frame: gpd.GeoDataFrame, rep: LayerReport, o: _Options) -> None:
    code_c = _column(
        frame,
        o.code_col,
        ("code", "adcode", "area_code", "区划代码", "编码"),
        layer="areas",
        required=True,
    )
    name_c = _column(frame, o.name_col, ("name", "名称", "name_zh"), layer="areas", required=True)
    name_en_c = _column(frame, None, ("name_en", "英文名"), layer="areas")
    level_c = _column(frame, None, ("level", "级别", "层级"), layer="areas")
    parent_c = _column(
        frame,
        None,
        ("parent_code", "parent", "streetcode", "areacode", "上级代码"),
        layer="areas",
    )
    codes, names = _values(frame, code_c), _values(frame, name_c)
    names_en, levels, parents = (
        _values(frame, name_en_c),
        _values(frame, level_c),
        _values(frame, parent_c),
    )
    rows: list[tuple] = []
    seen: set[str] = set()
    geoms = frame.geometry.to_numpy()
    for code, name, name_en, level_text, parent, geom in zip(
        codes, names, names_en, levels, parents, geoms, strict=True
    ):
        level, reason = _area_level(code, level_text)
        if reason is not None:
            rep.reject(reason, code)
            continue
        if name is None:
            rep.reject("missing_name", code)
            continue
        if code in seen:
            rep.reject("duplicate_code", code)
            continue
        seen.add(code)
        parent_code = None
        if level != "district":
            parent_len = 6 if level == "street" else 9
            parent_code = (
                parent
                if parent is not None and parent.isdigit() and len(parent) == parent_len
                else code[:parent_len]
            )
        rows.append(
            (code, _clip(name, 200, rep), _clip(name_en, 200, rep), level, parent_code, geom)
        )
    if not rows:
        raise _nothing_valid(o.path, "areas", rep)
    srid = _utm_srid(np.array([r[5] for r in rows], dtype=object))
    temp_table(
        session,
        "stage_import_areas",
        "code text, name text, name_en text, level text, parent_code text, "
        "geom geometry(MultiPolygon, 4326)",
    )
    copy_rows(
        session,
        "stage_import_areas",
        ["code", "name", "name_en", "level", "parent_code", "geom"],
        ((*r[:5], g) for r, g in zip(rows, ewkb_hex([r[5] for r in rows]), strict=True)),
    )
    for level in ("district", "street", "community"):
        accepted = [r[0] for r in rows if r[3] == level]
        if not accepted:
            continue
        if level != "district":
            checked = session.execute(
                text(
                    """
                    SELECT s.code, p.id AS parent_id,
                           ST_CoveredBy(ST_Transform(s.geom, :srid),
                                        ST_Buffer(ST_Transform(p.geom, :srid), :tol)) AS covered
                    FROM stage_import_areas s
                    LEFT JOIN areas p ON p.code = s.parent_code AND p.level = :plevel
                    WHERE s.level = :level
                    ORDER BY s.code
                    """
                ),
                {
                    "srid": srid,
                    "tol": o.tolerance_m,
                    "plevel": _PARENT_LEVEL[level],
                    "level": level,
                },
            ).all()
            accepted = []
            for r in checked:
                if r.parent_id is None:
                    rep.reject("unknown_parent", r.code)
                elif not r.covered:
                    rep.reject("outside_parent", r.code)
                else:
                    accepted.append(r.code)
            if not accepted:
                continue
        result = session.execute(
            text(
                """
                INSERT INTO areas (code, name, name_en, level, parent_id, geom)
                SELECT s.code, s.name, s.name_en, s.level, p.id, s.geom
                FROM stage_import_areas s
                LEFT JOIN areas p ON p.code = s.parent_code AND p.level = :plevel
                WHERE s.code = ANY(:codes)
                ON CONFLICT (code) DO UPDATE SET
                  name = EXCLUDED.name, name_en = coalesce(EXCLUDED.name_en, areas.name_en),
                  level = EXCLUDED.level, parent_id = EXCLUDED.parent_id, geom = EXCLUDED.geom
                WHERE (areas.name, areas.name_en, areas.level, areas.parent_id)
                      IS DISTINCT FROM (EXCLUDED.name, coalesce(EXCLUDED.name_en, areas.name_en),
                                        EXCLUDED.level, EXCLUDED.parent_id)
                   OR NOT ST_Equals(areas.geom, EXCLUDED.geom)
                RETURNING (xmax = 0) AS inserted
                """
            ),
            {"codes": accepted, "plevel": _PARENT_LEVEL.get(level, "")},
        ).all()
        inserted, updated = _upsert_counts(result)
        rep.imported += len(accepted)
        rep.inserted += inserted
        rep.updated += updated
    if rep.imported == 0:
        raise _nothing_valid(o.path, "areas", rep)
    rep.stats["nesting_tolerance_m"] = o.tolerance_m


# --------------------------------------------------------------------------- buildings


def _geometry_keys(geoms: np.ndarray, prefix: str, length: int) -> list[str]:
    """Deterministic keys from normalised geometries (coordinates rounded to 1e-7°, ~1 cm)."""
    coords, index = shapely.get_coordinates(shapely.normalize(geoms), return_index=True)
    coords = np.round(coords, 7)
    bounds = np.searchsorted(index, np.arange(len(geoms) + 1))
    keys = []
    for i in range(len(geoms)):
        digest = hashlib.sha1(coords[bounds[i] : bounds[i + 1]].tobytes()).hexdigest()
        keys.append(prefix + digest[: length - len(prefix)])
    return keys


def _write_buildings(
    session: Session, frame: gpd.GeoDataFrame, rep: LayerReport, o: _Options
) -> None:
    layer = "buildings"
    code_c = _column(frame, o.code_col, ("code", "building_code", "楼栋编码", "编码"), layer=layer)
    name_c = _column(frame, o.name_col, ("name", "名称", "楼栋名称"), layer=layer)
    type_c = _column(frame, None, ("building", "building_type", "type", "类型"), layer=layer)
    levels_c = _column(
        frame,
        None,
        ("levels", "building:levels", "building_levels", "floors", "层数"),
        layer=layer,
    )
    hh_c = _column(frame, None, ("households", "building:flats", "flats", "户数"), layer=layer)
    extra = {k: _column(frame, None, (k,), layer=layer) for k in ("amenity", "shop", "office")}

    geoms = frame.geometry.to_numpy()
    given_codes = _values(frame, code_c)
    generated = _geometry_keys(geoms, "B-G", 24)
    names, types = _values(frame, name_c), _values(frame, type_c)
    levels = [_positive_int(v) for v in _values(frame, levels_c)]
    known = np.array([parse_osm_number(v) for v in _values(frame, hh_c)], dtype=float)
    extras = {k: _values(frame, c) for k, c in extra.items() if c is not None}

    keep = np.zeros(len(frame), dtype=bool)
    codes: list[str] = []
    seen: set[str] = set()
    for i, (given, gen) in enumerate(zip(given_codes, generated, strict=True)):
        code = given or gen
        if len(code) > 24:
            rep.reject("code_too_long", code)
        elif code in seen:
            rep.reject("duplicate_code" if given else "duplicate_geometry", code)
        else:
            seen.add(code)
            keep[i] = True
        codes.append(code)
    if not keep.any():
        raise _nothing_valid(o.path, layer, rep)
    idx = np.flatnonzero(keep)
    geoms = geoms[idx]
    srid = _utm_srid(geoms)
    area_m2 = gpd.GeoSeries(geoms, crs="EPSG:4326").to_crs(srid).area.to_numpy()
    tags = [
        {"building": types[i] or "yes", **{k: v[i] for k, v in extras.items() if v[i]}} for i in idx
    ]
    residential = np.array([is_residential(t) for t in tags], dtype=bool)
    levels_f = np.array([levels[i] if levels[i] else np.nan for i in idx], dtype=float)
    households, estimated = estimate_households(
        area_m2, levels_f, residential, known_households=known[idx]
    )
    rep.stats["households_estimated"] = int(estimated.sum())
    temp_table(
        session,
        "stage_import_buildings",
        "code text, name text, building_type text, levels int, residential bool, "
        "households int, households_estimated bool, geom geometry(Polygon, 4326), "
        "rep_point geometry(Point, 4326)",
    )
    copy_rows(
        session,
        "stage_import_buildings",
        [
            "code",
            "name",
            "building_type",
            "levels",
            "residential",
            "households",
            "households_estimated",
            "geom",
            "rep_point",
        ],
        zip(
            [codes[i] for i in idx],
            [_clip(names[i], 200, rep) for i in idx],
            [_clip(types[i], 64, rep) for i in idx],
            [levels[i] for i in idx],
            residential,
            households,
            estimated,
            ewkb_hex(geoms),
            ewkb_hex(shapely.point_on_surface(geoms)),
            strict=True,
        ),
    )
    result = session.execute(
        text(
            """
            INSERT INTO buildings (code, name, building_type, levels, residential, households,
                                   households_estimated, geom, rep_point)
            SELECT code, name, building_type, levels, residential, households,
                   households_estimated, geom, rep_point FROM stage_import_buildings
            ON CONFLICT (code) DO UPDATE SET
              name = EXCLUDED.name, building_type = EXCLUDED.building_type,
              levels = EXCLUDED.levels, residential = EXCLUDED.residential,
              households = EXCLUDED.households,
              households_estimated = EXCLUDED.households_estimated,
              geom = EXCLUDED.geom, rep_point = EXCLUDED.rep_point
            WHERE (buildings.name, buildings.building_type, buildings.levels,
                   buildings.residential, buildings.households, buildings.households_estimated)
                  IS DISTINCT FROM
                  (EXCLUDED.name, EXCLUDED.building_type, EXCLUDED.levels,
                   EXCLUDED.residential, EXCLUDED.households, EXCLUDED.households_estimated)
               OR NOT ST_Equals(buildings.geom, EXCLUDED.geom)
            RETURNING (xmax = 0) AS inserted
            """
        )
    ).all()
    rep.imported = len(idx)
    rep.inserted, rep.updated = _upsert_counts(result)


# --------------------------------------------------------------------------- venues


def _venue_category_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for cat in venue_categories():
        for key in (cat.code, cat.name_zh, cat.name_en):
            lookup[key.strip().lower()] = cat.code
        for part in re.split(r"[/／]", cat.name_zh):
            lookup.setdefault(part.strip().lower(), cat.code)
    return lookup


def _parse_bool(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {
        "1",
        "true",
        "yes",
        "y",
        "t",
        "是",
        "共享",
    }


def _write_venues(session: Session, frame: gpd.GeoDataFrame, rep: LayerReport, o: _Options) -> None:
    layer = "venues"
    cat_c = _column(frame, None, ("category", "类别", "分类", "kind"), layer=layer, required=True)
    name_c = _column(frame, o.name_col, ("name", "名称"), layer=layer)
    hours_c = _column(frame, None, ("opening_hours", "hours", "营业时间", "开放时间"), layer=layer)
    cap_c = _column(frame, None, ("capacity", "容量"), layer=layer)
    addr_c = _column(frame, None, ("address", "addr", "地址"), layer=layer)
    shared_c = _column(frame, None, ("shared", "共享"), layer=layer)
    lookup = _venue_category_lookup()
    geoms = frame.geometry.to_numpy()
    xy = shapely.get_coordinates(geoms)
    rows: list[tuple] = []
    seen: set[str] = set()
    for i, (cat, name, hours, cap, addr, shared) in enumerate(
        zip(
            _values(frame, cat_c),
            _values(frame, name_c),
            _values(frame, hours_c),
            _values(frame, cap_c),
            _values(frame, addr_c),
            _values(frame, shared_c),
            strict=True,
        )
    ):
        code = lookup.get((cat or "").strip().lower())
        if code is None:
            rep.reject("unknown_category", cat or "(blank)")
            continue
        key_text = f"{code}|{name or ''}|{xy[i, 0]:.6f}|{xy[i, 1]:.6f}"
        key = "F" + hashlib.sha1(key_text.encode()).hexdigest()[:24]
        if key in seen:
            rep.reject("duplicate_in_file", name or code)
            continue
        seen.add(key)
        capacity = parse_osm_number(cap)
        rows.append(
            (
                key,
                code,
                _clip(name, 200, rep),
                _clip(hours, 200, rep),
                int(capacity) if np.isfinite(capacity) and capacity >= 0 else None,
                _clip(addr, 300, rep),
                _parse_bool(shared),
                geoms[i],
            )
        )
    if not rows:
        raise _nothing_valid(o.path, layer, rep)
    temp_table(
        session,
        "stage_import_venues",
        "osm_id text, category text, name text, opening_hours text, capacity int, "
        "address text, shared bool, geom geometry(Point, 4326)",
    )
    copy_rows(
        session,
        "stage_import_venues",
        ["osm_id", "category", "name", "opening_hours", "capacity", "address", "shared", "geom"],
        ((*r[:7], g) for r, g in zip(rows, ewkb_hex([r[7] for r in rows]), strict=True)),
    )
    result = session.execute(
        text(
            """
            INSERT INTO venues (osm_id, category, name, opening_hours, capacity, address, shared,
                                geom)
            SELECT osm_id, category, name, opening_hours, capacity, address, shared, geom
            FROM stage_import_venues
            ON CONFLICT (osm_id) DO UPDATE SET
              category = EXCLUDED.category, name = EXCLUDED.name,
              opening_hours = EXCLUDED.opening_hours, capacity = EXCLUDED.capacity,
              address = EXCLUDED.address, shared = EXCLUDED.shared, geom = EXCLUDED.geom
            WHERE (venues.category, venues.name, venues.opening_hours, venues.capacity,
                   venues.address, venues.shared)
                  IS DISTINCT FROM (EXCLUDED.category, EXCLUDED.name, EXCLUDED.opening_hours,
                                    EXCLUDED.capacity, EXCLUDED.address, EXCLUDED.shared)
               OR NOT ST_Equals(venues.geom, EXCLUDED.geom)
            RETURNING (xmax = 0) AS inserted
            """
        )
    ).all()
    rep.imported = len(rows)
    rep.inserted, rep.updated = _upsert_counts(result)
