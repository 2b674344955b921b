"""Import services: OpenStreetMap files and GeoJSON / GeoPackage / Shapefile / CSV into layers.

Each service owns its transaction: everything is written in ONE transaction, committed at the
end; any error rolls it back, so a failed import leaves the database as it was. Re-running an
import with the same file changes nothing (rows are matched on natural keys; an unchanged
network or grid set creates no new version). Every import returns an ``ImportReport``:
imported / inserted / updated / repaired / rejected per layer, each with its reasons.

Layers a file can go into (``LAYERS``):

- ``areas``: code (6 / 9 / 12 digits: district / street / community), name, optional level and
  parent code (default: the code's prefix). A child must lie within its parent (ST_CoveredBy in
  the local UTM zone with ``tolerance_m``) or it is rejected with the reason ``outside_parent``.
- ``buildings``: optional code (else one derived from the footprint, so re-runs match), name,
  type, levels, households (else estimated by DESIGN §2, flagged as estimated).
- ``venues``: category (a code or name from ``data/catalogues/venue_categories.csv``), name,
  opening hours, capacity, address, shared. Matched on category + name + position.
- ``volunteers``: name, phone, skills (request-category codes), community code (else the
  community covering the home point). Matched on name + phone.
- ``grids``: a whole community's grids as a new generation: 15-digit codes
  (``geo.codes.is_valid_grid_code``) whose community exists and covers them. Only the live
  grids of the communities in the file are closed. (Re-homing open requests is the publish
  workflow's job, not the importer's.)
- ``network``: road lines joined into a walking network where ends are within ``snap_m``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import shapely
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from tqdm import tqdm

from geo.codes import is_valid_grid_code
from geo.crs import utm_epsg_for_lonlat
from geo.households import estimate_households, is_residential, parse_osm_number
from layers.catalogues import request_categories, venue_categories
from layers.errors import BadRequest, Unprocessable
from layers.grids.repo import area_at_point_sql, current_generation, live_sql
from layers.importers.files import (
    CHINA,
    ReferenceBox,
    find_column,
    load_features,
    split_list,
    text_value,
)
from layers.importers.osm_read import ImportSummary, read_lines_as_network, read_osm
from layers.importers.store import (
    copy_rows,
    ewkb_hex,
    replace_network,
    temp_table,
    upsert_buildings,
    upsert_venues,
)

logger = logging.getLogger(__name__)

LAYERS = ("areas", "grids", "buildings", "venues", "volunteers", "network")
DEFAULT_NESTING_TOLERANCE_M = 5.0
DEFAULT_SNAP_M = 0.5
_MAX_EXAMPLES = 5

#: layer -> (geometry kind, single part)
_GEOMETRY: dict[str, tuple[str, bool]] = {
    "areas": ("polygon", False),
    "grids": ("polygon", False),
    "buildings": ("polygon", True),
    "venues": ("point", True),
    "volunteers": ("point", True),
    "network": ("line", False),
}
_PARENT_LEVEL = {"street": "district", "community": "street"}
_LEVEL_BY_LENGTH = {6: "district", 9: "street", 12: "community"}
_LEVEL_NAMES = {
    "district": "district",
    "区": "district",
    "县": "district",
    "区县": "district",
    "street": "street",
    "街道": "street",
    "镇": "street",
    "乡": "street",
    "乡镇": "street",
    "community": "community",
    "社区": "community",
    "村": "community",
    "居委会": "community",
}


# --------------------------------------------------------------------------- reports


@dataclass
class LayerReport:
    """What one layer received: rows accepted, written (inserted / updated), repaired, rejected."""

    imported: int = 0
    inserted: int = 0
    updated: int = 0
    repaired: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return max(self.imported - self.inserted - self.updated, 0)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def total_repaired(self) -> int:
        return sum(self.repaired.values())

    def reject(self, reason: str, example: str | None = None, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n
        if example is not None:
            bucket = self.examples.setdefault(reason, [])
            if len(bucket) < _MAX_EXAMPLES:
                bucket.append(example)

    def repair(self, reason: str, n: int = 1) -> None:
        self.repaired[reason] = self.repaired.get(reason, 0) + n

    def merge(self, summary: ImportSummary, frame: str) -> None:
        """Add the repairs and rejections a reader counted under ``frame``."""
        for reason, n in summary.repaired.get(frame, {}).items():
            self.repair(reason, n)
        for reason, n in summary.rejected.get(frame, {}).items():
            self.reject(reason, n=n)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "repaired": dict(self.repaired),
            "rejected": dict(self.rejected),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "stats": dict(self.stats),
        }


def _reasons(counts: dict[str, int], examples: dict[str, list[str]] | None = None) -> str:
    parts = []
    for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        ex = (examples or {}).get(reason)
        parts.append(f"{reason} {n}" + (f" (e.g. {', '.join(ex)})" if ex else ""))
    return "; ".join(parts)


@dataclass
class ImportReport:
    """The closing summary of one import; ``str(report)`` prints it."""

    source: str
    kind: str
    layers: dict[str, LayerReport] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def layer(self, name: str) -> LayerReport:
        return self.layers.setdefault(name, LayerReport())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "layers": {k: v.as_dict() for k, v in self.layers.items()},
            "stats": dict(self.stats),
            "duration_s": round(self.duration_s, 3),
        }

    def format(self) -> str:
        lines = [f"imported {self.source} ({self.kind}) in {self.duration_s:.1f} s"]
        for key, value in self.stats.items():
            lines.append(f"  {key}: {value}")
        for name, rep in self.layers.items():
            lines.append(
                f"  {name}: {rep.imported} imported ({rep.inserted} inserted, "
                f"{rep.updated} updated, {rep.unchanged} unchanged), "
                f"{rep.total_repaired} repaired, {rep.total_rejected} rejected"
            )
            if rep.repaired:
                lines.append(f"    repaired: {_reasons(rep.repaired)}")
            if rep.rejected:
                lines.append(f"    rejected: {_reasons(rep.rejected, rep.examples)}")
            for key, value in rep.stats.items():
                lines.append(f"    {key}: {value}")
        return "\n".join(lines)

    __str__ = format


# --------------------------------------------------------------------------- plumbing


def _bar(total: int, desc: str, progress: bool | None) -> tqdm:
    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr)


def _step(bar: tqdm, what: str) -> None:
    bar.set_postfix_str(what)
    bar.update(1)


def _db_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0][:300] if lines else type(orig).__name__


@contextmanager
def _transaction(session: Session) -> Iterator[None]:
    """Commit what the block wrote, or roll all of it back (database errors become
    ``import_failed``)."""
    try:
        yield
        session.commit()
    except (DBAPIError, psycopg.Error) as exc:
        session.rollback()
        logger.warning("import rolled back: %s", _db_reason(exc))
        raise Unprocessable("import_failed", reason=_db_reason(exc)) from exc
    except BaseException:
        session.rollback()
        raise


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise BadRequest("import_not_found", path=str(path))
    if path.stat().st_size == 0:
        raise BadRequest("import_empty", path=path.name, reason="the file is empty (0 bytes)")


def reference_boxes(session: Session) -> list[ReferenceBox]:
    """Where imported data is expected: each district's extent (widened by a quarter of its size,
    at least 0.1°), and China."""
    rows = session.execute(
        text(
            "SELECT code, name, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) "
            "FROM (SELECT code, name, Box2D(geom) AS b FROM areas WHERE level = 'district') q "
            "ORDER BY code"
        )
    ).all()
    boxes = []
    for code, name, x0, y0, x1, y1 in rows:
        mx = max(0.1, 0.25 * (x1 - x0))
        my = max(0.1, 0.25 * (y1 - y0))
        boxes.append(ReferenceBox(f"district {code} {name}", (x0 - mx, y0 - my, x1 + mx, y1 + my)))
    return [*boxes, CHINA]


@dataclass
class _Options:
    path: Path
    code_col: str | None
    name_col: str | None
    tolerance_m: float
    snap_m: float
    bar: tqdm


def _column(
    frame: gpd.GeoDataFrame,
    given: str | None,
    candidates: Sequence[str],
    *,
    layer: str,
    required: bool = False,
) -> str | None:
    """The column to read: the one given (must exist) or the first matching candidate."""
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if given is not None:
        if given not in columns:
            raise BadRequest(
                "missing_columns", layer=layer, columns=given, available=", ".join(columns)
            )
        return given
    return _find_column(columns, candidates, layer=layer, required=required)


def _find_column(
    columns: Sequence[str], candidates: Sequence[str], *, layer: str, required: bool
) -> str | None:
    """The first of ``columns`` matching a candidate; 400 ``missing_columns`` when required."""
    found = find_column(columns, candidates)
    if found is None and required:
        raise BadRequest(
            "missing_columns",
            layer=layer,
            columns=" | ".join(candidates[:3]),
            available=", ".join(map(str, columns)) or "(none)",
        )
    return found


def _values(frame: gpd.GeoDataFrame, column: str | None) -> list[str | None]:
    if column is None:
        return [None] * len(frame)
    return [text_value(v) for v in frame[column].to_numpy(dtype=object)]


def _clip(value: str | None, length: int, rep: LayerReport) -> str | None:
    if value is not None and len(value) > length:
        rep.repair("text_truncated")
        return value[:length]
    return value


def _positive_int(value: str | None) -> int | None:
    number = parse_osm_number(value)
    if not np.isfinite(number) or number <= 0:
        return None
    return int(np.floor(number + 0.5))


def _nothing_valid(path: Path, layer: str, rep: LayerReport) -> Unprocessable:
    return Unprocessable(
        "import_nothing_valid",
        path=path.name,
        layer=layer,
        reasons=_reasons(rep.rejected, rep.examples) or "no rows",
    )


def _utm_srid(geoms: np.ndarray) -> int:
    xy = shapely.get_coordinates(shapely.centroid(geoms))
    return utm_epsg_for_lonlat(xy[:, 0], xy[:, 1])


def _upsert_counts(rows: Sequence[Any]) -> tuple[int, int]:
    inserted = sum(1 for r in rows if r.inserted)
    return inserted, len(rows) - inserted


# --------------------------------------------------------------------------- OSM


def import_osm(
    *,
    session: Session,
    path: str | Path,
    progress: bool | None = None,
    dwelling_size_m2: float = 90.0,
    default_levels: int = 5,
) -> ImportReport:
    """Import an OSM file (``.osm`` / ``.osm.pbf``): upsert buildings and venues and replace the
    walking network, in one transaction."""
    started = time.perf_counter()
    path = Path(path)
    _check_file(path)
    report = ImportReport(source=str(path), kind="osm")
    with _bar(4, f"import {path.name}", progress) as bar:
        try:
            frames = read_osm(
                path, dwelling_size_m2=dwelling_size_m2, default_levels=default_levels
            )
        except FileNotFoundError as exc:
            raise BadRequest("import_not_found", path=str(path)) from exc
        except ValueError as exc:
            if "not an OSM file" in str(exc):
                raise BadRequest(
                    "import_format",
                    path=path.name,
                    suffix="".join(path.suffixes) or "(none)",
                    supported=".osm, .osm.pbf, .pbf",
                ) from exc
            raise BadRequest("import_corrupt", path=path.name, reason=str(exc)) from exc
        except RuntimeError as exc:
            raise BadRequest("import_corrupt", path=path.name, reason=str(exc)) from exc
        _step(bar, "read")
        summary = frames.summary
        if frames.buildings.empty and frames.pois.empty and frames.network_edges.empty:
            raise BadRequest(
                "import_empty", path=path.name, reason="no buildings, venues or walkable ways"
            )
        buildings, venues, network = (
            report.layer("buildings"),
            report.layer("venues"),
            report.layer("network"),
        )
        buildings.imported = len(frames.buildings)
        buildings.merge(summary, "buildings")
        venues.imported = len(frames.pois)
        venues.merge(summary, "pois")
        network.imported = len(frames.network_edges)
        network.merge(summary, "network_ways")
        with _transaction(session):
            counts = upsert_buildings(session, frames.buildings)
            buildings.inserted, buildings.updated = counts["inserted"], counts["updated"]
            _step(bar, "buildings")
            counts = upsert_venues(session, frames.pois)
            venues.inserted, venues.updated = counts["inserted"], counts["updated"]
            _step(bar, "venues")
            _write_network(
                session,
                frames.network_nodes,
                frames.network_edges,
                network,
                source=f"osm:{path.name}",
                osm_ids=True,
            )
            network.stats.update({k: v for k, v in summary.stats.items() if k in ("components",)})
            _step(bar, "network")
    report.duration_s = time.perf_counter() - started
    logger.info("%s", report)
    return report


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


# --------------------------------------------------------------------------- files


def import_file(
    *,
    session: Session,
    path: str | Path,
    layer: str,
    crs: str | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    code_col: str | None = None,
    name_col: str | None = None,
    source_layer: str | None = None,
    snap_m: float = DEFAULT_SNAP_M,
    tolerance_m: float = DEFAULT_NESTING_TOLERANCE_M,
    progress: bool | None = None,
) -> ImportReport:
    """Import a GeoJSON / GeoPackage / Shapefile (``.shp`` or ``.zip``) / CSV file into ``layer``.

    ``crs`` (``EPSG:xxxx`` | ``wgs84`` | ``gcj02`` | ``bd09``) overrides the file's CRS; CSV
    points come from ``lon_col`` / ``lat_col`` (found by name when not given). Everything is
    converted to WGS84. One transaction; a refused or failed import changes nothing.
    """
    started = time.perf_counter()
    if layer not in LAYERS:
        raise BadRequest("unknown_layer", layer=layer, available=", ".join(LAYERS))
    if snap_m < 0 or tolerance_m < 0:
        raise BadRequest("bad_request", reason="snap_m and tolerance_m must be >= 0")
    path = Path(path)
    kind, single = _GEOMETRY[layer]
    report = ImportReport(source=str(path), kind=f"{layer} file")
    with _bar(2, f"import {path.name} → {layer}", progress) as bar, _transaction(session):
        loaded = load_features(
            path,
            kind=kind,
            frame=layer,
            crs=crs,
            lon_col=lon_col,
            lat_col=lat_col,
            source_layer=source_layer,
            single=single,
            references=reference_boxes(session),
        )
        _step(bar, "read")
        report.stats.update({"format": loaded.format, "rows": loaded.rows_read, **loaded.stats})
        rep = report.layer(layer)
        rep.merge(loaded.summary, layer)
        opts = _Options(path, code_col, name_col, tolerance_m, snap_m, bar)
        _WRITERS[layer](session, loaded.frame, rep, opts)
        _step(bar, "written")
    report.duration_s = time.perf_counter() - started
    logger.info("%s", report)
    return report


def import_network(
    *,
    session: Session,
    path: str | Path,
    crs: str | None = None,
    snap_m: float = DEFAULT_SNAP_M,
    source_layer: str | None = None,
    progress: bool | None = None,
) -> ImportReport:
    """Import a road-line file as the walking network (ends within ``snap_m`` joined)."""
    return import_file(
        session=session,
        path=path,
        layer="network",
        crs=crs,
        snap_m=snap_m,
        source_layer=source_layer,
        progress=progress,
    )


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


_WRITERS: dict[str, Callable[[Session, gpd.GeoDataFrame, LayerReport, _Options], None]] = {
    "areas": _write_areas,
    "buildings": _write_buildings,
    "venues": _write_venues,
    "volunteers": _write_volunteers,
    "grids": _write_grids,
    "network": _write_network_file,
}


__all__ = [
    "DEFAULT_NESTING_TOLERANCE_M",
    "DEFAULT_SNAP_M",
    "LAYERS",
    "ImportReport",
    "LayerReport",
    "import_file",
    "import_network",
    "import_osm",
    "reference_boxes",
]
