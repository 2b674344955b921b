"""Read GeoJSON / GeoPackage / Shapefile (``.shp`` or zipped) / CSV into WGS84 frames.

No database here: ``load_features`` turns a file into a GeoDataFrame in EPSG:4326 whose
geometries all have the kind a layer needs (polygon, point or line), and says what it repaired
and rejected, with reasons, in an ``ImportSummary``. Everything wrong with the file as a whole
raises a ``layers.errors`` exception with a stable code (``import_not_found``, ``import_format``,
``import_empty``, ``import_corrupt``, ``unknown_crs``, ``csv_no_lonlat``,
``import_coordinates_out_of_range``, ``latlon_swapped``, ``wrong_geometry_type``).

The source CRS is the one given (``wgs84`` | ``gcj02`` | ``bd09`` | ``EPSG:<code>``, which
overrides the file's — a GeoJSON always claims WGS84, even when AMap's GCJ-02 is inside), else
the file's, else WGS84. GCJ-02 and BD-09 are converted vertex by vertex with ``geo.crs``
(vectorised, through ``shapely.transform``).

Lat/lon order is checked on the raw geographic coordinates: when most vertices are outside the
valid ranges, or outside every reference box (the existing districts, China) while swapping puts
most of them inside, the file is refused with the diagnosis "latitude/longitude swapped".
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from geo.crs import SUPPORTED_CRS, to_wgs84
from layers.errors import BadRequest, Unprocessable
from layers.importers.osm_read import ImportSummary

logger = logging.getLogger(__name__)

CRS_LONLAT = "EPSG:4326"

#: file suffix -> format name (``.zip`` holds a zipped Shapefile)
SUPPORTED_FORMATS: dict[str, str] = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GeoPackage",
    ".shp": "Shapefile",
    ".zip": "zipped Shapefile",
    ".csv": "CSV",
}

#: geometry kind -> shapely type ids it accepts as is
GEOMETRY_KINDS: dict[str, tuple[str, ...]] = {
    "polygon": ("Polygon", "MultiPolygon"),
    "point": ("Point", "MultiPoint"),
    "line": ("LineString", "MultiLineString", "LinearRing"),
}

#: the box of the GCJ-02 "out of China" rule (min lon, min lat, max lon, max lat)
CHINA_BOX_LONLAT = (72.004, 0.8293, 137.8347, 55.8271)

_LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度", "lon_wgs84", "lng_wgs84")
_LAT_NAMES = ("lat", "latitude", "y", "纬度", "lat_wgs84")
_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape")
_GCJ_BD = {"gcj02": "gcj02", "gcj-02": "gcj02", "bd09": "bd09", "bd-09": "bd09", "bd09ll": "bd09"}
_WGS = {"wgs84", "wgs-84", "epsg:4326"}


@dataclass(frozen=True)
class ReferenceBox:
    """A named lon/lat box that data is expected to fall in (a district, China)."""

    name: str
    bounds: tuple[float, float, float, float]  # min lon, min lat, max lon, max lat

    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.bounds
        return (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)


CHINA = ReferenceBox("China", CHINA_BOX_LONLAT)


@dataclass
class LoadedFeatures:
    """Features of one file in EPSG:4326, all of the requested geometry kind."""

    frame: gpd.GeoDataFrame
    source_crs: str  # what the coordinates were read as, e.g. "gcj02", "EPSG:32648 (file)"
    format: str
    rows_read: int
    summary: ImportSummary
    stats: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- CRS


def normalise_crs(crs: str) -> str:
    """``wgs84`` | ``gcj02`` | ``bd09`` | ``EPSG:<code>`` for a user's ``--crs``.

    Raises BadRequest ``unknown_crs`` for anything ``geo.crs`` does not know."""
    key = str(crs).strip().lower()
    if key in _WGS:
        return "wgs84"
    if key in _GCJ_BD:
        return _GCJ_BD[key]
    try:
        to_wgs84(np.zeros(1), np.zeros(1), str(crs).strip())
    except ValueError as exc:
        raise BadRequest("unknown_crs", crs=str(crs), available=", ".join(SUPPORTED_CRS)) from exc
    return f"EPSG:{int(key.split(':', 1)[1])}"


def is_geographic(crs_name: str, file_crs: pyproj.CRS | None = None) -> bool:
    """Whether coordinates given in ``crs_name`` (or the file's CRS) are lon/lat degrees."""
    if crs_name in ("wgs84", "gcj02", "bd09"):
        return True
    if crs_name.startswith("EPSG:"):
        return pyproj.CRS.from_user_input(crs_name).is_geographic
    return file_crs is None or file_crs.is_geographic


def _vectorised(fn: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]]):
    def transform(xy: np.ndarray) -> np.ndarray:
        lon, lat = fn(xy[:, 0], xy[:, 1])
        return np.column_stack([np.asarray(lon, float), np.asarray(lat, float)])

    return transform


def geometries_to_wgs84(geoms: np.ndarray, crs_name: str) -> np.ndarray:
    """Every vertex of ``geoms`` from ``crs_name`` (as ``normalise_crs`` returns) to WGS84."""
    if crs_name == "wgs84":
        return geoms
    return shapely.transform(geoms, _vectorised(lambda x, y: to_wgs84(x, y, crs_name)))


# --------------------------------------------------------------------------- reading


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first column whose name matches a candidate, case-insensitively (None if none)."""
    by_lower = {str(c).strip().lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in by_lower:
            return by_lower[cand.lower()]
    return None


def _read_csv_table(path: Path) -> pd.DataFrame:
    errors: list[str] = []
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return pd.read_csv(path, dtype=str, encoding=encoding, skipinitialspace=True)
        except UnicodeDecodeError as exc:
            errors.append(f"{encoding}: {_first_line(exc)}")
        except pd.errors.EmptyDataError as exc:
            raise BadRequest("import_empty", path=path.name, reason="no rows") from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise BadRequest("import_corrupt", path=path.name, reason=_first_line(exc)) from exc
    raise BadRequest("import_corrupt", path=path.name, reason="; ".join(errors))


def read_csv_points(
    path: Path, *, lon_col: str | None = None, lat_col: str | None = None
) -> gpd.GeoDataFrame:
    """CSV rows as geometries: from lon/lat columns (named or found by name), else from a WKT
    column. Rows whose coordinates are not numbers get no geometry (rejected later)."""
    table = _read_csv_table(path)
    if table.empty:
        raise BadRequest("import_empty", path=path.name, reason="no rows")
    columns = list(table.columns)
    for given in (lon_col, lat_col):
        if given is not None and given not in columns:
            raise BadRequest(
                "csv_no_lonlat", path=path.name, reason=f"no column {given!r}", columns=columns
            )
    lon_name = lon_col or find_column(columns, _LON_NAMES)
    lat_name = lat_col or find_column(columns, _LAT_NAMES)
    if lon_name is not None and lat_name is not None:
        lon = pd.to_numeric(table[lon_name].str.strip(), errors="coerce").to_numpy(float)
        lat = pd.to_numeric(table[lat_name].str.strip(), errors="coerce").to_numpy(float)
        ok = np.isfinite(lon) & np.isfinite(lat)
        geoms = np.full(len(table), None, dtype=object)
        geoms[ok] = shapely.points(lon[ok], lat[ok])
        data = table.drop(columns=[lon_name, lat_name])
        return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms), crs=None)
    wkt_name = find_column(columns, _WKT_NAMES)
    if wkt_name is not None:
        geoms = shapely.from_wkt(table[wkt_name].fillna("").to_numpy(), on_invalid="ignore")
        data = table.drop(columns=[wkt_name])
        return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms), crs=None)
    raise BadRequest(
        "csv_no_lonlat",
        path=path.name,
        reason="no longitude / latitude columns found (give --lon-col and --lat-col)",
        columns=columns,
    )


def read_vector(path: Path, *, source_layer: str | None = None) -> gpd.GeoDataFrame:
    """A GeoJSON / GeoPackage / Shapefile layer with the file's CRS (pyogrio)."""
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError

    try:
        if source_layer is None and path.suffix.lower() == ".gpkg":
            layers = pyogrio.list_layers(path)
            spatial = [str(name) for name, gtype in layers if gtype is not None]
            if len(spatial) > 1:
                logger.warning("%s has layers %s; reading %s", path.name, spatial, spatial[0])
            source_layer = spatial[0] if spatial else None
        return pyogrio.read_dataframe(path, layer=source_layer)
    except (DataSourceError, DataLayerError, FieldError, GeometryError) as exc:
        raise BadRequest("import_corrupt", path=path.name, reason=_first_line(exc)) from exc
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        raise BadRequest("import_corrupt", path=path.name, reason=_first_line(exc)) from exc


def read_source(
    path: str | Path,
    *,
    lon_col: str | None = None,
    lat_col: str | None = None,
    source_layer: str | None = None,
) -> tuple[gpd.GeoDataFrame, str]:
    """The file's rows in its own coordinates, and its format name."""
    path = Path(path)
    if not path.is_file():
        raise BadRequest("import_not_found", path=str(path))
    suffix = path.suffix.lower()
    fmt = SUPPORTED_FORMATS.get(suffix)
    if fmt is None:
        raise BadRequest(
            "import_format",
            path=path.name,
            suffix=suffix or "(none)",
            supported=", ".join(SUPPORTED_FORMATS),
        )
    if path.stat().st_size == 0:
        raise BadRequest("import_empty", path=path.name, reason="the file is empty (0 bytes)")
    if fmt == "CSV":
        gdf = read_csv_points(path, lon_col=lon_col, lat_col=lat_col)
    else:
        gdf = read_vector(path, source_layer=source_layer)
    if len(gdf) == 0:
        raise BadRequest("import_empty", path=path.name, reason="no features")
    return gdf, fmt


# --------------------------------------------------------------------------- lat/lon order


def check_lonlat(
    geoms: np.ndarray,
    *,
    references: Sequence[ReferenceBox] = (CHINA,),
    path: str = "",
    summary: ImportSummary | None = None,
    frame: str = "rows",
) -> np.ndarray:
    """Check raw lon/lat geometries; returns the rows to keep (bool mask).

    Refused (``latlon_swapped``) when most vertices are outside the valid ranges but valid once
    swapped, or when most fall outside every reference box but inside one once swapped. Refused
    (``import_coordinates_out_of_range``) when most are invalid either way (projected coordinates
    without their CRS). A minority of out-of-range rows is rejected row by row.
    """
    keep = np.ones(len(geoms), dtype=bool)
    coords, rows = shapely.get_coordinates(geoms, return_index=True)
    if len(coords) == 0:
        return keep
    lon, lat = coords[:, 0], coords[:, 1]
    in_range = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    swapped_in_range = np.isfinite(lon) & (np.abs(lon) <= 90) & (np.abs(lat) <= 180)
    share_ok = float(in_range.mean())
    if share_ok < 0.5:
        if swapped_in_range.mean() >= 0.9:
            raise Unprocessable(
                "latlon_swapped",
                path=path,
                share=round(100 * (1 - share_ok), 1),
                region="the valid ranges",
                reason=(
                    f"{100 * (1 - share_ok):.0f}% of the points have a latitude beyond ±90°, "
                    "all are valid once swapped"
                ),
            )
        raise Unprocessable(
            "import_coordinates_out_of_range",
            path=path,
            share=round(100 * (1 - share_ok), 1),
            example=f"{lon[~in_range][0]:.6g}, {lat[~in_range][0]:.6g}",
        )
    if not in_range.all():
        bad_rows = np.unique(rows[~in_range])
        keep[bad_rows] = False
        if summary is not None:
            summary.reject(frame, "coordinates_out_of_range", len(bad_rows))
        ok_vertices = keep[rows]
        lon, lat = lon[ok_vertices], lat[ok_vertices]
    if len(lon) == 0 or not references:
        return keep
    inside = np.zeros(len(lon), dtype=bool)
    inside_swapped = np.zeros(len(lon), dtype=bool)
    best_name, best_count = "", -1
    for ref in references:
        inside |= ref.contains(lon, lat)
        hit = ref.contains(lat, lon)
        inside_swapped |= hit
        if int(hit.sum()) > best_count:
            best_name, best_count = ref.name, int(hit.sum())
    share_in, share_swapped = float(inside.mean()), float(inside_swapped.mean())
    if share_in < 0.5 and share_swapped >= 0.5:
        raise Unprocessable(
            "latlon_swapped",
            path=path,
            share=round(100 * share_swapped, 1),
            region=best_name,
            reason=(
                f"{100 * share_in:.0f}% of the points fall inside {best_name} as given, "
                f"{100 * share_swapped:.0f}% when latitude and longitude are swapped"
            ),
        )
    return keep


# --------------------------------------------------------------------------- geometry kinds


def _polygonal(geom: Any) -> MultiPolygon | None:
    """The polygonal part of a geometry as a MultiPolygon, None when it has none."""
    parts = [
        p
        for p in shapely.get_parts(geom)
        if isinstance(p, Polygon | MultiPolygon) and not p.is_empty
    ]
    polys: list[Polygon] = []
    for p in parts:
        polys.extend(p.geoms if isinstance(p, MultiPolygon) else [p])
    polys = [p for p in polys if p.area > 0]
    return MultiPolygon(polys) if polys else None


def _conform_polygon(geom: Any, single: bool, repairs: list[str]) -> Any:
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        repairs.append("make_valid")
    if isinstance(geom, Polygon):
        return geom if single else MultiPolygon([geom])
    multi = _polygonal(geom)
    if multi is None:
        return None
    if multi.is_valid is False:  # parts of a collection may overlap
        multi = _polygonal(shapely.make_valid(multi))
        if multi is None:
            return None
    if not single:
        return multi
    if len(multi.geoms) > 1:
        repairs.append("multipart_largest_kept")
    return max(multi.geoms, key=lambda p: p.area)


def _conform_point(geom: Any) -> Point | None:
    if isinstance(geom, Point):
        return geom
    parts = shapely.get_parts(geom)
    return parts[0] if len(parts) == 1 and isinstance(parts[0], Point) else None


def _conform_line(geom: Any, repairs: list[str]) -> Any:
    if geom.geom_type == "LinearRing":
        geom = LineString(geom.coords)
    if not geom.is_valid:
        lines = [p for p in shapely.get_parts(geom) if p.is_valid and p.length > 0]
        if not lines:
            return None
        repairs.append("degenerate_parts_dropped")
        geom = lines[0] if len(lines) == 1 else shapely.multilinestrings(lines)
    return geom


def conform_geometries(
    geoms: np.ndarray,
    kind: str,
    *,
    single: bool = False,
    summary: ImportSummary,
    frame: str,
    path: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Geometries of ``kind`` (polygon | point | line), repaired; returns ``(keep, geoms)``.

    Polygons: invalid ones go through ``make_valid`` (counted as repaired), their polygonal part
    is kept; MultiPolygon unless ``single`` (then the largest part, counted). Points: a
    one-point MultiPoint is unwrapped. Other geometry types are rejected with the reason
    ``wrong_geometry_type:<Type>``; when no row fits at all the whole file is refused
    (``wrong_geometry_type``).
    """
    accepted = GEOMETRY_KINDS[kind]
    out = np.empty(len(geoms), dtype=object)
    keep = np.zeros(len(geoms), dtype=bool)
    wrong: Counter[str] = Counter()
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            summary.reject(frame, "empty_geometry")
            continue
        gtype = geom.geom_type
        if gtype not in accepted and not (kind == "polygon" and gtype == "GeometryCollection"):
            wrong[gtype] += 1
            summary.reject(frame, f"wrong_geometry_type:{gtype}")
            continue
        repairs: list[str] = []
        if kind == "polygon":
            fixed = _conform_polygon(geom, single, repairs)
            reason = "no_polygon_after_repair"
        elif kind == "point":
            fixed = _conform_point(geom)
            reason = "multipoint_with_several_points"
        else:
            fixed = _conform_line(geom, repairs)
            reason = "degenerate_line"
        if fixed is None:
            summary.reject(frame, reason)
            continue
        for r in repairs:
            summary.repair(frame, r)
        out[i] = fixed
        keep[i] = True
    if not keep.any() and wrong:
        raise Unprocessable(
            "wrong_geometry_type",
            path=path,
            layer=frame,
            expected=kind,
            found=", ".join(f"{t} ×{n}" for t, n in wrong.most_common()),
        )
    return keep, out


# --------------------------------------------------------------------------- the whole pipeline


def load_features(
    path: str | Path,
    *,
    kind: str,
    frame: str,
    crs: str | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    source_layer: str | None = None,
    single: bool = False,
    references: Sequence[ReferenceBox] = (CHINA,),
) -> LoadedFeatures:
    """Read ``path``, check lat/lon order, convert to WGS84 and conform geometries to ``kind``.

    ``frame`` names the layer in the summary. Rows rejected on the way are dropped from the
    returned frame (its index still refers to the file's rows).
    """
    path = Path(path)
    crs_name = normalise_crs(crs) if crs is not None else None  # fail fast on unknown CRS
    summary = ImportSummary(source=str(path))
    gdf, fmt = read_source(path, lon_col=lon_col, lat_col=lat_col, source_layer=source_layer)
    rows_read = len(gdf)
    file_crs = gdf.crs
    stats: dict[str, Any] = {}

    geoms = shapely.force_2d(gdf.geometry.to_numpy())
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not present.any():
        raise BadRequest("import_empty", path=path.name, reason="no geometries")
    if (~present).any():
        summary.reject(frame, "empty_geometry", int((~present).sum()))
    gdf = gdf.loc[present].copy()
    geoms = geoms[present]

    if crs_name is None:
        if file_crs is None:
            crs_name, source_desc = "wgs84", "wgs84 (assumed: the file states no CRS)"
        elif file_crs.equals(CRS_LONLAT, ignore_axis_order=True):
            crs_name, source_desc = "wgs84", "wgs84 (file)"
        else:
            crs_name, source_desc = "file", f"{file_crs.to_string()} (file)"
    else:
        source_desc = crs_name
        if file_crs is not None and not file_crs.equals(CRS_LONLAT, ignore_axis_order=True):
            logger.warning("%s: file CRS %s overridden by %s", path.name, file_crs, crs_name)

    if is_geographic(crs_name, file_crs):
        keep = check_lonlat(
            geoms, references=references, path=path.name, summary=summary, frame=frame
        )
        gdf, geoms = gdf.loc[keep], geoms[keep]

    try:
        if crs_name == "file":
            wgs = gpd.GeoSeries(geoms, crs=file_crs).to_crs(CRS_LONLAT).to_numpy()
        else:
            wgs = geometries_to_wgs84(geoms, crs_name)
    except pyproj.exceptions.CRSError as exc:
        raise BadRequest(
            "unknown_crs", crs=str(file_crs), available=", ".join(SUPPORTED_CRS)
        ) from exc
    coords, owner = shapely.get_coordinates(wgs, return_index=True)
    finite = np.ones(len(wgs), dtype=bool)
    finite[owner[~np.isfinite(coords).all(axis=1)]] = False
    if not finite.all():
        summary.reject(frame, "not_convertible", int((~finite).sum()))
        gdf, wgs = gdf.loc[finite], wgs[finite]

    keep, conformed = conform_geometries(
        wgs, kind, single=single, summary=summary, frame=frame, path=path.name
    )
    out = gpd.GeoDataFrame(
        gdf.drop(columns=gdf.geometry.name).loc[keep],
        geometry=gpd.GeoSeries(conformed[keep], index=gdf.index[keep], crs=CRS_LONLAT),
        crs=CRS_LONLAT,
    )
    stats["source_crs"] = source_desc
    logger.info(
        "%s: %d rows read (%s, %s), %d kept", path.name, rows_read, fmt, source_desc, len(out)
    )
    return LoadedFeatures(out, source_desc, fmt, rows_read, summary, stats)


def text_value(value: Any) -> str | None:
    """A cell as trimmed text (integral floats without ``.0``), None when missing or blank."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


_SPLIT_RE = re.compile(r"[,;，；|/\s]+")


def split_list(value: Any) -> list[str]:
    """``"a, b;c"`` → ``["a", "b", "c"]`` (commas, semicolons, bars, slashes, spaces)."""
    text = text_value(value)
    return [p for p in _SPLIT_RE.split(text) if p] if text else []


__all__ = [
    "CHINA",
    "CHINA_BOX_LONLAT",
    "GEOMETRY_KINDS",
    "SUPPORTED_FORMATS",
    "LoadedFeatures",
    "ReferenceBox",
    "check_lonlat",
    "conform_geometries",
    "find_column",
    "geometries_to_wgs84",
    "is_geographic",
    "load_features",
    "normalise_crs",
    "read_csv_points",
    "read_source",
    "read_vector",
    "split_list",
    "text_value",
]
