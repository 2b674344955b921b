"""Read OpenStreetMap files into GeoDataFrames (EPSG:4326); no database here.

``read_osm`` reads ``.osm`` XML and ``.osm.pbf`` / ``.pbf`` alike with pyosmium (libosmium), so
both formats give the same frames: buildings, venues (POIs mapped to the venue catalogue), a
walking network and the road lines. pyosmium keeps the node ids of every way, which is what the
walking network is built from: ways are split at nodes shared by two or more walkable ways and at
their ends, never by planar noding, so a bridge crossing a road without a shared node stays
unconnected.

``read_lines_as_network`` builds a network from road lines that carry no node ids (GeoJSON,
Shapefile …): line ends closer than ``snap_m`` are merged; lines are split only at their own
ends.

Metric work (footprint areas, snapping) happens in the local UTM zone of the data's centre;
lengths are geodesic on the WGS84 ellipsoid.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from geo.crs import utm_crs_for_lonlat
from geo.households import estimate_households, is_residential, parse_osm_number
from layers.catalogues import venue_category_for_tags, venue_category_keys

logger = logging.getLogger(__name__)

CRS_LONLAT = "EPSG:4326"
_GEOD = pyproj.Geod(ellps="WGS84")

#: highway values a pedestrian may use (subject to the access / foot rules below)
WALKABLE_HIGHWAYS = frozenset(
    {
        "footway",
        "path",
        "pedestrian",
        "steps",
        "corridor",
        "living_street",
        "residential",
        "service",
        "unclassified",
        "road",
        "track",
        "cycleway",
        "bridleway",
        "tertiary",
        "tertiary_link",
        "secondary",
        "secondary_link",
        "primary",
        "primary_link",
    }
)
#: highway values that are only walkable when explicitly tagged foot=yes|designated|permissive
FOOT_TAG_REQUIRED_HIGHWAYS = frozenset({"trunk", "trunk_link"})
#: roads along which communities are split in the demo (``major`` flag)
MAJOR_HIGHWAYS = frozenset(
    {"motorway", "trunk", "primary", "primary_link", "secondary", "secondary_link"}
)
FOOT_ALLOWED = frozenset({"yes", "designated", "permissive"})
ACCESS_DENIED = frozenset({"no", "private"})

#: keys that make a tagged object a POI candidate (besides those in the venue catalogue)
_POI_BASE_KEYS = frozenset(
    {"amenity", "shop", "leisure", "healthcare", "office", "tourism", "social_facility"}
)
#: tags kept on venues / buildings (``tags`` column), besides ``addr:*``
_KEPT_TAG_KEYS = frozenset(
    {
        "name",
        "name:zh",
        "name:zh-Hans",
        "name:en",
        "opening_hours",
        "phone",
        "contact:phone",
        "website",
        "operator",
        "capacity",
        "wheelchair",
        "amenity",
        "shop",
        "leisure",
        "healthcare",
        "office",
        "social_facility",
        "social_facility:for",
        "building",
        "building:levels",
        "building:flats",
        "height",
    }
)
_CJK_RE = re.compile(r"[\u3400-\u9fff]")


# --------------------------------------------------------------------------- results


@dataclass
class ImportSummary:
    """What an import produced: rows per frame, repairs and rejections with reasons."""

    source: str
    imported: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def repair(self, frame: str, reason: str, n: int = 1) -> None:
        """Count ``n`` rows of ``frame`` whose geometry was repaired for ``reason``."""
        bucket = self.repaired.setdefault(frame, {})
        bucket[reason] = bucket.get(reason, 0) + n

    def reject(self, frame: str, reason: str, n: int = 1) -> None:
        """Count ``n`` objects not imported into ``frame`` for ``reason``."""
        bucket = self.rejected.setdefault(frame, {})
        bucket[reason] = bucket.get(reason, 0) + n

    def total_repaired(self, frame: str) -> int:
        """Repaired rows of ``frame`` (all reasons)."""
        return sum(self.repaired.get(frame, {}).values())

    def total_rejected(self, frame: str) -> int:
        """Rejected objects of ``frame`` (all reasons)."""
        return sum(self.rejected.get(frame, {}).values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "source": self.source,
            "imported": dict(self.imported),
            "repaired": {k: dict(v) for k, v in self.repaired.items()},
            "rejected": {k: dict(v) for k, v in self.rejected.items()},
            "stats": dict(self.stats),
        }


@dataclass
class OsmFrames:
    """Frames read from one OSM file, all in EPSG:4326 (schemas in the module's ``*_COLUMNS``)."""

    buildings: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    network_nodes: gpd.GeoDataFrame
    network_edges: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    summary: ImportSummary
    utm_crs: pyproj.CRS


@dataclass
class NetworkFrames:
    """A network built from lines without node ids (EPSG:4326)."""

    nodes: gpd.GeoDataFrame
    edges: gpd.GeoDataFrame
    summary: ImportSummary
    utm_crs: pyproj.CRS


# column name -> pandas dtype; "geometry" is the GeoSeries (Polygon / Point / LineString)
BUILDING_COLUMNS: dict[str, str] = {
    "osm_id": "int64",
    "osm_type": "object",  # "way" | "relation"
    "name": "object",
    "building": "object",
    "levels": "Int64",
    "flats": "Int64",
    "residential": "bool",
    "households": "int64",
    "households_estimated": "bool",
    "footprint_m2": "float64",
    "tags": "object",  # dict[str, str]
}
POI_COLUMNS: dict[str, str] = {
    "osm_id": "int64",
    "osm_type": "object",  # "node" | "way" | "relation"
    "category": "object",
    "name": "object",
    "name_en": "object",
    "opening_hours": "object",
    "tags": "object",
}
NODE_COLUMNS: dict[str, str] = {"node_id": "int64", "degree": "int64"}
EDGE_COLUMNS: dict[str, str] = {
    "source": "int64",
    "target": "int64",
    "way_id": "int64",
    "highway": "object",
    "name": "object",
    "major": "bool",
    "length_m": "float64",
}
ROAD_COLUMNS: dict[str, str] = {
    "osm_id": "int64",
    "highway": "object",
    "name": "object",
    "major": "bool",
    "walkable": "bool",
}


def _frame(records: list[dict[str, Any]], columns: Mapping[str, str]) -> gpd.GeoDataFrame:
    """GeoDataFrame with exactly ``columns`` (+ geometry), typed, in EPSG:4326, even if empty.

    Object columns keep Python values (None, not NaN, where a value is missing).
    """
    data: dict[str, pd.Series] = {}
    for name, dtype in columns.items():
        values = [r.get(name) for r in records]
        if dtype == "object":
            data[name] = pd.Series(values, dtype=object)
        else:
            data[name] = pd.Series(values, dtype=dtype)
    geoms = gpd.GeoSeries([r["geometry"] for r in records], crs=CRS_LONLAT)
    return gpd.GeoDataFrame(data, geometry=geoms, crs=CRS_LONLAT)


# --------------------------------------------------------------------------- helpers


def walk_exclusion_reason(tags: Mapping[str, str]) -> str | None:
    """Why a highway way is not walkable (a short reason code), or None when it is."""
    highway = tags.get("highway")
    if not highway:
        return "no_highway"
    foot = tags.get("foot", "")
    if foot == "no":
        return "foot_no"
    if tags.get("area") == "yes":
        return "area"
    if highway in FOOT_TAG_REQUIRED_HIGHWAYS:
        if foot not in FOOT_ALLOWED:
            return f"highway_{highway}"
    elif highway not in WALKABLE_HIGHWAYS:
        return f"highway_{highway}"
    if tags.get("access") in ACCESS_DENIED and foot not in FOOT_ALLOWED:
        return f"access_{tags['access']}"
    return None


def display_name(tags: Mapping[str, str]) -> str | None:
    """Name to show: ``name`` if Chinese, else ``name:zh-Hans`` / ``name:zh``, else ``name``."""
    name = tags.get("name")
    if name and _CJK_RE.search(name):
        return name
    return tags.get("name:zh-Hans") or tags.get("name:zh") or name or None


def _kept_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k in _KEPT_TAG_KEYS or k.startswith("addr:")}


def _positive_int(value: Any) -> int | None:
    number = parse_osm_number(value)
    if not math.isfinite(number) or number <= 0:
        return None
    return math.floor(number + 0.5)


def _largest_polygon(geom: Any) -> Polygon | None:
    """The largest polygon part of a geometry, or None if it has no polygonal part."""
    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Polygon):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
    polys: list[Polygon] = []
    for part in parts:
        polys.extend(part.geoms if isinstance(part, MultiPolygon) else [part])
    polys = [p for p in polys if not p.is_empty]
    return max(polys, key=lambda p: p.area) if polys else None


def _to_polygon(geom: Any, summary: ImportSummary, frame: str) -> Polygon | None:
    """Valid single Polygon from ``geom`` (repairs counted), None when not polygonal."""
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        summary.repair(frame, "make_valid")
    n_parts = len(getattr(geom, "geoms", [geom]))
    poly = _largest_polygon(geom)
    if poly is not None and n_parts > 1:
        summary.repair(frame, "multipart_largest_kept")
    return poly


def _geodesic_lengths_m(coord_arrays: list[np.ndarray]) -> np.ndarray:
    """Geodesic length in metres of each lon/lat polyline (vectorised over all segments)."""
    if not coord_arrays:
        return np.zeros(0)
    counts = np.array([len(c) for c in coord_arrays])
    xy = np.concatenate(coord_arrays)
    _, _, seg = _GEOD.inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])
    seg = np.append(np.asarray(seg, dtype=float), 0.0)
    ends = np.cumsum(counts)
    starts = ends - counts
    # segments of a line are [start, end-2]; zero out the segment that bridges two lines
    seg[ends - 1] = 0.0
    return np.add.reduceat(seg, starts)


def _components(sources: np.ndarray, targets: np.ndarray, n_nodes: int) -> tuple[int, np.ndarray]:
    if n_nodes == 0:
        return 0, np.zeros(0, dtype=np.int64)
    adj = coo_matrix((np.ones(len(sources)), (sources, targets)), shape=(n_nodes, n_nodes)).tocsr()
    return connected_components(adj, directed=False)


def _component_stats(
    summary: ImportSummary, sources: np.ndarray, targets: np.ndarray, n_nodes: int
) -> None:
    n_comp, labels = _components(sources, targets, n_nodes)
    summary.stats["components"] = int(n_comp)
    if n_nodes:
        summary.stats["largest_component_node_share"] = float(np.bincount(labels).max() / n_nodes)


# --------------------------------------------------------------------------- reading OSM


@dataclass
class _Way:
    id: int
    tags: dict[str, str]
    refs: list[int]
    lon: np.ndarray  # NaN where the node's location is missing from the file
    lat: np.ndarray


@dataclass
class _RawOsm:
    nodes: list[tuple[int, float, float, dict[str, str]]] = field(default_factory=list)
    ways: list[_Way] = field(default_factory=list)
    relation_areas: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)


def _poi_keys() -> frozenset[str]:
    return _POI_BASE_KEYS | venue_category_keys()


def _is_poi_candidate(tags: Mapping[str, str], keys: frozenset[str]) -> bool:
    """Tagged like a POI (a generic POI key), or mapped by the venue catalogue.

    Only the former count as rejected when unmapped, so e.g. every ``landuse`` polygon is not
    reported as a dropped POI just because one ``landuse`` value maps to a category."""
    return any(k in tags for k in _POI_BASE_KEYS) or (
        any(k in tags for k in keys) and venue_category_for_tags(tags) is not None
    )


def _is_building(tags: Mapping[str, str]) -> bool:
    value = tags.get("building")
    return bool(value) and value != "no"


def _collect(path: Path) -> _RawOsm:
    """One pass over the file with pyosmium: tagged nodes, ways with node ids and locations,
    multipolygon relations assembled as areas."""
    import osmium  # imported here so the module loads (and read_lines_as_network works) without it

    poi_keys = _poi_keys()
    keys = sorted(poi_keys | {"highway", "building"})
    wkb = osmium.geom.WKBFactory()
    raw = _RawOsm()
    processor = (
        osmium.FileProcessor(str(path))
        .with_locations()
        .with_areas(osmium.filter.KeyFilter(*keys))
        .with_filter(osmium.filter.KeyFilter(*keys))
    )
    try:
        _collect_objects(processor, wkb, poi_keys, raw)
    except RuntimeError as exc:
        if "out of order" in str(exc):
            raise ValueError(
                f"{path.name}: OSM objects must be sorted by type and id ({exc}); "
                "sort the file first, e.g. with `osmium sort`"
            ) from exc
        raise
    return raw


def _collect_objects(processor: Any, wkb: Any, poi_keys: frozenset[str], raw: _RawOsm) -> None:
    for obj in processor:
        if obj.is_node():
            tags = dict(obj.tags)
            if _is_poi_candidate(tags, poi_keys) and obj.location.valid():
                raw.nodes.append((obj.id, obj.location.lon, obj.location.lat, tags))
        elif obj.is_way():
            tags = dict(obj.tags)
            if not ("highway" in tags or _is_building(tags) or _is_poi_candidate(tags, poi_keys)):
                continue
            refs: list[int] = []
            lon: list[float] = []
            lat: list[float] = []
            for node_ref in obj.nodes:
                refs.append(node_ref.ref)
                loc = node_ref.location
                if loc.valid():
                    lon.append(loc.lon)
                    lat.append(loc.lat)
                else:
                    lon.append(math.nan)
                    lat.append(math.nan)
            raw.ways.append(_Way(obj.id, tags, refs, np.array(lon), np.array(lat)))
        elif obj.is_area() and not obj.from_way():
            tags = dict(obj.tags)
            try:
                geom = shapely.from_wkb(wkb.create_multipolygon(obj))
            except RuntimeError as exc:  # assembly failed: broken rings
                logger.debug("relation %s: no area (%s)", obj.orig_id(), exc)
                geom = None
            raw.relation_areas.append((obj.orig_id(), tags, geom))


def _way_geometry(way: _Way) -> tuple[str, Any]:
    """("ok", Polygon | LineString) or (reason, None) for a building / POI way."""
    if len(way.refs) < 2:
        return "too_few_nodes", None
    if np.isnan(way.lon).any():
        return "missing_node_locations", None
    coords = np.column_stack([way.lon, way.lat])
    if way.refs[0] == way.refs[-1]:
        if len(way.refs) < 4:
            return "too_few_nodes", None
        return "ok", Polygon(coords)
    return "ok", LineString(coords)


def _build_buildings(
    raw: _RawOsm,
    summary: ImportSummary,
    utm: pyproj.CRS,
    dwelling_size_m2: float,
    default_levels: int,
) -> gpd.GeoDataFrame:
    frame = "buildings"
    records: list[dict[str, Any]] = []
    candidates: list[tuple[int, str, dict[str, str], Any]] = []
    for way in raw.ways:
        if not _is_building(way.tags):
            continue
        reason, geom = _way_geometry(way)
        if geom is None:
            summary.reject(frame, reason)
        elif isinstance(geom, LineString):
            summary.reject(frame, "not_closed")
        else:
            candidates.append((way.id, "way", way.tags, geom))
    for rel_id, tags, geom in raw.relation_areas:
        if _is_building(tags):
            if geom is None:
                summary.reject(frame, "area_assembly_failed")
            else:
                candidates.append((rel_id, "relation", tags, geom))

    for osm_id, osm_type, tags, geom in candidates:
        poly = _to_polygon(geom, summary, frame)
        if poly is None:
            summary.reject(frame, "not_polygonal")
            continue
        records.append(
            {
                "osm_id": osm_id,
                "osm_type": osm_type,
                "name": display_name(tags),
                "building": tags["building"],
                "levels": _positive_int(tags.get("building:levels")),
                "flats": _positive_int(tags.get("building:flats")),
                "residential": is_residential(tags),
                "tags": _kept_tags(tags),
                "geometry": poly,
            }
        )
    if records:
        area_m2 = gpd.GeoSeries([r["geometry"] for r in records], crs=CRS_LONLAT).to_crs(utm).area
        area_m2 = area_m2.to_numpy()
        levels = np.array([np.nan if r["levels"] is None else r["levels"] for r in records])
        flats = np.array([np.nan if r["flats"] is None else r["flats"] for r in records])
        mask = np.array([r["residential"] for r in records], dtype=bool)
        households, estimated = estimate_households(
            area_m2,
            levels,
            mask,
            dwelling_size_m2=dwelling_size_m2,
            default_levels=default_levels,
            known_households=flats,
        )
        for r, a, h, e in zip(records, area_m2, households, estimated, strict=True):
            r["footprint_m2"] = float(a)
            r["households"] = int(h)
            r["households_estimated"] = bool(e)
    out = _frame(records, BUILDING_COLUMNS)
    summary.imported[frame] = len(out)
    return out


def _build_pois(raw: _RawOsm, summary: ImportSummary) -> gpd.GeoDataFrame:
    frame = "pois"
    poi_keys = _poi_keys()
    records: list[dict[str, Any]] = []

    def add(osm_id: int, osm_type: str, tags: dict[str, str], point: Point) -> None:
        category = venue_category_for_tags(tags)
        if category is None:
            summary.reject(frame, "unmapped_category")
            return
        records.append(
            {
                "osm_id": osm_id,
                "osm_type": osm_type,
                "category": category,
                "name": display_name(tags),
                "name_en": tags.get("name:en"),
                "opening_hours": tags.get("opening_hours"),
                "tags": _kept_tags(tags),
                "geometry": point,
            }
        )

    for node_id, lon, lat, tags in raw.nodes:
        add(node_id, "node", tags, Point(lon, lat))
    for way in raw.ways:
        if not _is_poi_candidate(way.tags, poi_keys):
            continue
        reason, geom = _way_geometry(way)
        if geom is None:
            summary.reject(frame, reason)
            continue
        if isinstance(geom, Polygon) and not geom.is_valid:
            geom = shapely.make_valid(geom)
            summary.repair(frame, "make_valid")
        point = (
            geom.interpolate(0.5, normalized=True)
            if isinstance(geom, LineString)
            else geom.representative_point()
        )
        add(way.id, "way", way.tags, point)
    for rel_id, tags, geom in raw.relation_areas:
        if not _is_poi_candidate(tags, poi_keys):
            continue
        if geom is None:
            summary.reject(frame, "area_assembly_failed")
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
            summary.repair(frame, "make_valid")
        add(rel_id, "relation", tags, geom.representative_point())
    out = _frame(records, POI_COLUMNS)
    summary.imported[frame] = len(out)
    return out


def _valid_runs(way: _Way) -> list[tuple[list[int], np.ndarray]]:
    """Runs of consecutive nodes with known locations (consecutive duplicate ids dropped)."""
    runs: list[tuple[list[int], np.ndarray]] = []
    refs: list[int] = []
    coords: list[tuple[float, float]] = []
    for ref, lon, lat in zip(way.refs, way.lon, way.lat, strict=True):
        if math.isnan(lon):
            if len(refs) >= 2:
                runs.append((refs, np.array(coords)))
            refs, coords = [], []
            continue
        if refs and refs[-1] == ref:
            continue
        refs.append(ref)
        coords.append((lon, lat))
    if len(refs) >= 2:
        runs.append((refs, np.array(coords)))
    return runs


def _build_network(
    raw: _RawOsm, summary: ImportSummary
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Walking network split at shared node ids, plus the road lines of all highway ways."""
    road_records: list[dict[str, Any]] = []
    walk_runs: list[tuple[_Way, list[int], np.ndarray]] = []
    for way in raw.ways:
        highway = way.tags.get("highway")
        if not highway:
            continue
        runs = _valid_runs(way)
        reason = walk_exclusion_reason(way.tags)
        if not runs:
            summary.reject("roads", "missing_node_locations")
            if reason is None:
                summary.reject("network_ways", "missing_node_locations")
            continue
        trimmed = bool(np.isnan(way.lon).any())
        if trimmed:
            summary.repair("roads", "missing_node_locations_trimmed")
        line_coords = max((c for _, c in runs), key=len)
        road_records.append(
            {
                "osm_id": way.id,
                "highway": highway,
                "name": display_name(way.tags),
                "major": highway in MAJOR_HIGHWAYS,
                "walkable": reason is None,
                "geometry": LineString(line_coords),
            }
        )
        if reason is not None:
            summary.reject("network_ways", reason)
            continue
        if trimmed:
            summary.repair("network_ways", "missing_node_locations_split")
        walk_runs.extend((way, refs, coords) for refs, coords in runs)

    # graph nodes: ends of every walkable run, and nodes used twice or more
    uses: Counter[int] = Counter()
    graph_nodes: set[int] = set()
    for _, refs, _ in walk_runs:
        uses.update(refs)
        graph_nodes.add(refs[0])
        graph_nodes.add(refs[-1])
    graph_nodes.update(n for n, c in uses.items() if c >= 2)

    node_lonlat: dict[int, tuple[float, float]] = {}
    edge_records: list[dict[str, Any]] = []
    edge_coords: list[np.ndarray] = []
    for way, refs, coords in walk_runs:
        highway = way.tags["highway"]
        name = display_name(way.tags)
        start = 0
        for i in range(1, len(refs)):
            if refs[i] not in graph_nodes:
                continue
            piece = coords[start : i + 1]
            edge_records.append(
                {
                    "source": refs[start],
                    "target": refs[i],
                    "way_id": way.id,
                    "highway": highway,
                    "name": name,
                    "major": highway in MAJOR_HIGHWAYS,
                    "geometry": LineString(piece),
                }
            )
            edge_coords.append(piece)
            node_lonlat.setdefault(refs[start], tuple(coords[start]))
            node_lonlat.setdefault(refs[i], tuple(coords[i]))
            start = i
    lengths = _geodesic_lengths_m(edge_coords)
    for record, length in zip(edge_records, lengths, strict=True):
        record["length_m"] = float(length)
    edges = _frame(edge_records, EDGE_COLUMNS)

    degree: Counter[int] = Counter()
    degree.update(edges["source"].tolist())
    degree.update(edges["target"].tolist())
    node_ids = sorted(node_lonlat)
    nodes = _frame(
        [{"node_id": n, "degree": degree[n], "geometry": Point(node_lonlat[n])} for n in node_ids],
        NODE_COLUMNS,
    )
    roads = _frame(road_records, ROAD_COLUMNS)

    index = pd.Series(np.arange(len(node_ids)), index=pd.Index(node_ids, dtype="int64"))
    _component_stats(
        summary,
        index.loc[edges["source"]].to_numpy(),
        index.loc[edges["target"]].to_numpy(),
        len(node_ids),
    )
    summary.imported["network_nodes"] = len(nodes)
    summary.imported["network_edges"] = len(edges)
    summary.imported["roads"] = len(roads)
    return nodes, edges, roads


def _utm_for_raw(raw: _RawOsm) -> pyproj.CRS:
    """UTM zone of the data's centre (median of all known coordinates)."""
    lons = [np.array([n[1] for n in raw.nodes])] + [w.lon for w in raw.ways]
    lats = [np.array([n[2] for n in raw.nodes])] + [w.lat for w in raw.ways]
    lon, lat = np.concatenate(lons), np.concatenate(lats)
    if not (np.isfinite(lon) & np.isfinite(lat)).any():
        return utm_crs_for_lonlat(0.0, 0.0)  # nothing located: any metric CRS will do
    return utm_crs_for_lonlat(lon, lat)


def read_osm(
    path: str | Path,
    *,
    dwelling_size_m2: float = 90.0,
    default_levels: int = 5,
) -> OsmFrames:
    """Read an OSM file (``.osm`` XML, ``.osm.pbf`` / ``.pbf``) into frames in EPSG:4326.

    Buildings are polygons (invalid ones repaired with ``make_valid``; multi-part results keep
    the largest part), with households from ``building:flats`` or estimated (DESIGN §2). POIs
    become venues when the venue catalogue maps their tags. The walking network is split at
    shared OSM node ids only. Every object not imported is counted with a reason in
    ``summary.rejected``.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".osm", ".osm.pbf", ".pbf", ".osm.gz", ".osm.bz2")):
        raise ValueError(f"not an OSM file (.osm, .osm.pbf, .pbf): {path}")
    if not path.is_file():
        raise FileNotFoundError(path)
    raw = _collect(path)
    summary = ImportSummary(source=str(path))
    utm = _utm_for_raw(raw)
    buildings = _build_buildings(raw, summary, utm, dwelling_size_m2, default_levels)
    pois = _build_pois(raw, summary)
    nodes, edges, roads = _build_network(raw, summary)
    logger.info("read %s: %s", path.name, summary.as_dict())
    return OsmFrames(buildings, pois, nodes, edges, roads, summary, utm)


# --------------------------------------------------------------------------- plain lines


def _line_parts(geom: Any) -> Iterable[LineString]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, LineString):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, LineString) and not g.is_empty]


def read_lines_as_network(gdf_lines: gpd.GeoDataFrame, snap_m: float = 0.5) -> NetworkFrames:
    """Network from road lines without node ids: ends within ``snap_m`` metres become one node.

    Ends are clustered in the local UTM zone by single linkage (every pair of ends closer than
    ``snap_m`` joins one node, so two distinct nodes are always more than ``snap_m`` apart); a
    node sits at the mean of its ends and the lines' end vertices are moved onto it. Lines are
    never split where they cross: each (part of a) line is one edge. Input attribute columns are
    carried to the edges (renamed ``<name>_input`` if they clash) with ``line_index``, the input
    row's index. Node ids are 0..n-1.
    """
    if snap_m < 0:
        raise ValueError("snap_m must be >= 0")
    summary = ImportSummary(source="lines")
    gdf = gdf_lines
    if gdf.crs is None:
        logger.warning("lines have no CRS; assuming EPSG:4326")
        gdf = gdf.set_crs(CRS_LONLAT)
    gdf = gdf.to_crs(CRS_LONLAT)

    parts: list[LineString] = []
    rows: list[Any] = []
    for idx, geom in zip(gdf.index, gdf.geometry, strict=True):
        found = list(_line_parts(geom))
        if not found:
            summary.reject(
                "edges",
                "not_a_line" if geom is not None and not geom.is_empty else "empty_geometry",
            )
        parts.extend(found)
        rows.extend([idx] * len(found))

    if parts:
        all_xy = shapely.get_coordinates(np.array(parts, dtype=object))
        utm = utm_crs_for_lonlat(all_xy[:, 0], all_xy[:, 1])
    else:
        utm = utm_crs_for_lonlat(0.0, 0.0)
    to_utm = pyproj.Transformer.from_crs(CRS_LONLAT, utm, always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(utm, CRS_LONLAT, always_xy=True)

    ends_lonlat = (
        np.array([[p.coords[0], p.coords[-1]] for p in parts], dtype=float).reshape(-1, 2)[:, :2]
        if parts
        else np.zeros((0, 2))
    )
    ex, ey = to_utm.transform(ends_lonlat[:, 0], ends_lonlat[:, 1])
    ends_xy = np.column_stack([ex, ey])
    n_ends = len(ends_xy)
    if n_ends:
        pairs = cKDTree(ends_xy).query_pairs(r=snap_m, output_type="ndarray")
        _, labels = _components(pairs[:, 0], pairs[:, 1], n_ends)
    else:
        labels = np.zeros(0, dtype=np.int64)
    # renumber clusters by first appearance for stable ids
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    node_of_end = relabel[labels] if n_ends else labels
    n_nodes = len(order)
    node_xy = np.zeros((n_nodes, 2))
    if n_nodes:
        np.add.at(node_xy, node_of_end, ends_xy)
        node_xy /= np.bincount(node_of_end, minlength=n_nodes)[:, None]
    nlon, nlat = to_lonlat.transform(node_xy[:, 0], node_xy[:, 1])
    node_lonlat = np.column_stack([nlon, nlat])
    summary.stats["merged_ends"] = int(n_ends - n_nodes)

    input_cols = [c for c in gdf.columns if c != gdf.geometry.name]
    reserved = {"source", "target", "length_m", "line_index", "geometry"}
    renamed = {c: (f"{c}_input" if c in reserved else c) for c in input_cols}
    attrs = gdf[input_cols].rename(columns=renamed)

    keep_src: list[int] = []
    keep_dst: list[int] = []
    keep_rows: list[Any] = []
    geoms: list[LineString] = []
    coords_list: list[np.ndarray] = []
    for i, (part, row) in enumerate(zip(parts, rows, strict=True)):
        u, v = int(node_of_end[2 * i]), int(node_of_end[2 * i + 1])
        coords = np.asarray(part.coords, dtype=float)[:, :2].copy()
        coords[0] = node_lonlat[u]
        coords[-1] = node_lonlat[v]
        if u == v and len(coords) <= 2:
            summary.reject("edges", "degenerate")
            continue
        keep_src.append(u)
        keep_dst.append(v)
        keep_rows.append(row)
        geoms.append(LineString(coords))
        coords_list.append(coords)

    edges_df = attrs.loc[keep_rows].reset_index(drop=True) if keep_rows else attrs.iloc[:0]
    edges_df = edges_df.reset_index(drop=True)
    edges_df.insert(0, "line_index", list(keep_rows))
    edges_df.insert(0, "length_m", _geodesic_lengths_m(coords_list))
    edges_df.insert(0, "target", np.array(keep_dst, dtype=np.int64))
    edges_df.insert(0, "source", np.array(keep_src, dtype=np.int64))
    edges = gpd.GeoDataFrame(
        edges_df, geometry=gpd.GeoSeries(geoms, crs=CRS_LONLAT), crs=CRS_LONLAT
    )

    src = np.array(keep_src, dtype=np.int64)
    dst = np.array(keep_dst, dtype=np.int64)
    degree = np.bincount(src, minlength=n_nodes) + np.bincount(dst, minlength=n_nodes)
    used = degree > 0
    summary.stats["unused_nodes_dropped"] = int((~used).sum())
    node_ids = np.arange(n_nodes, dtype=np.int64)
    nodes = gpd.GeoDataFrame(
        {"node_id": node_ids[used], "degree": degree[used].astype(np.int64)},
        geometry=gpd.GeoSeries(shapely.points(node_lonlat[used]), crs=CRS_LONLAT),
        crs=CRS_LONLAT,
    )
    compact = np.cumsum(used) - 1  # node index among the used nodes
    _component_stats(summary, compact[src], compact[dst], int(used.sum()))
    summary.imported["network_nodes"] = len(nodes)
    summary.imported["network_edges"] = len(edges)
    logger.info("lines as network: %s", summary.as_dict())
    return NetworkFrames(nodes, edges, summary, utm)


__all__ = [
    "BUILDING_COLUMNS",
    "EDGE_COLUMNS",
    "NODE_COLUMNS",
    "POI_COLUMNS",
    "ROAD_COLUMNS",
    "ImportSummary",
    "NetworkFrames",
    "OsmFrames",
    "display_name",
    "read_lines_as_network",
    "read_osm",
    "utm_crs_for_lonlat",
    "walk_exclusion_reason",
]
