"""Intake bench: open-loop POST /api/v1/requests against gunicorn, vs a floor; bulk import.

``python -m bench.intake_bench [--quick]`` in a scratch database (on ``DATABASE_URL`` or the
embedded server; dropped afterwards), default durability:

1. writes the synthetic district (``data.synthetic.generate_district``: 600 grids, 50k
   buildings, 100k volunteers, 1M historical requests, a ≥ 100k-edge walking network;
   ``--quick``: a small one) and takes ``GAP_GRIDS`` grids out of the live generation, so a
   few points fall in a community but in no grid (community triage);
2. times the rate limiter in isolation (``layers.ratelimits``: one hit as a request makes it,
   against SELECT 1 through the same path), then starts ``minqing serve --workers 2
   --escalate-every 0`` on a free loopback port behind one trusted proxy
   (``MINQING_TRUSTED_PROXIES=1``) at the DEFAULT intake limit (30/60 per address), with the
   bench-only floor endpoint on (``MINQING_BENCH_FLOOR=1``, ``web/bench_floor.py``: one
   ST_Covers, one INSERT, commit);
3. in a separate process, an open-loop load generator (threads, ``http.client``) sends POSTs
   at a fixed rate: a warm-up, then the measured window; latency runs from each request's
   SCHEDULED send time (no coordinated omission). Each intake POST carries the
   X-Forwarded-For the proxy would add (``bench.intake_limits``: ≥ 1,000 light addresses
   within the limit, ``limit_heavy`` clients over it by exactly 20 each, which must get 429
   with Retry-After; 429s are left out of the latency figures). The same load then goes to
   the floor (no limiter there);
4. every 201 is checked against an independent assignment of its point (``geo.assign``
   over the live grids read from the database; community polygons for triage): its grid
   code must equal it; a point outside every community must get 422
   ``outside_jurisdiction`` (counted separately, not an error);
5. bulk (``bench.intake_bulk``): a CSV of 1M historical requests (``--quick``: 20k) timed
   through ``import requests`` on top of the existing rows, then re-imported (inserts nothing).

Prints req/s, p50 / p99, errors, mismatches and the ratios to the floor; appends a dated
section to ``bench/RESULTS.md`` (``MINQING_BENCH_RESULTS`` overrides); the last stdout line is
one JSON object. Target: 300 req/s sustained, p99 ≤ 50 ms, zero errors and mismatches, the
429s as the limit predicts; bulk ≥ 100,000 rows/s.
"""

from __future__ import annotations

import http.client
import json
import logging
import sys
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bench.common import (
    Timer,
    app_server,
    bench_args,
    bench_workspace,
    emit,
    figure,
    load_parser,
    machine,
    machine_line,
    open_database,
    publish,
    ratio,
    run_in_process,
    server_version,
)
from bench.intake_bulk import TEXTS, bulk_bench, bulk_report
from bench.intake_limits import address_plan, limit_check, limit_report, limiter_cost
from data.synthetic import generate_district, live_grids
from geo.assign import GridIndex
from layers.catalogues import request_categories
from layers.grids.repo import current_generation
from web.ratelimit import DEFAULTS, INTAKE_RATE_LIMIT

logger = logging.getLogger(__name__)

TARGET_RATE = 300.0
TARGET_P99_MS = 50.0
FULL: dict[str, Any] = {
    "grids": 600,
    "buildings": 50_000,
    "volunteers": 100_000,
    "requests": 1_000_000,
    "network_edges_min": 100_000,
    "rate": 300.0,
    "warmup_s": 10.0,
    "duration_s": 60.0,
    "threads": 64,
    "grace_s": 15.0,
    "bulk_rows": 1_000_000,
    "limit_heavy": 10,
    "limiter_hits": 5_000,
}
QUICK: dict[str, Any] = {
    "grids": 48,
    "buildings": 2_000,
    "volunteers": 4_000,
    "requests": 20_000,
    "network_edges_min": 3_000,
    "rate": 40.0,
    "warmup_s": 3.0,
    "duration_s": 8.0,
    "threads": 16,
    "grace_s": 10.0,
    "bulk_rows": 20_000,
    "limit_heavy": 3,
    "limiter_hits": 2_000,
}
GAP_GRIDS = 2  # grids taken out of the live generation: their points go to community triage
TRIAGE_SHARE = 0.02
OUTSIDE_SHARE = 0.02


# --------------------------------------------------------------------------- the district


def build_district(url: str, sizes: dict[str, Any], seed: int) -> dict[str, Any]:
    """Write the synthetic district, open ``GAP_GRIDS`` gaps, and return what the checks need:
    live grid geometries and codes, community geometries, and the gap grids."""
    with open_database(url) as database:
        with database.session() as s:
            with Timer() as t:
                summary = generate_district(
                    session=s,
                    grids=sizes["grids"],
                    buildings=sizes["buildings"],
                    volunteers=sizes["volunteers"],
                    requests=sizes["requests"],
                    network_edges_min=sizes["network_edges_min"],
                    seed=seed,
                )
                s.commit()
            rng = np.random.default_rng([seed, 7])
            live = live_grids(s)
            gap = np.zeros(len(live), dtype=bool)
            gap[rng.choice(len(live), size=min(GAP_GRIDS, len(live) - 1), replace=False)] = True
            gap_ids = [int(i) for i in live["id"].to_numpy()[gap]]
            # a new generation without them, as a publish that removes two grids would be
            gen = current_generation(s) + 1
            s.execute(
                text("INSERT INTO generations (id, summary) VALUES (:g, CAST(:summary AS jsonb))"),
                {"g": gen, "summary": json.dumps({"source": "intake bench", "gaps": gap_ids})},
            )
            s.execute(
                text("UPDATE grids SET generation_high = :g WHERE id = ANY(:ids)"),
                {"g": gen, "ids": gap_ids},
            )
            s.commit()
            comm = s.execute(
                text(
                    "SELECT code, ST_AsBinary(geom) FROM areas WHERE level = 'community' "
                    "ORDER BY code"
                )
            ).all()
        # Measure a database in steady state, not one digesting a bulk load: vacuum and
        # analyse what was just written and flush it, so neither autovacuum nor the
        # checkpointer competes with the load for the two cores.
        with database.engine.connect() as c:
            c = c.execution_options(isolation_level="AUTOCOMMIT")
            c.execute(text("VACUUM (ANALYZE)"))
            try:
                c.execute(text("CHECKPOINT"))
            except DBAPIError as exc:  # needs superuser or pg_checkpoint on a server of yours
                logger.warning("no CHECKPOINT before the load: %s", exc.orig)
    # the live generation is now the one read above less the gaps
    return {
        "generate_s": round(t.s, 1),
        "summary": summary,
        "grid_geoms": live["geometry"].to_numpy()[~gap],
        "grid_codes": live["code"].to_numpy().astype(str)[~gap],
        "community_geoms": shapely.from_wkb([bytes(r[1]) for r in comm]),
        "community_codes": np.array([r[0] for r in comm]),
        "gap_geoms": live["geometry"].to_numpy()[gap],
    }


def bench_points(district: dict[str, Any], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of ``n`` points: most uniform in the grids' box, ``TRIAGE_SHARE`` in the gap
    grids, ``OUTSIDE_SHARE`` beyond the district (~10 % of its size away)."""
    rng = np.random.default_rng([seed, 11])
    geoms = district["grid_geoms"]
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    n_gap = round(n * TRIAGE_SHARE)
    n_out = round(n * OUTSIDE_SHARE)
    n_box = n - n_gap - n_out
    box = rng.uniform((x0, y0), (x1, y1), size=(n_box, 2))
    gap_xy: list[np.ndarray] = []
    got = 0
    gx0, gy0, gx1, gy1 = shapely.total_bounds(district["gap_geoms"])
    gap_union = shapely.union_all(district["gap_geoms"])
    while got < n_gap:
        xy = rng.uniform((gx0, gy0), (gx1, gy1), size=(4 * n_gap + 16, 2))
        xy = xy[shapely.contains_xy(gap_union, xy[:, 0], xy[:, 1])][: n_gap - got]
        gap_xy.append(xy)
        got += len(xy)
    w, h = x1 - x0, y1 - y0
    side = rng.integers(4, size=n_out)
    t = rng.uniform(0, 1, size=n_out)
    out = np.column_stack(
        [
            np.where(side < 2, x0 + t * w, np.where(side == 2, x0 - 0.1 * w, x1 + 0.1 * w)),
            np.where(side == 0, y0 - 0.1 * h, np.where(side == 1, y1 + 0.1 * h, y0 + t * h)),
        ]
    )
    xy = np.concatenate([box, *gap_xy, out])[rng.permutation(n)]
    return xy[:, 0], xy[:, 1]


def expected_outcome(district: dict[str, Any], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Per point: the grid code it must get, "" for community triage, None for 422."""
    grids = GridIndex(district["grid_geoms"], district["grid_codes"])
    hit = grids.assign(lon, lat)
    comms = GridIndex(district["community_geoms"], district["community_codes"])
    in_comm = comms.assign(lon, lat) >= 0
    out = np.full(len(lon), None, dtype=object)
    out[in_comm] = ""
    out[hit >= 0] = district["grid_codes"][hit[hit >= 0]]
    return out


# --------------------------------------------------------------------------- the server


def gunicorn(
    url: str, workers: int, log_path: Path, *, limited: bool = False
) -> AbstractContextManager[int]:
    """``minqing serve`` with the floor endpoint on, and either the intake rate limit lifted
    or (``limited``) the default limit behind one trusted proxy."""
    env = {"MINQING_BENCH_FLOOR": "1", "MINQING_INTAKE_RATE_LIMIT": "1000000000/1"}
    if limited:
        env["MINQING_INTAKE_RATE_LIMIT"] = DEFAULTS[INTAKE_RATE_LIMIT]
        env["MINQING_TRUSTED_PROXIES"] = "1"
    return app_server(url, log_path=log_path, workers=workers, env=env)


def _load_worker(args: dict[str, Any], conn_out: Any) -> None:
    """Child process: open-loop sender; sends back per-request (scheduled offset s, latency s,
    send lag s, HTTP status or -1, grid code / error code), and whether every 429 carried a
    Retry-After. ``args["xff"]``: per request, the X-Forwarded-For a proxy would add."""
    bodies: list[bytes] = args["bodies"]
    xff: list[str] | None = args.get("xff")
    retry_after_missing = [0]
    rate, path, port = args["rate"], args["path"], args["port"]
    n = len(bodies)
    sched = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    lag = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int32)
    answer: list[str | None] = [None] * n
    next_i = [0]
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Accept-Language": "en"}
    t0 = time.perf_counter() + 0.2
    stop_at = t0 + n / rate + args["grace_s"]

    def sender() -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                break
            due = t0 + i / rate
            if time.perf_counter() > stop_at:  # the server fell too far behind: never sent
                sched[i], latency[i], lag[i], status[i] = due - t0, np.inf, np.inf, -2
                answer[i] = "unsent"
                continue
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                sent_headers = headers if xff is None else {**headers, "X-Forwarded-For": xff[i]}
                conn.request("POST", path, bodies[i], sent_headers)
                resp = conn.getresponse()
                data = resp.read()
                code = resp.status
                if code == 429 and not resp.getheader("Retry-After"):
                    retry_after_missing[0] += 1
                if resp.will_close:
                    conn.close()
                    conn = None
                doc = json.loads(data) if data else {}
                if code == 201:
                    answer[i] = (doc.get("grid") or {}).get("code") or ""
                else:
                    answer[i] = (doc.get("error") or {}).get("code")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                code = -1
                answer[i] = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            done = time.perf_counter()
            sched[i] = due - t0
            latency[i] = done - due
            lag[i] = sent - due
            status[i] = code

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(args["threads"])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    conn_out.send(
        {
            "sched": sched,
            "latency": latency,
            "lag": lag,
            "status": status,
            "answer": answer,
            "retry_after_ok": retry_after_missing[0] == 0,
        }
    )
    conn_out.close()


def run_load(
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    rate: float,
    threads: int,
    grace_s: float,
    xff: list[str] | None = None,
) -> dict[str, Any]:
    """Run the load generator in a separate process and collect its per-request records.

    Requests still unsent ``grace_s`` after the last scheduled time are recorded as unsent
    (latency infinite), so an overloaded server cannot stretch the run without bound."""
    args = {
        "bodies": bodies,
        "rate": rate,
        "path": path,
        "port": port,
        "threads": threads,
        "grace_s": grace_s,
        "xff": xff,
    }
    return run_in_process(_load_worker, args)


def summarise(
    result: dict[str, Any],
    expected: np.ndarray,
    *,
    warmup_s: float,
    duration_s: float,
    rate: float,
    may_be_limited: np.ndarray | None = None,
) -> dict[str, Any]:
    """Figures of the measured window: latency, errors and checks over the requests scheduled
    in it; throughput = answers completed inside it (whenever they were scheduled, so an
    overloaded server still working off the warm-up's backlog is credited for that work).
    A 429 to a request in ``may_be_limited`` (a heavy client's) is neither an error nor in
    the latency figures (``limit_check`` counts them); any other 429 is an error."""
    sched, latency, status = result["sched"], result["latency"], result["status"]
    answer = np.array(result["answer"], dtype=object)
    created_all = status == 201
    refused_all = (status == 422) & (answer == "outside_jurisdiction")  # expected, not an error
    answered_all = created_all | refused_all
    limited_all = (status == 429) & (
        may_be_limited if may_be_limited is not None else np.zeros(len(status), dtype=bool)
    )
    measured = sched >= warmup_s - 1e-9
    st, lat_s, ans, exp = status[measured], latency[measured], answer[measured], expected[measured]
    created, refused = created_all[measured], refused_all[measured]
    answered, limited = answered_all[measured], limited_all[measured]
    expected_outside = np.array([e is None for e in exp])
    mismatches = int(
        (created & (expected_outside | (ans != np.where(expected_outside, "", exp)))).sum()
        + (refused & ~expected_outside).sum()
    )
    unsent = st == -2
    failed = ~answered & ~unsent & ~limited
    errors = int(failed.sum())
    done_all = sched + latency
    completed = int(
        (answered_all & (done_all >= warmup_s) & (done_all < warmup_s + duration_s)).sum()
    )
    ms = lat_s[answered | unsent] * 1000.0  # unsent count as infinitely late
    # worst latency per 10 s of schedule, to tell a transient stall from a steady backlog
    edges = np.arange(warmup_s, warmup_s + duration_s, 10.0)
    worst_by_10s = [
        round(float(np.nanmax(latency[m])) * 1000.0, 1) if m.any() else None
        for m in ((sched >= e) & (sched < e + 10.0) for e in edges)
    ]
    lag_ms = result["lag"][measured][~unsent] * 1000.0
    return {
        "sent": int(measured.sum()),
        "created": int(created.sum()),
        "triage": int((created & (ans == "")).sum()),
        "outside_422": int(refused.sum()),
        "limited_429": int(limited.sum()),
        "errors": errors,
        "unsent": int(unsent.sum()),
        "error_kinds": dict(
            Counter(f"{s}:{a}" for s, a in zip(st[failed], ans[failed], strict=True))
        ),
        "mismatches": mismatches,
        "achieved_rps": round(completed / duration_s, 1),
        "answered_in_time_share": round(
            float((answered | limited).sum()) / max(int(measured.sum()), 1), 4
        ),
        "offered_rps": rate,
        "p50_ms": round(float(np.percentile(ms, 50, method="higher")), 2) if len(ms) else None,
        "p90_ms": round(float(np.percentile(ms, 90, method="higher")), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99, method="higher")), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
        "max_send_lag_ms": round(float(np.nanmax(lag_ms)), 2) if len(lag_ms) else None,
        "worst_ms_by_10s": worst_by_10s,
    }


def make_bodies(lon: np.ndarray, lat: np.ndarray, seed: int) -> tuple[list[bytes], list[bytes]]:
    """(intake bodies, floor bodies) for the same points."""
    rng = np.random.default_rng([seed, 12])
    cats = [c.code for c in request_categories()]
    cat = rng.integers(len(cats), size=len(lon))
    txt = rng.integers(len(TEXTS), size=len(lon))
    intake = [
        json.dumps(
            {"lon": float(x), "lat": float(y), "category": cats[c], "text": TEXTS[t]},
            ensure_ascii=False,
        ).encode()
        for x, y, c, t in zip(lon, lat, cat, txt, strict=True)
    ]
    floor = [
        json.dumps({"lon": float(x), "lat": float(y)}).encode()
        for x, y in zip(lon, lat, strict=True)
    ]
    return intake, floor


def load_bench(
    url: str, district: dict[str, Any], sizes: dict[str, Any], seed: int, log_dir: Path
) -> dict[str, Any]:
    """Intake and floor under the same open-loop load, in the same gunicorn."""
    rate, warm, dur = sizes["rate"], sizes["warmup_s"], sizes["duration_s"]
    n = round(rate * (warm + dur))
    lon, lat = bench_points(district, n, seed)
    expected = expected_outcome(district, lon, lat)
    intake_bodies, floor_bodies = make_bodies(lon, lat, seed)
    floor_expected = np.array([e if e is not None else "" for e in expected], dtype=object)
    plan = address_plan(n, rate, sizes["limit_heavy"], seed)
    out: dict[str, Any] = {"limiter_cost": limiter_cost(url, sizes["limiter_hits"], seed)}
    with gunicorn(url, 2, log_dir / "gunicorn.log", limited=True) as port:
        for key, path, bodies, exp, xff in (
            ("intake", "/api/v1/requests", intake_bodies, expected, plan.xff),
            ("floor", "/bench/floor", floor_bodies, floor_expected, None),
        ):
            res = run_load(
                port,
                path,
                bodies,
                rate=rate,
                threads=sizes["threads"],
                grace_s=sizes["grace_s"],
                xff=xff,
            )
            heavy = plan.heavy >= 0 if xff is not None else None
            out[key] = summarise(
                res, exp, warmup_s=warm, duration_s=dur, rate=rate, may_be_limited=heavy
            )
            if xff is not None:
                out["limits"] = limit_check(res, plan)
    with open_database(url) as database, database.session() as s:
        out["distance_methods"] = dict(
            s.execute(
                text(
                    "SELECT distance_method, count(DISTINCT request_id) FROM request_offers "
                    "GROUP BY 1"
                )
            ).all()
        )
        out["offered_share"] = round(
            float(
                s.scalar(
                    text(
                        "SELECT avg((EXISTS (SELECT 1 FROM request_offers o "
                        "WHERE o.request_id = r.id))::int) FROM requests r "
                        "WHERE r.source = 'api' AND r.grid_id IS NOT NULL"
                    )
                )
                or 0.0
            ),
            3,
        )
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = load_parser(
        "python -m bench.intake_bench",
        __doc__,
        quick="small sizes (runs in < 90 s)",
        rate="offered requests per second",
    )
    parser.add_argument("--skip-load", action="store_true", help="only the bulk import")
    parser.add_argument("--skip-bulk", action="store_true", help="only the HTTP load")
    args, sizes, mode, figures = bench_args(parser, argv, bench="intake", quick=QUICK, full=FULL)
    with bench_workspace("intake", figures) as (url, tmp):
        versions = server_version(url)
        district = build_district(url, sizes, args.seed)
        figures["generate_s"] = district["generate_s"]
        figures["network_edges"] = district["summary"].network_edges
        if not args.skip_load:
            # intake, floor, distance_methods, offered_share
            figures.update(load_bench(url, district, sizes, args.seed, tmp))
        if not args.skip_bulk:
            figures.update(bulk_bench(url, district, sizes["bulk_rows"], args.seed, tmp))
    host = machine()
    figures["load_1m_end"] = host["load_1m"]

    emit(f"intake bench ({mode}): {sizes['grids']} grids, {sizes['volunteers']:,} volunteers, "
         f"{sizes['requests']:,} historical requests")  # fmt: skip
    lines = [
        machine_line(host, versions),
        f"- district: {sizes['grids']} grids ({GAP_GRIDS} taken out → triage), "
        f"{sizes['buildings']:,} buildings, {sizes['volunteers']:,} volunteers, "
        f"{sizes['requests']:,} historical requests, {figures['network_edges']:,} network "
        f"edges (generated in {figures['generate_s']} s)",
    ]
    errors = mismatches = 0
    limits_met = True
    if "intake" in figures:
        it, fl = figures["intake"], figures["floor"]
        errors = it["errors"] + fl["errors"]
        mismatches = it["mismatches"] + fl["mismatches"]
        figures["ratio_p50"] = ratio(it["p50_ms"], fl["p50_ms"])
        figures["ratio_p99"] = ratio(it["p99_ms"], fl["p99_ms"])
        figures["ratio_rps"] = ratio(it["achieved_rps"], fl["achieved_rps"], 3)
        figures["target_met"] = bool(
            it["achieved_rps"] >= 0.99 * TARGET_RATE
            and it["p99_ms"] is not None
            and it["p99_ms"] <= TARGET_P99_MS
            and it["errors"] == 0
            and it["unsent"] == 0
            and it["mismatches"] == 0
        )
        for name, d in (("intake POST /api/v1/requests", it), ("floor POST /bench/floor", fl)):
            figure(f"{name}: achieved", d["achieved_rps"], f"req/s of {d['offered_rps']:g}")
            figure(f"{name}: p50", d["p50_ms"], "ms")
            figure(f"{name}: p99", d["p99_ms"], "ms")
            figure(f"{name}: errors", d["errors"])
            figure(f"{name}: unsent (server too far behind)", d["unsent"])
            figure(f"{name}: mismatches", d["mismatches"])
        figure("intake 422 outside_jurisdiction (expected)", it["outside_422"])
        figure("intake community triage", it["triage"])
        limits_met = figures["limits"]["met"]
        limit_lines = limit_report(figures["limits"], figures["limiter_cost"], it["limited_429"])
        figure("ratio to floor p50 / p99", f"{figures['ratio_p50']} / {figures['ratio_p99']}")
        verdict = "met" if figures["target_met"] else "NOT met"
        emit(f"target {TARGET_RATE:g} req/s with p99 ≤ {TARGET_P99_MS:g} ms, 0 errors: {verdict}")
        lines += [
            f"- load: open loop, {sizes['rate']:g} req/s offered, {sizes['warmup_s']:g} s "
            f"warm-up + {sizes['duration_s']:g} s measured, {sizes['threads']} sender threads in "
            "a separate process, latency from the scheduled send time; gunicorn 2 sync "
            "workers on loopback, deadline job off",
            f"- intake: {it['achieved_rps']} req/s completed in the measured window; of the "
            f"requests scheduled in it {100 * it['answered_in_time_share']:.1f} % answered, "
            f"p50 {it['p50_ms']} ms, p90 "
            f"{it['p90_ms']} ms, p99 {it['p99_ms']} ms, max {it['max_ms']} ms; {it['created']} "
            f"201 ({it['triage']} triage), {it['outside_422']} expected 422 outside, errors "
            f"{it['errors']} {it['error_kinds'] or ''}, unsent {it['unsent']} (latency "
            f"counted infinite), mismatches {it['mismatches']}; worst latency per 10 s "
            f"{it['worst_ms_by_10s']} ms; offers "
            f"{figures['distance_methods']}",
            *limit_lines,
            f"- floor (1 ST_Covers + 1 INSERT + commit): {fl['achieved_rps']} req/s completed, p50 "
            f"{fl['p50_ms']} ms, p99 {fl['p99_ms']} ms, errors {fl['errors']}, mismatches "
            f"{fl['mismatches']}",
            f"- ratio intake / floor: p50 ×{figures['ratio_p50']}, p99 ×{figures['ratio_p99']}, "
            f"throughput {figures['ratio_rps']}; target {TARGET_RATE:g} req/s, p99 ≤ "
            f"{TARGET_P99_MS:g} ms: {verdict}",
        ]
    if "bulk_rows" in figures:
        line, bulk_errors = bulk_report(figures)
        lines.append(line)
        errors += bulk_errors
    publish(f"intake bench ({mode})", lines, figures)
    return 1 if (errors or mismatches or not limits_met) else 0


if __name__ == "__main__":
    sys.exit(main())
