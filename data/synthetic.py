"""Synthetic scale generator: a seeded district of any size, written straight into PostGIS.

Benchmarks need a district as large as a real one (DESIGN §8: ≈600 grids, 50k buildings, 100k
volunteers, 1M requests a year, a walking network of ≥ 100k edges). Everything here is
deterministic for a seed, built in the local UTM zone (metres) and stored in WGS84.

Geometry is built bottom-up so that nesting and tiling are exact by construction:

1. grid seeds on a jittered lattice (rows north to south, ``grids`` seeds in all);
2. their Voronoi edges, clipped to the district rectangle, are densified and perturbed once
   per shared edge (both neighbours see the same wiggly line), then polygonised into grids;
3. communities are blocks of lattice rows × columns (unions of their grids), streets blocks
   of communities, the district the union of everything;
4. codes follow DESIGN §2 (``geo.codes.grid_sequence``: north first, then west first).

Buildings are small rectangles strictly inside one grid; volunteers live in buildings;
requests sit in buildings, anywhere in the district, or exactly on shared grid vertices, and
get their grid from ``geo.assign`` against the live grids read back from the database.

The pure geometry lives in ``data.synthetic_layout``, the people and request generators in
``data.synthetic_people``; this module writes the district and re-exports both.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from data.synthetic_layout import (
    ASPECT,
    DEFAULT_DISTRICT_CODE,
    DEFAULT_ORIGIN_LONLAT,
    GRID_AREA_M2,
    GRIDS_PER_COMMUNITY,
    LEVEL_CHOICES,
    NON_RESIDENTIAL_TYPES,
    SEED_JITTER,
    STREETS,
    VERTEX_SPACING_SHARE,
    WIGGLE_SHARE,
    SyntheticBuildings,
    SyntheticLayout,
    _reproject,
    _transformers,
    build_buildings,
    build_layout,
    build_network,
    shared_vertices,
    synthetic_grids,
)
from data.synthetic_people import (
    AVAILABILITY_PATTERNS,
    CATEGORY_WEIGHTS,
    GIVEN,
    ON_VERTEX_SHARE,
    OPEN_SHARE,
    OPEN_STATUSES,
    REQUEST_TEXTS,
    SOURCE,
    SURNAMES,
    _copy_frames,
    _lookup,
    _people,
    _write_requests,
)
from geo.assign import GridIndex
from layers.catalogues import request_categories
from layers.grids.repo import current_generation, live_sql
from layers.importers.store import copy_rows, ewkb_hex, replace_network

logger = logging.getLogger(__name__)

# re-exported: importers use ``data.synthetic`` as the one entry point
__all__ = [
    "ASPECT",
    "AVAILABILITY_PATTERNS",
    "CATEGORY_WEIGHTS",
    "DEFAULT_DISTRICT_CODE",
    "DEFAULT_ORIGIN_LONLAT",
    "GIVEN",
    "GRIDS_PER_COMMUNITY",
    "GRID_AREA_M2",
    "LEVEL_CHOICES",
    "NON_RESIDENTIAL_TYPES",
    "ON_VERTEX_SHARE",
    "OPEN_SHARE",
    "OPEN_STATUSES",
    "PERSONS_PER_HOUSEHOLD",
    "REQUEST_TEXTS",
    "SEED_JITTER",
    "SOURCE",
    "STREETS",
    "SURNAMES",
    "VERTEX_SPACING_SHARE",
    "WIGGLE_SHARE",
    "SyntheticBuildings",
    "SyntheticLayout",
    "SyntheticSummary",
    "build_buildings",
    "build_layout",
    "build_network",
    "generate_district",
    "live_grids",
    "shared_vertices",
    "synthetic_grids",
]

PERSONS_PER_HOUSEHOLD = 2.6


@dataclass
class SyntheticSummary:
    """What ``generate_district`` wrote (row counts, ids) and how long each part took."""

    district_code: str
    utm_epsg: int
    generation: int
    streets: int
    communities: int
    grids: int
    median_grid_vertices: float
    buildings: int
    households: int
    volunteers: int
    requests: int
    open_requests: int
    network_nodes: int
    network_edges: int
    network_version: int | None
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def live_grids(
    session: Session, bbox_lonlat: tuple[float, float, float, float] | None = None
) -> pd.DataFrame:
    """Live grid rows (id, code, community_id, geometry as shapely), optionally in a bbox."""
    where = ""
    params: dict[str, Any] = {"g": current_generation(session)}
    if bbox_lonlat is not None:
        where = "AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        params.update(zip(("x0", "y0", "x1", "y1"), bbox_lonlat, strict=True))
    rows = session.execute(
        text(
            "SELECT id, code, community_id, ST_AsBinary(geom) AS wkb FROM grids "
            f"WHERE {live_sql('', ':g')} {where} ORDER BY code, id"
        ),
        params,
    ).all()
    frame = pd.DataFrame(rows, columns=["id", "code", "community_id", "wkb"])
    frame["geometry"] = shapely.from_wkb([bytes(w) for w in frame["wkb"]])
    return frame.drop(columns="wkb")


def _insert_area(session, code, name, name_en, level, parent_id, geom) -> int:
    return session.execute(
        text(
            "INSERT INTO areas (code, name, name_en, level, parent_id, geom) VALUES "
            "(:code, :name, :name_en, :level, :parent, ST_GeomFromEWKB(decode(:g, 'hex'))) "
            "RETURNING id"
        ),
        {
            "code": code,
            "name": name,
            "name_en": name_en,
            "level": level,
            "parent": parent_id,
            "g": ewkb_hex([geom])[0],
        },
    ).scalar_one()


def generate_district(
    *,
    session: Session,
    grids: int = 600,
    buildings: int = 50_000,
    volunteers: int = 100_000,
    requests: int = 1_000_000,
    network_edges_min: int = 100_000,
    seed: int = 1,
    district_code: str = DEFAULT_DISTRICT_CODE,
    origin_lonlat: tuple[float, float] = DEFAULT_ORIGIN_LONLAT,
    now: datetime | None = None,
) -> SyntheticSummary:
    """Write a synthetic district into the database with COPY (the caller commits).

    Areas (district, streets, communities) and a new grid generation holding ``grids`` grids;
    ``buildings`` rectangles with estimated households; ``volunteers`` living in buildings,
    community by point-in-polygon; ``requests`` historical requests over the year before
    ``now`` (default: now), about 5 % still open, grid from ``geo.assign`` against the live
    grids; a walking network of ≥ ``network_edges_min`` edges (replacing the current network;
    0 skips it). Deterministic for a seed and ``now``.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        t = time.perf_counter()
        timings[name] = round(t - clock, 3)
        clock = t

    if session.scalar(text("SELECT 1 FROM areas WHERE code = :c"), {"c": district_code}):
        raise ValueError(f"district {district_code} already exists in this database")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    layout = build_layout(
        grids, seed=seed, district_code=district_code, origin_lonlat=origin_lonlat
    )
    blds = build_buildings(layout, buildings, seed=seed)
    lap("layout")

    # ---- areas and grids
    area_id: dict[str, int] = {}
    area_id[district_code] = _insert_area(
        session,
        district_code,
        "合成区",
        "Synthetic district",
        "district",
        None,
        layout.district_lonlat(),
    )
    for s, (code, geom) in enumerate(zip(layout.street_codes, layout.street_lonlat(), strict=True)):
        area_id[code] = _insert_area(
            session,
            code,
            f"合成第{s + 1}街道",
            f"Synthetic street {s + 1}",
            "street",
            area_id[district_code],
            geom,
        )
    comm_geoms = layout.community_lonlat()
    for c, (code, geom) in enumerate(zip(layout.community_codes, comm_geoms, strict=True)):
        area_id[code] = _insert_area(
            session,
            code,
            f"合成第{c + 1}社区",
            f"Synthetic community {c + 1}",
            "community",
            area_id[layout.street_codes[layout.community_street[c]]],
            geom,
        )
    generation = current_generation(session) + 1
    session.execute(
        text("INSERT INTO generations (id, summary) VALUES (:id, CAST(:s AS jsonb))"),
        {
            "id": generation,
            "s": json.dumps(
                {"source": SOURCE, "district": district_code, "grids": grids, "seed": seed}
            ),
        },
    )
    grid_households = np.bincount(blds.grid, weights=blds.households, minlength=grids).astype(int)
    comm_ids = np.array([area_id[c] for c in layout.community_codes], dtype=np.int64)
    copy_rows(
        session,
        "grids",
        ["code", "name", "community_id", "households", "population", "generation_low", "geom"],
        zip(
            layout.grid_codes,
            [
                f"合成第{layout.grid_community[i] + 1}社区第{int(c[12:])}网格"
                for i, c in enumerate(layout.grid_codes)
            ],
            comm_ids[layout.grid_community],
            grid_households,
            np.round(grid_households * PERSONS_PER_HOUSEHOLD).astype(int),
            [generation] * grids,
            ewkb_hex([MultiPolygon([g]) for g in layout.grid_lonlat]),
            strict=True,
        ),
    )
    lap("areas_grids")

    # ---- buildings
    _, to_lonlat = _transformers(layout.utm_crs)
    b_codes = np.array([f"B-S{district_code}{i + 1:06d}" for i in range(len(blds))], dtype=object)
    if len(blds):
        footprints = _reproject(blds.footprint_utm, to_lonlat)
        _copy_frames(
            session,
            "buildings",
            [
                pd.DataFrame(
                    {
                        "code": b_codes,
                        "building_type": blds.building_type,
                        "levels": blds.levels,
                        "residential": blds.residential,
                        "households": blds.households,
                        "households_estimated": True,
                        "geom": ewkb_hex(footprints),
                        "rep_point": ewkb_hex(shapely.centroid(footprints)),
                    }
                )
            ],
        )
    lap("buildings")

    # ---- walking network
    nodes_n = edges_n = 0
    version = None
    if network_edges_min > 0:
        nodes, edges = build_network(layout, network_edges_min, seed=seed)
        result = replace_network(
            session, nodes, edges, source=f"synthetic {district_code} seed {seed}", osm_ids=False
        )
        nodes_n, edges_n, version = len(nodes), len(edges), result["version"]
    lap("network")

    # ---- the live grids as stored: the index every assignment below uses
    bbox = tuple(shapely.bounds(layout.district_lonlat()).tolist())
    live = live_grids(session, bbox)  # type: ignore[arg-type]
    index = GridIndex(live["geometry"].to_numpy(), live["code"].to_numpy())
    live_id = live["id"].to_numpy()
    live_comm = live["community_id"].to_numpy()
    weights = blds.households.astype(float) + 1.0
    weights /= weights.sum()

    # ---- volunteers
    rng = np.random.default_rng([seed, 3])
    if volunteers > 0 and len(blds):
        home = blds.points_inside(rng.choice(len(blds), size=volunteers, p=weights), rng)
        lon, lat = to_lonlat.transform(home[:, 0], home[:, 1])
        hit = index.assign(lon, lat)
        names, phones = _people(volunteers, rng)
        cat_codes = np.array([c.code for c in request_categories()])
        perm = np.argsort(rng.random((volunteers, len(cat_codes))), axis=1)
        n_skills = rng.integers(1, 4, size=volunteers)
        skills = [
            "{" + ",".join(sorted(cat_codes[perm[i, : n_skills[i]]])) + "}"
            for i in range(volunteers)
        ]
        patterns = np.array([json.dumps(p) for p in AVAILABILITY_PATTERNS], dtype=object)
        _copy_frames(
            session,
            "volunteers",
            [
                pd.DataFrame(
                    {
                        "name": names,
                        "phone": phones,
                        "community_id": _lookup(live_comm, hit),
                        "skills": skills,
                        "availability": patterns[rng.integers(len(patterns), size=volunteers)],
                        "load_limit": rng.integers(2, 6, size=volunteers),
                        "points": rng.integers(0, 300, size=volunteers),
                        "geom": ewkb_hex(shapely.points(lon, lat)),
                    }
                )
            ],
        )
    lap("volunteers")

    # ---- historical requests
    n_open = 0
    if requests > 0:
        n_open = _write_requests(
            session,
            layout,
            blds,
            b_codes,
            index,
            live_id,
            live_comm,
            weights,
            n=requests,
            seed=seed,
            now=now,
        )
    lap("requests")

    summary = SyntheticSummary(
        district_code=district_code,
        utm_epsg=int(layout.utm_crs.to_epsg() or 0),
        generation=generation,
        streets=len(layout.street_codes),
        communities=len(layout.community_codes),
        grids=grids,
        median_grid_vertices=float(np.median(shapely.get_num_coordinates(layout.grid_lonlat))),
        buildings=len(blds),
        households=int(blds.households.sum()),
        volunteers=volunteers if len(blds) else 0,
        requests=requests,
        open_requests=n_open,
        network_nodes=nodes_n,
        network_edges=edges_n,
        network_version=version,
        timings_s=timings,
    )
    logger.info("synthetic district written: %s", summary.as_dict())
    return summary
