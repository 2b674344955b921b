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

import logging
import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
from sqlalchemy.orm import Session

from layers.errors import BadRequest
from layers.importers.common import (
    _GEOMETRY,
    DEFAULT_NESTING_TOLERANCE_M,
    DEFAULT_SNAP_M,
    LAYERS,
    ImportReport,
    LayerReport,
    _bar,
    _check_file,
    _Options,
    _step,
    _transaction,
    reference_boxes,
)
from layers.importers.files import (
    load_features,
)
from layers.importers.osm_read import read_osm
from layers.importers.store import (
    upsert_buildings,
    upsert_venues,
)
from layers.importers.writers_grids import (
    _write_grids,
    _write_network,
    _write_network_file,
    _write_volunteers,
)
from layers.importers.writers_places import _write_areas, _write_buildings, _write_venues

logger = logging.getLogger(__name__)

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
