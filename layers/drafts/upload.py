"""Reading a community's grids from a planner's file (GeoJSON / GPKG / Shapefile, any CRS incl.
GCJ-02 / BD-09): codes and names found, geometries checked, explained when they cannot be used."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon

from layers.drafts.service import _CRS_HELP, CODE_FIELDS, NAME_FIELDS, Community, GridRow
from layers.errors import BadRequest, MinqingError, Unprocessable

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- files


def read_grid_file(
    path: Path,
    community: Community,
    *,
    crs: str | None = None,
    code_field: str | None = None,
    name_field: str | None = None,
) -> tuple[list[GridRow], dict[str, Any]]:
    """Grid rows (lon/lat, geometry kept as given — invalid ones are reported by validation
    with their repair) from a GeoJSON / GeoPackage / zipped Shapefile in any CRS.

    Reads with ``layers.importers.files`` (format, CRS incl. gcj02 / bd09, lat/lon swap
    diagnosis) but does not let it repair polygons: the planner must see the repair.
    """
    import geopandas as gpd
    import pyproj

    from layers.importers.files import (
        CHINA,
        CRS_LONLAT,
        ReferenceBox,
        check_lonlat,
        find_column,
        geometries_to_wgs84,
        is_geographic,
        normalise_crs,
        read_source,
        text_value,
    )

    try:
        crs_name = normalise_crs(crs) if crs else None
    except MinqingError as e:
        raise BadRequest(
            "unknown_crs", crs=str(crs), available=_CRS_HELP, supported=_CRS_HELP
        ) from e
    gdf, fmt = read_source(path)
    if fmt == "CSV":
        raise BadRequest(
            "import_format",
            path=path.name,
            suffix=".csv",
            supported=".geojson, .json, .gpkg, .zip, .shp",
        )
    geoms = shapely.force_2d(gdf.geometry.to_numpy())
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not present.any():
        raise BadRequest("import_empty", path=path.name, reason="no geometries")
    gdf, geoms = gdf.loc[present], geoms[present]
    file_crs = gdf.crs
    if crs_name is None:
        if file_crs is None or file_crs.equals(CRS_LONLAT, ignore_axis_order=True):
            crs_name = "wgs84"
        else:
            crs_name = "file"
    x0, y0, x1, y1 = community.geom.bounds
    around = ReferenceBox(community.code, (x0 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5))
    if is_geographic(crs_name, file_crs):
        keep = check_lonlat(geoms, references=(around, CHINA), path=path.name)
        if not keep.all():
            bad = geoms[~keep][0]
            x, y = shapely.get_coordinates(bad)[0]
            raise Unprocessable(
                "import_coordinates_out_of_range",
                path=path.name,
                share=round(100 * float((~keep).mean()), 1),
                example=f"{x:.6g}, {y:.6g}",
            )
    try:
        if crs_name == "file":
            wgs = gpd.GeoSeries(geoms, crs=file_crs).to_crs(CRS_LONLAT).to_numpy()
        else:
            wgs = geometries_to_wgs84(geoms, crs_name)
    except pyproj.exceptions.CRSError as e:
        raise BadRequest(
            "unknown_crs",
            crs=str(file_crs),
            supported="wgs84, gcj02, bd09, EPSG:<code>",
            available="wgs84, gcj02, bd09, EPSG:<code>",
        ) from e
    polygonal = np.array([g.geom_type in ("Polygon", "MultiPolygon") for g in wgs])
    if not polygonal.any():
        found = sorted({g.geom_type for g in wgs})
        raise Unprocessable(
            "wrong_geometry_type",
            path=path.name,
            layer="grids",
            expected="polygon",
            found=", ".join(found),
        )
    rejected = int((~polygonal).sum())
    gdf, wgs = gdf.loc[polygonal], wgs[polygonal]
    union = shapely.union_all(shapely.envelope(wgs))
    if not union.intersects(community.geom):
        raise Unprocessable(
            "upload_outside_community",
            community=community.code,
            data_bounds=[round(v, 6) for v in union.bounds],
            community_bounds=[round(v, 6) for v in community.geom.bounds],
        )
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    code_col = code_field or find_column(columns, CODE_FIELDS)
    name_col = name_field or find_column(columns, NAME_FIELDS)
    for given in (code_field, name_field):
        if given and given not in columns:
            raise BadRequest("validation_failed", reason=f"no field {given!r}; fields: {columns}")
    rows = []
    for (_, rec), g in zip(gdf.iterrows(), wgs, strict=True):
        code = text_value(rec[code_col]) if code_col else None
        name = text_value(rec[name_col]) if name_col else None
        geom = g if isinstance(g, MultiPolygon) else MultiPolygon([g])
        rows.append(GridRow(None, code, name, None, 0, 0, geom))
    info = {
        "format": fmt,
        "source_crs": crs_name if crs_name != "file" else f"{file_crs.to_string()} (file)",
        "features": len(rows),
        "rejected_not_polygons": rejected,
        "code_field": code_col,
        "name_field": name_col,
    }
    return rows, info
