"""Writers of volunteers, grids (a community's new generation) and the walking network
(from a file or from OSM), each matched on natural keys so re-runs change nothing."""

from __future__ import annotations

import json
import logging
import re

import geopandas as gpd
import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.codes import is_valid_grid_code
from geo.households import parse_osm_number
from layers.catalogues import request_categories
from layers.grids.repo import area_at_point_sql, current_generation, live_sql
from layers.importers.common import (
    LayerReport,
    _clip,
    _column,
    _nothing_valid,
    _Options,
    _utm_srid,
    _values,
)
from layers.importers.files import (
    split_list,
)
from layers.importers.osm_read import read_lines_as_network
from layers.importers.store import (
    copy_rows,
    ewkb_hex,
    replace_network,
    temp_table,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- volunteers


def _skill_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for cat in request_categories():
        for key in (cat.code, cat.name_zh, cat.name_en):
            lookup[key.strip().lower()] = cat.code
    return lookup


def _write_volunteers(
    session: Session, frame: gpd.GeoDataFrame, rep: LayerReport, o: _Options
) -> None:
    layer = "volunteers"
    name_c = _column(frame, o.name_col, ("name", "姓名"), layer=layer, required=True)
    phone_c = _column(frame, None, ("phone", "mobile", "tel", "电话", "手机"), layer=layer)
    skills_c = _column(frame, None, ("skills", "skill", "技能", "服务类别"), layer=layer)
    comm_c = _column(frame, None, ("community_code", "community", "社区编码", "社区"), layer=layer)
    load_c = _column(frame, None, ("load_limit", "max_load"), layer=layer)
    skills_of = _skill_lookup()
    communities = dict(
        session.execute(text("SELECT code, id FROM areas WHERE level = 'community'")).all()
    )
    geoms = frame.geometry.to_numpy()
    rows: list[tuple] = []
    seen: set[tuple[str, str | None]] = set()
    for i, (name, phone, skills, comm, load) in enumerate(
        zip(
            _values(frame, name_c),
            _values(frame, phone_c),
            _values(frame, skills_c),
            _values(frame, comm_c),
            _values(frame, load_c),
            strict=True,
        )
    ):
        if name is None:
            rep.reject("missing_name")
            continue
        codes = [skills_of.get(s.lower()) for s in split_list(skills)]
        if None in codes:
            rep.reject("unknown_skill", skills)
            continue
        community_id = None
        if comm is not None:
            community_id = communities.get(comm)
            if community_id is None:
                rep.reject("unknown_community", comm)
                continue
        key = (name, phone)
        if key in seen:
            rep.reject("duplicate_in_file", name)
            continue
        seen.add(key)
        limit = parse_osm_number(load)
        rows.append(
            (
                _clip(name, 100, rep),
                _clip(phone, 32, rep),
                sorted(set(codes)),
                community_id,
                int(limit) if np.isfinite(limit) and limit >= 0 else None,
                geoms[i],
            )
        )
    if not rows:
        raise _nothing_valid(o.path, layer, rep)
    temp_table(
        session,
        "stage_import_volunteers",
        "name text, phone text, skills varchar(32)[], community_id bigint, load_limit int, "
        "geom geometry(Point, 4326)",
    )
    copy_rows(
        session,
        "stage_import_volunteers",
        ["name", "phone", "skills", "community_id", "load_limit", "geom"],
        ((*r[:5], g) for r, g in zip(rows, ewkb_hex([r[5] for r in rows]), strict=True)),
    )
    derived = session.execute(
        text(
            f"""
            UPDATE stage_import_volunteers s SET community_id = (
              {area_at_point_sql("s.geom")})
            WHERE s.community_id IS NULL
            """
        )
    ).rowcount
    rep.stats["community_from_home_point"] = derived
    updated = session.execute(
        text(
            """
            UPDATE volunteers v SET skills = s.skills, community_id = s.community_id,
                   load_limit = coalesce(s.load_limit, v.load_limit), geom = s.geom
            FROM stage_import_volunteers s
            WHERE v.name = s.name AND v.phone IS NOT DISTINCT FROM s.phone
              AND (v.skills IS DISTINCT FROM s.skills
                   OR v.community_id IS DISTINCT FROM s.community_id
                   OR (s.load_limit IS NOT NULL AND s.load_limit <> v.load_limit)
                   OR NOT ST_Equals(v.geom, s.geom))
            """
        )
    ).rowcount
    inserted = session.execute(
        text(
            """
            INSERT INTO volunteers (name, phone, skills, community_id, load_limit, geom)
            SELECT s.name, s.phone, s.skills, s.community_id, coalesce(s.load_limit, 3), s.geom
            FROM stage_import_volunteers s
            WHERE NOT EXISTS (SELECT 1 FROM volunteers v
                              WHERE v.name = s.name AND v.phone IS NOT DISTINCT FROM s.phone)
            """
        )
    ).rowcount
    rep.imported, rep.inserted, rep.updated = len(rows), inserted, updated


# --------------------------------------------------------------------------- grids


def _write_grids(session: Session, frame: gpd.GeoDataFrame, rep: LayerReport, o: _Options) -> None:
    layer = "grids"
    code_c = _column(
        frame, o.code_col, ("code", "grid_code", "网格编码", "编码"), layer=layer, required=True
    )
    name_c = _column(frame, o.name_col, ("name", "网格名称", "名称"), layer=layer)
    hh_c = _column(frame, None, ("households", "户数"), layer=layer)
    pop_c = _column(frame, None, ("population", "人口"), layer=layer)
    geoms = frame.geometry.to_numpy()
    rows: list[tuple] = []
    seen: set[str] = set()
    for i, (code, name, hh, pop) in enumerate(
        zip(
            _values(frame, code_c),
            _values(frame, name_c),
            _values(frame, hh_c),
            _values(frame, pop_c),
            strict=True,
        )
    ):
        if not is_valid_grid_code(code):
            rep.reject("bad_grid_code", code or "(blank)")
            continue
        if code in seen:
            rep.reject("duplicate_code", code)
            continue
        seen.add(code)
        households, population = parse_osm_number(hh), parse_osm_number(pop)
        rows.append(
            (
                code,
                _clip(name or f"网格{code[-3:]}", 200, rep),
                code[:12],
                int(households) if np.isfinite(households) and households >= 0 else None,
                int(population) if np.isfinite(population) and population >= 0 else 0,
                geoms[i],
            )
        )
    if not rows:
        raise _nothing_valid(o.path, layer, rep)
    srid = _utm_srid(np.array([r[5] for r in rows], dtype=object))
    temp_table(
        session,
        "stage_import_grids",
        "code text, name text, community_code text, households int, population int, "
        "community_id bigint, geom geometry(MultiPolygon, 4326)",
    )
    copy_rows(
        session,
        "stage_import_grids",
        ["code", "name", "community_code", "households", "population", "geom"],
        ((*r[:5], g) for r, g in zip(rows, ewkb_hex([r[5] for r in rows]), strict=True)),
    )
    checked = session.execute(
        text(
            """
            SELECT s.code, c.id AS community_id,
                   ST_CoveredBy(ST_Transform(s.geom, :srid),
                                ST_Buffer(ST_Transform(c.geom, :srid), :tol)) AS covered
            FROM stage_import_grids s
            LEFT JOIN areas c ON c.code = s.community_code AND c.level = 'community'
            ORDER BY s.code
            """
        ),
        {"srid": srid, "tol": o.tolerance_m},
    ).all()
    accepted = []
    for r in checked:
        if r.community_id is None:
            rep.reject("unknown_community", r.code)
        elif not r.covered:
            rep.reject("outside_community", r.code)
        else:
            accepted.append(r.code)
    if not accepted:
        raise _nothing_valid(o.path, layer, rep)
    session.execute(
        text("DELETE FROM stage_import_grids WHERE NOT (code = ANY(:codes))"), {"codes": accepted}
    )
    session.execute(
        text(
            """
            UPDATE stage_import_grids s SET community_id = c.id
            FROM areas c WHERE c.code = s.community_code AND c.level = 'community'
            """
        )
    )
    rep.stats["households_from_buildings"] = session.execute(
        text(
            """
            UPDATE stage_import_grids s SET households = coalesce(
              (SELECT sum(b.households) FROM buildings b WHERE ST_Covers(s.geom, b.rep_point)), 0)
            WHERE s.households IS NULL
            """
        )
    ).rowcount
    session.execute(text("LOCK TABLE generations IN SHARE ROW EXCLUSIVE MODE"))
    current = current_generation(session)
    community_ids = [
        int(x)
        for x in session.execute(
            text("SELECT DISTINCT community_id FROM stage_import_grids")
        ).scalars()
    ]
    # Under the lock no generation above ``current`` exists (generation_high references
    # generations), so "live at current" is "generation_high IS NULL" as it always was.
    live = f"grids.community_id = ANY(:cids) AND {live_sql('grids', ':current')}"
    same = session.execute(
        text(
            f"""
            SELECT (SELECT count(*) FROM grids WHERE {live}) AS n_live,
                   (SELECT count(*) FROM stage_import_grids s JOIN grids
                      ON grids.code = s.code AND {live}
                     WHERE grids.name = s.name AND grids.households = s.households
                       AND grids.population = s.population
                       AND ST_Equals(grids.geom, s.geom)) AS n_same
            """
        ),
        {"cids": community_ids, "current": current},
    ).one()
    rep.imported = len(accepted)
    rep.stats["communities"] = len(community_ids)
    if same.n_live == len(accepted) and same.n_same == len(accepted):
        rep.stats["generation"] = f"{current} (unchanged)"
        return
    new = current + 1
    session.execute(
        text("INSERT INTO generations (id, summary) VALUES (:id, CAST(:s AS jsonb))"),
        {
            "id": new,
            "s": json.dumps(
                {
                    "source": f"import:{o.path.name}",
                    "grids": len(accepted),
                    "communities": len(community_ids),
                }
            ),
        },
    )
    closed = session.execute(
        text(f"UPDATE grids SET generation_high = :new WHERE {live}"),
        {"new": new, "cids": community_ids, "current": current},
    ).rowcount
    inserted = session.execute(
        text(
            """
            INSERT INTO grids (code, name, community_id, households, population,
                               generation_low, geom)
            SELECT code, name, community_id, households, population, :new, geom
            FROM stage_import_grids
            """
        ),
        {"new": new},
    ).rowcount
    rep.inserted = inserted
    rep.stats["generation"] = new
    rep.stats["closed_grids"] = closed


# --------------------------------------------------------------------------- network


_WAY_ID_RE = re.compile(r"^-?(\d+)")


def _way_id(value: str | None) -> int | None:
    match = _WAY_ID_RE.match(value or "")
    if match is None:
        return None
    number = int(match.group(1))
    return number if number < 2**63 else None


def _write_network_file(
    session: Session, frame: gpd.GeoDataFrame, rep: LayerReport, o: _Options
) -> None:
    layer = "network"
    highway_c = _column(
        frame, None, ("highway", "fclass", "type", "road_type", "class"), layer=layer
    )
    name_c = _column(frame, o.name_col, ("name", "名称", "道路名称"), layer=layer)
    way_c = _column(frame, None, ("osm_id", "way_id", "osm_way_id", "edge_id"), layer=layer)
    lines = gpd.GeoDataFrame(
        {
            "highway": [
                h.removeprefix("highway.")[:32] if h else None for h in _values(frame, highway_c)
            ],
            "name": [_clip(n, 200, rep) for n in _values(frame, name_c)],
            "way_id": [_way_id(w) for w in _values(frame, way_c)],
        },
        geometry=frame.geometry.to_numpy(),
        crs="EPSG:4326",
    )
    net = read_lines_as_network(lines, snap_m=o.snap_m)
    rep.merge(net.summary, "edges")
    if net.edges.empty:
        raise _nothing_valid(o.path, layer, rep)
    edges = net.edges
    way_ids = [None if v is None or v != v else int(v) for v in edges["way_id"]]
    edges = edges.assign(way_id=pd.Series(way_ids, index=edges.index, dtype=object))
    rep.imported = len(edges)
    rep.stats.update(
        {
            "snap_m": o.snap_m,
            "merged_ends": net.summary.stats.get("merged_ends", 0),
            "components": net.summary.stats.get("components", 0),
        }
    )
    _write_network(session, net.nodes, edges, rep, source=f"file:{o.path.name}", osm_ids=False)


def _write_network(
    session: Session,
    nodes: gpd.GeoDataFrame,
    edges: gpd.GeoDataFrame,
    rep: LayerReport,
    *,
    source: str,
    osm_ids: bool,
) -> None:
    if edges.empty:
        rep.stats["network"] = "kept as it was (no walkable ways in the file)"
        return
    result = replace_network(session, nodes, edges, source=source, osm_ids=osm_ids)
    rep.stats["version"] = result["version"]
    rep.stats["nodes"] = len(nodes)
    if result["unchanged"]:
        rep.stats["network"] = "unchanged"
    else:
        rep.inserted = len(edges)
        rep.stats["network"] = "replaced"
