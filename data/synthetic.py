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
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from sqlalchemy import text
from sqlalchemy.orm import Session

from data.demo import AVAILABILITY_PATTERNS as DEMO_AVAILABILITY
from geo.assign import GridIndex
from geo.codes import grid_code, grid_sequence
from geo.crs import utm_crs_for_lonlat
from geo.households import estimate_households
from layers.catalogues import request_categories
from layers.grids.repo import current_generation, live_sql
from layers.importers.store import copy_rows, ewkb_hex, replace_network

logger = logging.getLogger(__name__)

DEFAULT_DISTRICT_CODE = "990100"
DEFAULT_ORIGIN_LONLAT = (104.06, 30.66)  # central Chengdu
GRID_AREA_M2 = 50_000.0  # mean grid area (≈ 224 m × 224 m)
ASPECT = 1.2  # district width ÷ height
GRIDS_PER_COMMUNITY = 12
STREETS = 6
SEED_JITTER = 0.25  # grid seed jitter, as a share of the lattice spacing
VERTEX_SPACING_SHARE = 1 / 17  # densified boundary vertex spacing ÷ lattice spacing
WIGGLE_SHARE = 0.02  # boundary perturbation amplitude ÷ lattice spacing
PERSONS_PER_HOUSEHOLD = 2.6
OPEN_SHARE = 0.05  # share of historical requests still open
ON_VERTEX_SHARE = 0.002  # share of requests exactly on a shared grid vertex
SOURCE = "synthetic"

LEVEL_CHOICES = np.array([1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 6, 7, 9, 11, 18])  # mean ≈ 5.8
NON_RESIDENTIAL_TYPES = np.array(["commercial", "school", "office", "retail", "public"])
OPEN_STATUSES = np.array(["assigned", "claimed", "in_progress"])
SURNAMES = np.array(list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"))
GIVEN = np.array(list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰海燕"))
# the same weekly windows as the demo ("HH:MM-HH:MM", read in Asia/Shanghai)
AVAILABILITY_PATTERNS = DEMO_AVAILABILITY
REQUEST_TEXTS = {
    "hardship_relief": ["独居老人家中断粮，需要帮助采购", "低保户冬季取暖困难"],
    "employment": ["下岗职工想参加技能培训", "大学毕业生咨询创业补贴"],
    "culture_science": ["希望社区组织防诈骗讲座", "孩子暑期想参加科普活动"],
    "housing": ["楼道灯坏了好几天", "屋顶漏水需要维修", "单元门门禁损坏", "下水道堵塞有异味"],
    "healthcare": ["行动不便老人需要上门测血压", "咨询家庭医生签约"],
    "elderly_care": ["高龄老人需要助餐服务", "老人想找人陪同就医", "独居老人需要定期探访"],
    "errand_agency": ["帮忙代办社保认证", "代缴水电燃气费"],
    "petition_agency": ["反映小区物业收费问题", "咨询拆迁补偿政策"],
    "dispute_mediation": ["楼上装修噪音扰民", "邻里因停车位发生纠纷"],
    "micro_wish": ["孩子想要一套课外书", "希望有人教用智能手机"],
    "other": ["建议增设健身器材", "小区绿化需要修剪"],
}
CATEGORY_WEIGHTS = {
    "hardship_relief": 6,
    "employment": 3,
    "culture_science": 2,
    "housing": 14,
    "healthcare": 6,
    "elderly_care": 10,
    "errand_agency": 8,
    "petition_agency": 2,
    "dispute_mediation": 5,
    "micro_wish": 3,
}


# --------------------------------------------------------------------------- pure layout


@dataclass
class SyntheticLayout:
    """The area hierarchy of a synthetic district (pure; ``*_utm`` in metres, else lon/lat)."""

    utm_crs: pyproj.CRS
    district_code: str
    district_utm: Polygon
    grid_utm: np.ndarray  # Polygons, in code order
    grid_lonlat: np.ndarray
    grid_codes: np.ndarray  # 15-digit strings
    grid_community: np.ndarray  # index into community_codes
    community_codes: list[str]  # 12 digits
    community_street: np.ndarray  # index into street_codes
    street_codes: list[str]  # 9 digits
    spacing_m: float  # grid lattice spacing

    def community_lonlat(self) -> list[MultiPolygon]:
        """Each community as the union of its grids (lon/lat, exact shared edges)."""
        return [
            _multi(shapely.union_all(self.grid_lonlat[self.grid_community == c]))
            for c in range(len(self.community_codes))
        ]

    def street_lonlat(self) -> list[MultiPolygon]:
        street_of_grid = self.community_street[self.grid_community]
        return [
            _multi(shapely.union_all(self.grid_lonlat[street_of_grid == s]))
            for s in range(len(self.street_codes))
        ]

    def district_lonlat(self) -> MultiPolygon:
        return _multi(shapely.union_all(self.grid_lonlat))


def _multi(geom: Any) -> MultiPolygon:
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    return MultiPolygon(parts)


def _transformers(utm: pyproj.CRS) -> tuple[pyproj.Transformer, pyproj.Transformer]:
    to_utm = pyproj.Transformer.from_crs(4326, utm, always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(utm, 4326, always_xy=True)
    return to_utm, to_lonlat


def _reproject(geoms: np.ndarray, transformer: pyproj.Transformer) -> np.ndarray:
    """Same coordinates in → same coordinates out, so shared edges stay exactly shared."""

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(geoms, dtype=object), fn)


def _row_counts(n: int) -> list[int]:
    """Seeds per lattice row: ``ny`` rows whose counts sum to ``n`` (width ÷ height ≈ ASPECT)."""
    ny = max(1, round(math.sqrt(n / ASPECT)))
    base, extra = divmod(n, ny)
    return [base + (1 if r < extra else 0) for r in range(ny)]


def _wiggle(line_xy: np.ndarray, amp_m: float, step_m: float, rng: np.random.Generator):
    """Densify a straight edge to ``step_m`` and displace it sideways, ends pinned."""
    start, end = line_xy[0], line_xy[-1]
    chord = end - start
    length_m = float(np.hypot(*chord))
    n_seg = max(1, math.ceil(length_m / step_m))
    if len(line_xy) > 2:  # a bent edge (district corner): densify each piece, no wiggle
        return np.asarray(shapely.get_coordinates(shapely.segmentize(_ls(line_xy), step_m)))
    t = np.linspace(0.0, 1.0, n_seg + 1)
    xy = start + t[:, None] * chord
    if n_seg >= 3:
        amp = min(amp_m, 0.05 * length_m)
        k1, k2 = rng.integers(1, 4, size=2)
        p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
        shape = 0.7 * np.sin(2 * np.pi * k1 * t + p1) + 0.3 * np.sin(2 * np.pi * k2 * t + p2)
        offset = amp * np.sin(np.pi * t) * shape
        normal = np.array([-chord[1], chord[0]]) / length_m
        xy = xy + offset[:, None] * normal[None, :]
    xy[0], xy[-1] = start, end
    return xy


def _ls(xy: np.ndarray) -> shapely.LineString:
    return shapely.linestrings(xy)


def _grid_faces(n: int, rng: np.random.Generator, grid_area_m2: float, x0: float, y0: float):
    """Polygons tiling the district rectangle, one per seed; (faces, seed rows, seed col frac)."""
    counts = _row_counts(n)
    ny = len(counts)
    height_m = math.sqrt(n * grid_area_m2 / ASPECT)
    width_m = n * grid_area_m2 / height_m
    spacing_m = height_m / ny
    rect = box(x0 - width_m / 2, y0 - height_m / 2, x0 + width_m / 2, y0 + height_m / 2)
    seeds, seed_row, seed_col = [], [], []
    for r, count in enumerate(counts):  # r = 0 is the northern row
        dx = width_m / count
        for k in range(count):
            jx, jy = rng.uniform(-SEED_JITTER, SEED_JITTER, size=2)
            seeds.append(
                (
                    rect.bounds[0] + (k + 0.5 + jx) * dx,
                    rect.bounds[3] - (r + 0.5 + jy) * spacing_m,
                )
            )
            seed_row.append(r)
            seed_col.append((k + 0.5) / count)
    seeds_xy = np.asarray(seeds)
    step_m = spacing_m * VERTEX_SPACING_SHARE
    amp_m = spacing_m * WIGGLE_SHARE
    for attempt in range(4):
        faces = _polygonise(seeds_xy, rect, step_m, amp_m / (2**attempt), rng)
        if faces is not None:
            break
        logger.info("boundary wiggle produced a bad tiling; retrying with half the amplitude")
    else:
        raise RuntimeError("could not build a valid synthetic tiling")
    return faces, np.asarray(seed_row), np.asarray(seed_col), spacing_m, rect


def _polygonise(seeds_xy, rect, step_m, amp_m, rng) -> np.ndarray | None:
    """Faces aligned with ``seeds_xy``, or None when the perturbed edges do not tile."""
    if len(seeds_xy) == 1:
        edges = [rect.exterior]
    else:
        vor = shapely.voronoi_polygons(
            shapely.multipoints(seeds_xy), extend_to=rect.buffer(10 * step_m), only_edges=True
        )
        noded = shapely.union_all([vor, rect.exterior])
        pieces = shapely.get_parts(shapely.line_merge(noded))
        inside = shapely.covers(rect, shapely.line_interpolate_point(pieces, 0.5, normalized=True))
        edges = shapely.get_parts(shapely.line_merge(shapely.multilinestrings(pieces[inside])))
    wiggled = [_ls(_wiggle(shapely.get_coordinates(e), amp_m, step_m, rng)) for e in edges]
    polys, cuts, dangles, invalid = shapely.polygonize_full(wiggled)
    if any(not shapely.is_empty(g) for g in (cuts, dangles, invalid)):
        return None
    faces = shapely.get_parts(polys)
    if len(faces) != len(seeds_xy) or not shapely.is_valid(faces).all():
        return None
    total_m2 = shapely.area(faces).sum()
    if abs(total_m2 - shapely.area(shapely.union_all(faces))) > 1e-6 * total_m2:
        return None  # crossing edges made overlapping faces
    tree = shapely.STRtree(faces)
    pairs = tree.query(shapely.points(seeds_xy), predicate="within")
    if pairs.shape[1] != len(seeds_xy) or len(np.unique(pairs[1])) != len(seeds_xy):
        return None
    aligned = np.empty(len(seeds_xy), dtype=object)
    aligned[pairs[0]] = faces[pairs[1]]
    return aligned


def build_layout(
    grids: int = 600,
    *,
    seed: int = 1,
    district_code: str = DEFAULT_DISTRICT_CODE,
    origin_lonlat: tuple[float, float] = DEFAULT_ORIGIN_LONLAT,
    streets: int = STREETS,
    grids_per_community: int = GRIDS_PER_COMMUNITY,
    grid_area_m2: float = GRID_AREA_M2,
) -> SyntheticLayout:
    """District → streets → communities → grids, exactly nested, centred on ``origin_lonlat``."""
    if grids < 1:
        raise ValueError("a synthetic district needs at least one grid")
    rng = np.random.default_rng([seed, 0])
    utm = utm_crs_for_lonlat(origin_lonlat[0], origin_lonlat[1])
    to_utm, to_lonlat = _transformers(utm)
    x0, y0 = to_utm.transform(*origin_lonlat)
    faces, row, col_frac, spacing_m, _ = _grid_faces(grids, rng, grid_area_m2, x0, y0)
    ny = int(row.max()) + 1

    # communities: blocks of lattice rows × column bands; streets: blocks of communities
    n_comm = max(1, round(grids / grids_per_community))
    cy = min(ny, max(1, round(math.sqrt(n_comm / ASPECT))))
    cx = max(1, round(n_comm / cy))
    c_row = row * cy // ny
    c_col = np.minimum((col_frac * cx).astype(int), cx - 1)
    block = c_row * cx + c_col
    blocks = np.unique(block)  # row-major from the north-west: this is the community order
    community = np.searchsorted(blocks, block)
    b_row, b_col = blocks // cx, blocks % cx
    sy = 2 if streets >= 4 and cy >= 2 else 1
    sx = max(1, math.ceil(streets / sy))
    s_key = (b_row * sy // cy) * sx + np.minimum(b_col * sx // cx, sx - 1)
    s_keys = np.unique(s_key)
    community_street = np.searchsorted(s_keys, s_key)

    street_codes = [f"{district_code}{s + 1:03d}" for s in range(len(s_keys))]
    community_codes: list[str] = []
    seq_in_street = np.zeros(len(s_keys), dtype=int)
    for s in community_street:
        seq_in_street[s] += 1
        community_codes.append(f"{street_codes[s]}{seq_in_street[s]:03d}")

    codes = np.empty(grids, dtype=object)
    reps = shapely.get_coordinates(shapely.point_on_surface(faces))
    for c in range(len(community_codes)):
        members = np.nonzero(community == c)[0]
        ymax = shapely.bounds(shapely.union_all(faces[members]))[3]
        seq = grid_sequence(reps[members], ymax)
        cc = community_codes[c]
        for m, q in zip(members, seq, strict=True):
            codes[m] = grid_code(district_code, cc[6:9], cc[9:12], int(q))
    order = np.argsort(codes.astype(str), kind="stable")
    faces_sorted = faces[order]
    layout = SyntheticLayout(
        utm_crs=utm,
        district_code=district_code,
        district_utm=shapely.union_all(faces),
        grid_utm=faces_sorted,
        grid_lonlat=_reproject(faces_sorted, to_lonlat),
        grid_codes=codes[order].astype(str),
        grid_community=community[order],
        community_codes=community_codes,
        community_street=community_street,
        street_codes=street_codes,
        spacing_m=spacing_m,
    )
    logger.info(
        "synthetic layout: %d streets, %d communities, %d grids (spacing %.0f m)",
        len(street_codes),
        len(community_codes),
        grids,
        spacing_m,
    )
    return layout


def synthetic_grids(
    n: int = 600,
    seed: int = 1,
    *,
    district_code: str = DEFAULT_DISTRICT_CODE,
    origin_lonlat: tuple[float, float] = DEFAULT_ORIGIN_LONLAT,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic grid polygons in lon/lat and their 15-digit codes (no database)."""
    layout = build_layout(n, seed=seed, district_code=district_code, origin_lonlat=origin_lonlat)
    return layout.grid_lonlat, layout.grid_codes


def shared_vertices(geoms: Sequence[Any] | np.ndarray) -> np.ndarray:
    """(k, 2) coordinates that are a vertex of at least two of ``geoms`` (exact equality)."""
    arr = np.asarray(geoms, dtype=object)
    rings = shapely.get_rings(shapely.get_parts(arr))
    xy, ring_idx = shapely.get_coordinates(rings, return_index=True)
    # drop each ring's closing vertex, then count distinct owners per coordinate
    last = np.r_[ring_idx[1:] != ring_idx[:-1], True]
    xy, ring_idx = xy[~last], ring_idx[~last]
    parts, part_idx = shapely.get_parts(arr, return_index=True)
    ring_owner = np.repeat(part_idx, shapely.get_num_interior_rings(parts) + 1)
    owner = ring_owner[ring_idx]
    table = np.unique(np.column_stack([xy, owner]), axis=0)
    uniq, counts = np.unique(table[:, :2], axis=0, return_counts=True)
    return uniq[counts >= 2]


# --------------------------------------------------------------------------- pure content


@dataclass
class SyntheticBuildings:
    """Rectangles strictly inside one grid each (UTM frame kept to place people inside)."""

    grid: np.ndarray  # index into the layout's grids
    center_utm: np.ndarray  # (n, 2)
    size_m: np.ndarray  # (n, 2) width, depth
    angle_rad: np.ndarray
    levels: np.ndarray
    residential: np.ndarray
    building_type: np.ndarray
    households: np.ndarray
    footprint_utm: np.ndarray

    def __len__(self) -> int:
        return len(self.grid)

    def points_inside(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random point inside each building ``idx`` (UTM), away from its walls."""
        u = rng.uniform(-0.4, 0.4, size=(len(idx), 2)) * self.size_m[idx]
        cos, sin = np.cos(self.angle_rad[idx]), np.sin(self.angle_rad[idx])
        return self.center_utm[idx] + np.column_stack(
            [u[:, 0] * cos - u[:, 1] * sin, u[:, 0] * sin + u[:, 1] * cos]
        )


def _rectangles(center: np.ndarray, size: np.ndarray, angle: np.ndarray) -> np.ndarray:
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    local = corners[None, :, :] * size[:, None, :]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = center[:, 0:1] + local[:, :, 0] * cos - local[:, :, 1] * sin
    y = center[:, 1:2] + local[:, :, 0] * sin + local[:, :, 1] * cos
    return shapely.polygons(np.stack([x, y], axis=-1))


def build_buildings(layout: SyntheticLayout, n: int, *, seed: int = 1) -> SyntheticBuildings:
    """``n`` non-overlapping rectangles, each ≥ 1 m inside exactly one grid."""
    rng = np.random.default_rng([seed, 1])
    empty = np.zeros(0)
    if n <= 0:
        return SyntheticBuildings(
            np.zeros(0, int),
            np.zeros((0, 2)),
            np.zeros((0, 2)),
            empty,
            empty.astype(int),
            empty.astype(bool),
            empty.astype(object),
            empty.astype(int),
            empty.astype(object),
        )
    xmin, ymin, xmax, ymax = layout.district_utm.bounds
    inner = shapely.buffer(layout.grid_utm, -1.0, join_style="mitre")
    tree = shapely.STRtree(inner)
    spacing_m = math.sqrt(layout.district_utm.area / (1.6 * n))
    for _ in range(20):
        xs = np.arange(xmin + spacing_m / 2, xmax, spacing_m)
        ys = np.arange(ymin + spacing_m / 2, ymax, spacing_m)
        gx, gy = np.meshgrid(xs, ys)
        k = gx.size
        # footprint ≤ 0.7 spacing and tilt ≤ 8°: the tilted box fits its lattice cell with room
        # for ±0.09 spacing of jitter, so neighbours never overlap
        size = rng.uniform(0.35, 0.7, size=(k, 2)) * spacing_m
        angle = np.radians(rng.uniform(-8.0, 8.0, size=k))
        center = np.column_stack([gx.ravel(), gy.ravel()])
        center = center + rng.uniform(-0.09, 0.09, size=(k, 2)) * spacing_m
        rects = _rectangles(center, size, angle)
        pairs = tree.query(rects, predicate="within")
        if pairs.shape[1] >= n:
            break
        spacing_m *= 0.9
    else:  # pragma: no cover - only with absurd sizes
        raise RuntimeError(f"cannot fit {n} buildings into the district")
    pick = np.sort(rng.choice(pairs.shape[1], size=n, replace=False))
    cand, grid = pairs[0][pick], pairs[1][pick]
    center, size, angle, rects = center[cand], size[cand], angle[cand], rects[cand]
    levels = rng.choice(LEVEL_CHOICES, size=n)
    residential = rng.random(n) < 0.85
    btype = np.where(residential, "apartments", rng.choice(NON_RESIDENTIAL_TYPES, size=n)).astype(
        object
    )
    households, _ = estimate_households(shapely.area(rects), levels, residential)
    return SyntheticBuildings(
        grid, center, size, angle, levels, residential, btype, households, rects
    )


def build_network(
    layout: SyntheticLayout, min_edges: int, *, seed: int = 1
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A perturbed street lattice over the district with ≥ ``min_edges`` edges (lon/lat frames;
    node ids 1..n; edge lengths in metres measured in UTM)."""
    rng = np.random.default_rng([seed, 2])
    drop = 0.05
    outline = layout.district_utm
    xmin, ymin, xmax, ymax = outline.bounds
    spacing_m = math.sqrt(outline.area * 2 * (1 - drop) / (1.03 * max(min_edges, 1)))
    for _ in range(30):
        xs = np.arange(xmin, xmax + spacing_m, spacing_m)
        ys = np.arange(ymin, ymax + spacing_m, spacing_m)
        gx, gy = np.meshgrid(xs, ys)  # shape (rows, cols)
        xy = np.column_stack([gx.ravel(), gy.ravel()])
        xy = xy + rng.uniform(-0.2, 0.2, size=xy.shape) * spacing_m
        keep = shapely.contains_xy(outline, xy[:, 0], xy[:, 1]).reshape(gx.shape)
        idx = np.arange(gx.size).reshape(gx.shape)
        h = keep[:, :-1] & keep[:, 1:]
        v = keep[:-1, :] & keep[1:, :]
        src = np.concatenate([idx[:, :-1][h], idx[:-1, :][v]])
        dst = np.concatenate([idx[:, 1:][h], idx[1:, :][v]])
        major = np.concatenate([np.nonzero(h)[0] % 8 == 0, np.nonzero(v)[1] % 8 == 0])
        kept = rng.random(len(src)) >= drop
        src, dst, major = src[kept], dst[kept], major[kept]
        if len(src) >= min_edges:
            break
        spacing_m *= 0.97
    else:  # pragma: no cover
        raise RuntimeError(f"cannot build {min_edges} network edges")
    used, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    node_id = np.arange(1, len(used) + 1, dtype=np.int64)
    src_id, dst_id = node_id[inverse[: len(src)]], node_id[inverse[len(src) :]]
    node_xy = xy[used]
    _, to_lonlat = _transformers(layout.utm_crs)
    lon, lat = to_lonlat.transform(node_xy[:, 0], node_xy[:, 1])
    node_lonlat = np.column_stack([lon, lat])
    length_m = np.hypot(*(node_xy[src_id - 1] - node_xy[dst_id - 1]).T)
    lines = shapely.linestrings(np.stack([node_lonlat[src_id - 1], node_lonlat[dst_id - 1]], 1))
    highway = np.where(
        major, "secondary", np.where(rng.random(len(src)) < 0.5, "residential", "footway")
    )
    nodes = gpd.GeoDataFrame({"node_id": node_id}, geometry=shapely.points(node_lonlat), crs=4326)
    edges = gpd.GeoDataFrame(
        {"source": src_id, "target": dst_id, "length_m": length_m, "highway": highway},
        geometry=lines,
        crs=4326,
    )
    return nodes, edges


# --------------------------------------------------------------------------- database


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


def _copy_frames(session: Session, table: str, frames: Iterable[pd.DataFrame]) -> int:
    """COPY frames as CSV (far faster than row by row for 10⁵–10⁶ rows); NA / None → NULL.

    All frames must have the same columns; they are produced lazily, so memory stays bounded
    by one chunk.
    """
    raw = session.connection().connection.driver_connection
    n = 0
    with raw.cursor() as cur:
        cp_cm = None
        for frame in frames:
            if cp_cm is None:
                cols = ", ".join(frame.columns)
                cp_cm = cur.copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)")
                cp = cp_cm.__enter__()
            buf = io.StringIO()
            frame.to_csv(buf, header=False, index=False)
            cp.write(buf.getvalue())
            n += len(frame)
        if cp_cm is not None:
            cp_cm.__exit__(None, None, None)
    return n


@contextmanager
def _indexes_deferred(session: Session, table: str, incoming_rows: int) -> Iterator[None]:
    """Drop ``table``'s plain indexes for a bulk load and rebuild them after it (same
    transaction), when the load is larger than the table; constraint indexes stay."""
    existing = session.scalar(
        text(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = CAST(:t AS regclass)"
        ),
        {"t": table},
    )
    if incoming_rows < 50_000 or incoming_rows < 2 * (existing or 0):
        yield
        return
    rows = session.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = CAST(:t AS regclass) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        ),
        {"t": table},
    ).all()
    for name, _ in rows:
        session.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, ddl in rows:
        session.execute(text(ddl))
    logger.debug("rebuilt %d indexes of %s after the bulk load", len(rows), table)


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


def _lookup(values: np.ndarray, idx: np.ndarray) -> pd.Series:
    """``values[idx]`` as a nullable integer column, NULL where ``idx`` is −1."""
    return pd.Series(values[np.maximum(idx, 0)], dtype="Int64").where(idx >= 0)


def _people(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    names = np.char.add(
        SURNAMES[rng.integers(len(SURNAMES), size=n)], GIVEN[rng.integers(len(GIVEN), size=n)]
    )
    second = rng.random(n) < 0.6
    names[second] = np.char.add(names[second], GIVEN[rng.integers(len(GIVEN), size=second.sum())])
    prefix = rng.choice(np.array(["13", "15", "17", "18", "19"]), size=n)
    tail = rng.integers(0, 10**9, size=n)
    phones = [f"{p}{t:09d}" for p, t in zip(prefix, tail, strict=True)]
    return names, phones


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


def _write_requests(
    session: Session,
    layout: SyntheticLayout,
    blds: SyntheticBuildings,
    b_codes: np.ndarray,
    index: GridIndex,
    live_id: np.ndarray,
    live_comm: np.ndarray,
    weights: np.ndarray,
    *,
    n: int,
    seed: int,
    now: datetime,
) -> int:
    """COPY ``n`` historical requests; returns how many are still open."""
    rng = np.random.default_rng([seed, 4])
    _, to_lonlat = _transformers(layout.utm_crs)
    # where: exactly on shared grid vertices, anywhere in the district, else in a building
    n_vertex = round(n * ON_VERTEX_SHARE)
    n_free = round(n * 0.15) if len(blds) else n - n_vertex
    n_building = n - n_vertex - n_free
    shared = shared_vertices(layout.grid_lonlat)
    if len(shared) == 0:
        n_free += n_vertex
        n_vertex = 0
    on_vertex = shared[rng.integers(len(shared), size=n_vertex)] if n_vertex else np.zeros((0, 2))
    xmin, ymin, xmax, ymax = layout.district_utm.bounds
    free: list[np.ndarray] = []
    got = 0
    while got < n_free:
        xy = rng.uniform((xmin, ymin), (xmax, ymax), size=(max(2 * (n_free - got), 16), 2))
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        pts = np.column_stack([lon, lat])[index.assign(lon, lat) >= 0]
        free.append(pts[: n_free - got])
        got += len(free[-1])
    b_idx = rng.choice(len(blds), size=n_building, p=weights) if n_building else np.zeros(0, int)
    if n_building:
        xy = blds.points_inside(b_idx, rng)
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        in_building = np.column_stack([lon, lat])
    else:
        in_building = np.zeros((0, 2))
    lonlat = np.concatenate([in_building, *free, on_vertex])
    building_code = np.concatenate([b_codes[b_idx], np.full(n - n_building, None, dtype=object)])
    shuffle = rng.permutation(n)
    lonlat, building_code = lonlat[shuffle], building_code[shuffle]
    hit = index.assign(lonlat[:, 0], lonlat[:, 1])

    cats = list(CATEGORY_WEIGHTS)
    cw = np.array([CATEGORY_WEIGHTS[c] for c in cats], dtype=float)
    cat_idx = rng.choice(len(cats), size=n, p=cw / cw.sum())
    deadline_h = {c.code: c.deadline_hours for c in request_categories()}
    deadline_s = np.array([deadline_h[c] * 3600 for c in cats])[cat_idx]
    texts = np.empty(n, dtype=object)
    pick = rng.random(n)
    for k, c in enumerate(cats):
        choices = np.array(REQUEST_TEXTS[c], dtype=object)
        mask = cat_idx == k
        texts[mask] = choices[(pick[mask] * len(choices)).astype(int)]

    day = 86_400
    is_open = rng.random(n) < OPEN_SHARE
    age_s = np.where(
        is_open, rng.uniform(600, 15 * day, size=n), rng.uniform(15 * day, 365 * day, size=n)
    ).astype(np.int64)
    now_s = np.datetime64(now.replace(tzinfo=None), "s")
    created = now_s - age_s.astype("timedelta64[s]")
    deadline = created + deadline_s.astype("timedelta64[s]")
    terminal = rng.choice(
        np.array(["closed", "rejected", "duplicate", "withdrawn"]),
        size=n,
        p=[0.92, 0.02, 0.03, 0.03],
    )
    status = np.where(is_open, OPEN_STATUSES[rng.integers(3, size=n)], terminal)
    escalated = is_open & (rng.random(n) < 0.1)
    owner = np.where(escalated, "community", "grid")
    deadline_now = np.where(
        escalated, deadline + (deadline_s * 2).astype("timedelta64[s]"), deadline
    )
    closed = status == "closed"
    resolve_s = np.minimum(rng.lognormal(np.log(deadline_s * 0.4), 0.8), 7 * day).astype(np.int64)
    resolved_at = created + resolve_s.astype("timedelta64[s]")
    closed_at = resolved_at + rng.uniform(600, 7 * day, size=n).astype("timedelta64[s]")
    ended = ~is_open
    end_at = np.where(
        closed, closed_at, created + rng.uniform(600, 3 * day, size=n).astype("timedelta64[s]")
    )
    rated = closed & (rng.random(n) < 0.7)
    rating = rng.choice(np.arange(1, 6), size=n, p=[0.02, 0.03, 0.10, 0.35, 0.50])

    def ts(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        out = np.char.add(np.datetime_as_string(values, unit="s"), "Z").astype(object)
        if mask is not None:
            out[~mask] = None
        return out

    updated = np.where(ended, end_at, created)
    district = layout.district_code

    def chunks(size: int = 100_000) -> Iterator[pd.DataFrame]:
        for a in range(0, n, size):
            b = min(a + size, n)
            ids = range(a + 1, b + 1)
            yield pd.DataFrame(
                {
                    "number": [f"SYN{district}{i:08d}" for i in ids],
                    "ticket_hash": [
                        hashlib.sha256(
                            f"minqing-synthetic:{seed}:{district}:{i}".encode()
                        ).hexdigest()
                        for i in ids
                    ],
                    "category": np.array(cats, dtype=object)[cat_idx[a:b]],
                    "text": texts[a:b],
                    "status": status[a:b],
                    "owner_level": owner[a:b],
                    "grid_id": _lookup(live_id, hit[a:b]),
                    "community_id": _lookup(live_comm, hit[a:b]),
                    "building_code": building_code[a:b],
                    "deadline_at": ts(deadline_now[a:b]),
                    "first_deadline_at": ts(deadline[a:b]),
                    "resolved_at": ts(resolved_at[a:b], closed[a:b]),
                    "closed_at": ts(end_at[a:b], ended[a:b]),
                    "rating": pd.Series(rating[a:b], dtype="Int64").where(rated[a:b]),
                    "source": SOURCE,
                    "geom": ewkb_hex(shapely.points(lonlat[a:b])),
                    "created_at": ts(created[a:b]),
                    "updated_at": ts(updated[a:b]),
                }
            )

    with _indexes_deferred(session, "requests", n):
        _copy_frames(session, "requests", chunks())
    return int(is_open.sum())
