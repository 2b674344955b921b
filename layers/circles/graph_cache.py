"""The walking graph of the current network version, built once and cached per worker.

DESIGN §5: caches held by a worker are keyed by version and checked on every request, so a
network import through one worker is seen by all. ``get`` reads the current
``network_versions`` id (one indexed query) and rebuilds only when it changed; ``rebuild``
forces it. Venue and building snaps are cached beside the graph, keyed by their coordinates,
so repeated requests do not snap the same points again; ``snap_points_memo`` memoises
single points (volunteer homes) by their coordinates.

A caller that already read the version in one of its own queries passes it to ``get`` and
saves the round trip.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import pyproj
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import utm_crs_for_lonlat
from geo.walk import Snap, WalkGraph, build_walk_graph, snap_points

logger = logging.getLogger(__name__)

#: points memoised by ``snap_points_memo`` per graph (a district's volunteers fit)
POINT_SNAP_MEMO = 250_000


@dataclass
class LoadedGraph:
    """A walking graph in the network's UTM zone, with lon/lat <-> metres transformers."""

    version: int
    graph: WalkGraph
    crs: pyproj.CRS
    to_xy: pyproj.Transformer
    to_lonlat: pyproj.Transformer
    _snaps: dict[tuple, Snap] = field(default_factory=dict)
    _point_snaps: dict[tuple, tuple] = field(default_factory=dict)

    def xy(self, lonlat: np.ndarray) -> np.ndarray:
        """Project (k, 2) lon/lat to (k, 2) metres."""
        arr = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        x, y = self.to_xy.transform(arr[:, 0], arr[:, 1])
        return np.column_stack([x, y])

    def geom_to_lonlat(self, geom):
        """A projected shapely geometry back in lon/lat."""
        return shapely.transform(
            geom, lambda c: np.column_stack(self.to_lonlat.transform(c[:, 0], c[:, 1]))
        )

    def snap_lonlat(
        self, lonlat: np.ndarray, *, max_snap_m: float, key: tuple | None = None
    ) -> Snap:
        """Snap lon/lat points; with ``key`` the result is memoised (bounded) for this version."""
        if key is not None:
            cached = self._snaps.get((key, max_snap_m))
            if cached is not None:
                return cached
        snap = snap_points(self.graph, self.xy(lonlat), max_snap_m=max_snap_m)
        if key is not None:
            if len(self._snaps) > 256:
                self._snaps.clear()
            self._snaps[(key, max_snap_m)] = snap
        return snap

    def snap_points_memo(self, lonlat: np.ndarray, *, max_snap_m: float) -> Snap:
        """Snap lon/lat points, memoising each one by its coordinates for this version: homes
        of the same volunteers are offered again and again, snapping them once is enough."""
        arr = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        memo = self._point_snaps
        keys = [(x, y, max_snap_m) for x, y in arr.tolist()]
        found = [memo.get(key) for key in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            snap = snap_points(self.graph, self.xy(arr[missing]), max_snap_m=max_snap_m)
            if len(memo) + len(missing) > POINT_SNAP_MEMO:
                memo.clear()
            for j, i in enumerate(missing):
                found[i] = memo[keys[i]] = (
                    snap.edge[j],
                    snap.offset_m[j],
                    snap.snap_m[j],
                    *snap.point_xy[j],
                    *snap.snapped_xy[j],
                )
        cols = np.array(found, dtype=np.float64).reshape(-1, 7)
        return Snap(cols[:, 0].astype(np.int64), cols[:, 1], cols[:, 2], cols[:, 3:5], cols[:, 5:7])


def current_version(session: Session) -> int | None:
    return session.execute(text("SELECT max(id) FROM network_versions")).scalar()


def load_graph(session: Session) -> LoadedGraph | None:
    """Read the stored network and build its graph; None when there is no network."""
    version = current_version(session)
    if version is None:
        return None
    rows = session.execute(
        text(
            "SELECT id, source, target, length_m, ST_AsBinary(geom) FROM network_edges "
            "WHERE NOT ST_IsEmpty(geom) ORDER BY id"
        )
    ).all()
    if not rows:
        return None
    edge_ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    src = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    dst = np.fromiter((r[2] for r in rows), np.int64, len(rows))
    length = np.fromiter((r[3] for r in rows), np.float64, len(rows))
    geoms = shapely.from_wkb([bytes(r[4]) for r in rows])
    coords = shapely.get_coordinates(geoms)
    crs = utm_crs_for_lonlat(coords[:, 0], coords[:, 1])
    to_xy = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x, y = to_xy.transform(coords[:, 0], coords[:, 1])
    geoms_xy = shapely.set_coordinates(geoms.copy(), np.column_stack([x, y]))
    graph = build_walk_graph(src, dst, geoms_xy, edge_length_m=length, edge_ids=edge_ids)
    logger.info(
        "walking graph v%s: %d nodes, %d edges in %s", version, graph.n_nodes, graph.n_edges, crs
    )
    return LoadedGraph(version, graph, crs, to_xy, to_lonlat)


class GraphCache:
    """Per-worker cache of the current network version's graph (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, LoadedGraph] = {}

    @staticmethod
    def _db_key(session: Session) -> str:
        bind = session.get_bind()
        return str(getattr(bind, "engine", bind).url)

    def get(self, session: Session, version: int | None = None) -> LoadedGraph | None:
        """The graph of the current version (rebuilt if the version changed), or None.

        ``version``: the current ``network_versions`` id when the caller just read it."""
        if version is None:
            version = current_version(session)
        if version is None:
            return None
        key = self._db_key(session)
        entry = self._entries.get(key)
        if entry is not None and entry.version == version:
            return entry
        with self._lock:  # one build per version, however many threads ask at once
            entry = self._entries.get(key)
            if entry is not None and entry.version == version:
                return entry
            return self._build(session, key)

    def rebuild(self, session: Session) -> LoadedGraph | None:
        """Build the graph of the current version now, replacing the cached one."""
        key = self._db_key(session)
        with self._lock:
            return self._build(session, key)

    def _build(self, session: Session, key: str) -> LoadedGraph | None:
        loaded = load_graph(session)
        if loaded is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = loaded
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = GraphCache()


def get_graph(session: Session, version: int | None = None) -> LoadedGraph | None:
    """The current walking graph for this worker (see ``GraphCache.get``)."""
    return CACHE.get(session, version)


def rebuild(session: Session) -> LoadedGraph | None:
    """Explicitly rebuild this worker's walking graph from the stored network."""
    return CACHE.rebuild(session)
