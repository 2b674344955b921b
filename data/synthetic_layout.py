"""Synthetic district geometry (pure, no database): the area hierarchy, grids, buildings and
walking network of a seeded district, built in the local UTM zone (metres).

Geometry is built bottom-up so that nesting and tiling are exact by construction:

1. grid seeds on a jittered lattice (rows north to south, ``grids`` seeds in all);
2. their Voronoi edges, clipped to the district rectangle, are densified and perturbed once
   per shared edge (both neighbours see the same wiggly line), then polygonised into grids;
3. communities are blocks of lattice rows × columns (unions of their grids), streets blocks
   of communities, the district the union of everything;
4. codes follow DESIGN §2 (``geo.codes.grid_sequence``: north first, then west first).

Buildings are small rectangles strictly inside one grid. ``data.synthetic`` writes it all.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from geo.codes import grid_code, grid_sequence
from geo.crs import utm_crs_for_lonlat
from geo.households import estimate_households

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

LEVEL_CHOICES = np.array([1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 6, 7, 9, 11, 18])  # mean ≈ 5.8
NON_RESIDENTIAL_TYPES = np.array(["commercial", "school", "office", "retail", "public"])


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
