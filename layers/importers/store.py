"""Write frames into the layer tables fast (COPY into a staging table, then one upsert).

Re-running an import with the same data changes nothing: rows are matched on their natural
key (OSM id, area code) and updated in place; building codes, once given, never change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

SRID = 4326


def ewkb_hex(geoms: Any) -> np.ndarray:
    """Hex EWKB (SRID 4326) of an array of shapely geometries, as COPY accepts them."""
    arr = shapely.set_srid(np.asarray(geoms, dtype=object), SRID)
    return shapely.to_wkb(arr, hex=True, include_srid=True)


def _none(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if v is getattr(np, "nan", object()):
        return None
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def copy_rows(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence]
) -> int:
    """COPY ``rows`` into ``table`` on the session's connection (same transaction)."""
    raw = session.connection().connection.driver_connection
    n = 0
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row([_none(v) for v in row])
            n += 1
    return n


def temp_table(session: Session, name: str, columns_ddl: str) -> None:
    """A temporary staging table with explicit columns, dropped at commit."""
    session.execute(text(f"DROP TABLE IF EXISTS {name}"))
    session.execute(text(f"CREATE TEMP TABLE {name} ({columns_ddl}) ON COMMIT DROP"))


def stage(session: Session, like: str, name: str, columns: Sequence[str]) -> None:
    """A temporary table with ``columns`` of ``like`` (no constraints), dropped at commit."""
    session.execute(text(f"DROP TABLE IF EXISTS {name}"))
    session.execute(
        text(
            f"CREATE TEMP TABLE {name} ON COMMIT DROP AS "
            f"SELECT {', '.join(columns)} FROM {like} WITH NO DATA"
        )
    )


def _frame_rows(gdf: gpd.GeoDataFrame, columns: Sequence[str], geom_cols: dict[str, Any]):
    data = [gdf[c].to_numpy(dtype=object) for c in columns]
    geoms = [ewkb_hex(g) for g in geom_cols.values()]
    return zip(*data, *geoms, strict=True)


def upsert_buildings(session: Session, buildings: gpd.GeoDataFrame) -> dict[str, int]:
    """Buildings from ``osm_read`` frames, matched on OSM id; codes ``B-W<id>`` / ``B-R<id>``."""
    if buildings.empty:
        return {"inserted": 0, "updated": 0}
    footprints = buildings.geometry.to_numpy()
    reps = shapely.point_on_surface(footprints)
    frame = buildings.assign(
        code=[
            f"B-{t[0].upper()}{i}"
            for t, i in zip(buildings["osm_type"], buildings["osm_id"], strict=True)
        ],
        # buildings.osm_id: way ids as they are, relation ids negated (both kinds may clash)
        osm_key=[
            int(i) if t == "way" else -int(i)
            for t, i in zip(buildings["osm_type"], buildings["osm_id"], strict=True)
        ],
    )
    cols = [
        "code",
        "osm_key",
        "name",
        "building",
        "levels",
        "residential",
        "households",
        "households_estimated",
    ]
    target = [
        "code",
        "osm_id",
        "name",
        "building_type",
        "levels",
        "residential",
        "households",
        "households_estimated",
        "geom",
        "rep_point",
    ]
    stage(session, "buildings", "stage_buildings", target)
    copy_rows(
        session,
        "stage_buildings",
        target,
        _frame_rows(frame, cols, {"geom": footprints, "rep_point": reps}),
    )
    result = session.execute(
        text(
            """
            INSERT INTO buildings (code, osm_id, name, building_type, levels, residential,
                                   households, households_estimated, geom, rep_point)
            SELECT code, osm_id, name, building_type, levels, residential, households,
                   households_estimated, geom, rep_point FROM stage_buildings
            ON CONFLICT (osm_id) DO UPDATE SET
              name = EXCLUDED.name, building_type = EXCLUDED.building_type,
              levels = EXCLUDED.levels, residential = EXCLUDED.residential,
              households = EXCLUDED.households,
              households_estimated = EXCLUDED.households_estimated,
              geom = EXCLUDED.geom, rep_point = EXCLUDED.rep_point
            WHERE (buildings.name, buildings.building_type, buildings.levels,
                   buildings.residential, buildings.households,
                   buildings.households_estimated)
                  IS DISTINCT FROM
                  (EXCLUDED.name, EXCLUDED.building_type, EXCLUDED.levels,
                   EXCLUDED.residential, EXCLUDED.households, EXCLUDED.households_estimated)
               OR NOT ST_Equals(buildings.geom, EXCLUDED.geom)
            RETURNING (xmax = 0) AS inserted
            """
        )
    ).all()
    inserted = sum(1 for r in result if r.inserted)
    return {"inserted": inserted, "updated": len(result) - inserted}


def upsert_venues(session: Session, pois: gpd.GeoDataFrame) -> dict[str, int]:
    """Venues from ``osm_read`` POIs, matched on ``N123`` / ``W123`` / ``R123`` OSM keys."""
    if pois.empty:
        return {"inserted": 0, "updated": 0}
    frame = pois.assign(
        osm_key=[
            f"{t[0].upper()}{i}" for t, i in zip(pois["osm_type"], pois["osm_id"], strict=True)
        ]
    )
    stage(
        session, "venues", "stage_venues", ["osm_id", "category", "name", "opening_hours", "geom"]
    )
    copy_rows(
        session,
        "stage_venues",
        ["osm_id", "category", "name", "opening_hours", "geom"],
        _frame_rows(
            frame,
            ["osm_key", "category", "name", "opening_hours"],
            {"geom": pois.geometry.to_numpy()},
        ),
    )
    result = session.execute(
        text(
            """
            INSERT INTO venues (osm_id, category, name, opening_hours, geom)
            SELECT osm_id, category, name, opening_hours, geom FROM stage_venues
            ON CONFLICT (osm_id) DO UPDATE SET
              category = EXCLUDED.category, name = EXCLUDED.name,
              opening_hours = EXCLUDED.opening_hours, geom = EXCLUDED.geom
            WHERE (venues.category, venues.name, venues.opening_hours)
                  IS DISTINCT FROM (EXCLUDED.category, EXCLUDED.name, EXCLUDED.opening_hours)
               OR NOT ST_Equals(venues.geom, EXCLUDED.geom)
            RETURNING (xmax = 0) AS inserted
            """
        )
    ).all()
    inserted = sum(1 for r in result if r.inserted)
    return {"inserted": inserted, "updated": len(result) - inserted}


def network_fingerprint(edges: gpd.GeoDataFrame) -> str:
    import hashlib

    h = hashlib.sha1()
    for col in ("source", "target", "length_m"):
        h.update(np.asarray(edges[col].to_numpy(), dtype=np.float64).round(3).tobytes())
    return h.hexdigest()


def replace_network(
    session: Session,
    nodes: gpd.GeoDataFrame,
    edges: gpd.GeoDataFrame,
    *,
    source: str,
    node_id_column: str = "node_id",
    osm_ids: bool = True,
) -> dict[str, Any]:
    """Replace the walking network by ``nodes`` / ``edges`` as a new network version.

    Unchanged input (same fingerprint as the current version) changes nothing.
    """
    fingerprint = network_fingerprint(edges)
    current = session.execute(
        text("SELECT id, summary->>'fingerprint' FROM network_versions ORDER BY id DESC LIMIT 1")
    ).first()
    if current is not None and current[1] == fingerprint:
        return {"version": current[0], "unchanged": True}
    session.execute(text("DELETE FROM network_edges"))
    session.execute(text("DELETE FROM network_nodes"))
    ext_ids = nodes[node_id_column].to_numpy(dtype=np.int64)
    db_ids = np.arange(1, len(ext_ids) + 1, dtype=np.int64)
    # identity columns: write explicit ids (OVERRIDING via COPY is allowed for BY DEFAULT)
    copy_rows(
        session,
        "network_nodes",
        ["id", "osm_id", "geom"],
        zip(
            db_ids,
            ext_ids if osm_ids else [None] * len(ext_ids),
            ewkb_hex(nodes.geometry.to_numpy()),
            strict=True,
        ),
    )
    lookup = dict(zip(ext_ids.tolist(), db_ids.tolist(), strict=True))
    src = [lookup[int(s)] for s in edges["source"]]
    dst = [lookup[int(t)] for t in edges["target"]]
    way = edges["way_id"].to_numpy(dtype=object) if "way_id" in edges else [None] * len(edges)
    hw = edges["highway"].to_numpy(dtype=object) if "highway" in edges else [None] * len(edges)
    nm = edges["name"].to_numpy(dtype=object) if "name" in edges else [None] * len(edges)
    copy_rows(
        session,
        "network_edges",
        ["source", "target", "length_m", "osm_way_id", "highway", "name", "geom"],
        zip(
            src,
            dst,
            edges["length_m"].to_numpy(),
            way,
            hw,
            nm,
            ewkb_hex(edges.geometry.to_numpy()),
            strict=True,
        ),
    )
    session.execute(
        text("SELECT setval(pg_get_serial_sequence('network_nodes', 'id'), :n)"),
        {"n": max(len(db_ids), 1)},
    )
    version = session.execute(
        text(
            "INSERT INTO network_versions (source, summary) VALUES (:s, CAST(:j AS jsonb)) "
            "RETURNING id"
        ),
        {
            "s": source,
            "j": __import__("json").dumps(
                {"fingerprint": fingerprint, "nodes": len(nodes), "edges": len(edges)}
            ),
        },
    ).scalar_one()
    return {"version": version, "nodes": len(nodes), "edges": len(edges), "unchanged": False}
