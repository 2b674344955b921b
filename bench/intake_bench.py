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
   X-Forwarded-For the proxy would add: most come from light addresses (a pool of ≥ 1,000;
   full size: 1,367 used, at most 15 requests each; ``--quick`` has requests for 290) that
   each stay within the limit over the whole run, and ``limit_heavy`` clients send limit + 20
   each within one window, so exactly 20 of each must get 429 ``rate_limited`` (with
   Retry-After) and no other request may (the limit check; 429s are left out of the latency
   figures).
   The same load then goes to the floor (no limiter there);
4. every 201 is checked against an independent assignment of its point (``geo.assign``
   over the live grids read from the database; community polygons for triage): its grid
   code must equal it; a point outside every community must get 422
   ``outside_jurisdiction`` (counted separately, not an error);
5. bulk: writes a CSV of historical requests (1M; ``--quick``: 20k) and times
   ``layers.importers.requests_bulk.import_requests`` on top of the existing rows, then
   re-imports it (must insert nothing).

Prints req/s, p50 / p99, errors, mismatches and the ratios to the floor; appends a dated
section to ``bench/RESULTS.md`` (``MINQING_BENCH_RESULTS`` overrides); the last stdout line is
one JSON object. Target: 300 req/s sustained, p99 ≤ 50 ms, zero errors and mismatches, the
429s as the limit predicts; bulk ≥ 100,000 rows/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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
from data.synthetic import generate_district, live_grids
from geo.assign import GridIndex
from layers.catalogues import request_categories
from layers.db import Database
from layers.grids.repo import current_generation
from layers.ratelimits.service import Rule, hit, parse_rule
from web.ratelimit import DEFAULTS, INTAKE_RATE_LIMIT

logger = logging.getLogger(__name__)

TARGET_RATE = 300.0
TARGET_P99_MS = 50.0
TARGET_BULK_ROWS_PER_S = 100_000
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
TEXTS = ["楼道灯坏了好几天", "屋顶漏水需要维修", "独居老人需要定期探访", "<b>门禁</b>坏了 & 急"]
# the limit check: clients behind one trusted proxy, at the default intake limit
LIMIT_MIN_ADDRESSES = 1_000  # light clients: at least this many, each within the limit
LIMIT_EXTRA = 20  # a heavy client sends limit + this many in one window: this many 429s
LIMIT_MARGIN_S = 10.0  # a heavy client's sends are scheduled within window - this
LIMITER_KEYS = 1_000  # keys of the limiter's isolated timing


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


@dataclass(frozen=True)
class AddressPlan:
    """Who sends each intake request, as the trusted proxy reports it (X-Forwarded-For)."""

    xff: list[str]
    heavy: np.ndarray  # per request: its heavy client (0..), or -1 for a light one
    rule: Rule
    addresses: int
    light_max: int  # the most requests any light address sends over the whole run
    heavy_span_s: float  # each heavy client's sends are scheduled within this many seconds


def address_plan(n: int, rate: float, heavy_clients: int, seed: int) -> AddressPlan:
    """``heavy_clients`` clients send limit + ``LIMIT_EXTRA`` each, scheduled within
    window − ``LIMIT_MARGIN_S``; the other requests go round-robin (in shuffled order) to at
    least ``LIMIT_MIN_ADDRESSES`` light addresses, none of which reaches half the limit."""
    rule = parse_rule(DEFAULTS[INTAKE_RATE_LIMIT])
    rng = np.random.default_rng([seed, 31])
    per_heavy = rule.limit + LIMIT_EXTRA
    span = min(n, max(per_heavy, int((rule.window_s - LIMIT_MARGIN_S) * rate)))
    heavy = np.full(n, -1)
    for h in range(heavy_clients):
        start = int(rng.integers(0, n - span + 1))
        free = np.flatnonzero(heavy[start : start + span] == -1) + start
        if len(free) < per_heavy:
            raise ValueError(f"{n} requests are too few for {heavy_clients} heavy clients")
        heavy[rng.choice(free, per_heavy, replace=False)] = h
    light = np.flatnonzero(heavy == -1)
    pool = max(LIMIT_MIN_ADDRESSES, math.ceil(len(light) / max(1, rule.limit // 2)))
    owner = rng.permutation(len(light)) % pool
    xff = [""] * n
    for i, o in zip(light.tolist(), owner.tolist(), strict=True):
        xff[i] = f"198.18.{o // 256}.{o % 256}"  # RFC 2544's benchmarking range
    for i in np.flatnonzero(heavy >= 0).tolist():
        xff[i] = f"198.19.0.{int(heavy[i]) + 1}"
    return AddressPlan(
        xff=xff,
        heavy=heavy,
        rule=rule,
        addresses=len(set(xff)),
        light_max=int(np.bincount(owner).max()) if len(owner) else 0,
        heavy_span_s=round(span / rate, 1),
    )


def limit_check(result: dict[str, Any], plan: AddressPlan) -> dict[str, Any]:
    """429s against what the limit predicts over the whole run: each heavy client exactly
    (requests that reached the server) − limit, no light address any. A heavy client whose
    first send and last answer lie a window apart, or with a request of unknown fate (a
    transport error), makes the prediction unsure: said so, and the check fails."""
    status, sched = result["status"], result["sched"]
    sent_at, done_at = sched + result["lag"], sched + result["latency"]
    limited = status == 429
    per_client: list[dict[str, Any]] = []
    unsure = 0
    for h in range(int(plan.heavy.max()) + 1 if len(plan.heavy) else 0):
        mine = plan.heavy == h
        reached = mine & (status > 0)
        span = (
            float(np.nanmax(done_at[reached]) - np.nanmin(sent_at[reached]))
            if reached.any()
            else 0.0
        )
        unknown = int((mine & (status == -1)).sum())
        unsure += int(unknown > 0 or span >= plan.rule.window_s)
        per_client.append(
            {
                "sent": int(reached.sum()),
                "429": int((mine & limited).sum()),
                "predicted": max(0, int(reached.sum()) - plan.rule.limit),
                "span_s": round(span, 1),
            }
        )
    light_429 = int((limited & (plan.heavy < 0)).sum())
    got = sum(c["429"] for c in per_client) + light_429
    predicted = sum(c["predicted"] for c in per_client)
    ok = unsure == 0 and light_429 == 0 and all(c["429"] == c["predicted"] for c in per_client)
    retry_after_ok = bool(result.get("retry_after_ok", True))
    return {
        "rule": str(plan.rule),
        "requests": len(plan.xff),
        "addresses": plan.addresses,
        "light_max": plan.light_max,
        "heavy_clients": len(per_client),
        "heavy_each": plan.rule.limit + LIMIT_EXTRA,
        "heavy_span_s": plan.heavy_span_s,
        "got_429": got,
        "predicted_429": predicted,
        "light_429": light_429,
        "unsure_clients": unsure,
        "retry_after_ok": retry_after_ok,
        "per_heavy_client": per_client,
        "met": bool(ok and retry_after_ok),
    }


def limiter_cost(url: str, hits: int, seed: int) -> dict[str, Any]:
    """The limiter in isolation: ``hits`` hits over ``LIMITER_KEYS`` keys at the default rule,
    each as a request makes it (a fresh session, whose engine lends a connection for one
    autocommit statement), interleaved in rounds with SELECT 1 on a pooled connection in
    autocommit (a bare round trip by the same path); µs per call."""
    rule = parse_rule(DEFAULTS[INTAKE_RATE_LIMIT])
    rng = np.random.default_rng([seed, 41])
    keys = [f"198.18.{k // 256}.{k % 256}" for k in rng.permutation(LIMITER_KEYS).tolist()]

    def one_hit(database: Database, i: int) -> None:
        with database.session() as s:
            hit(
                session=s,
                bucket="bench.cost",
                key=keys[i % len(keys)],
                limit=rule.limit,
                window_s=rule.window_s,
            )

    def one_select(database: Database, i: int) -> None:
        with database.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("SELECT 1")).one()

    timings: dict[str, list[float]] = {"hit": [], "select1": []}
    rounds = 5
    with open_database(url) as database:
        for fn in (one_hit, one_select):  # warm the pool and the prepared statements
            for i in range(200):
                fn(database, i)
        for r in range(rounds):
            for name, fn in (("hit", one_hit), ("select1", one_select)):
                for i in range(hits // rounds):
                    t = time.perf_counter()
                    fn(database, r * (hits // rounds) + i)
                    timings[name].append(time.perf_counter() - t)
    out: dict[str, Any] = {"hits": hits, "keys": LIMITER_KEYS}
    for name, values in timings.items():
        us = np.array(values) * 1e6
        for q in (50, 90, 99):
            out[f"{name}_p{q}_us"] = round(float(np.percentile(us, q)))
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
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    args = {
        "bodies": bodies,
        "rate": rate,
        "path": path,
        "port": port,
        "threads": threads,
        "grace_s": grace_s,
        "xff": xff,
    }
    proc = ctx.Process(target=_load_worker, args=(args, send), daemon=True)
    proc.start()
    send.close()
    result = recv.recv()
    proc.join(timeout=30)
    return result


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


# --------------------------------------------------------------------------- bulk import


def write_bulk_csv(district: dict[str, Any], n: int, seed: int, path: Path) -> None:
    """``n`` historical requests in the district: closed / open / rejected / withdrawn /
    resolved, 70 % of the closed ones rated, times over the past year (+08:00)."""
    rng = np.random.default_rng([seed, 21])
    x0, y0, x1, y1 = shapely.total_bounds(district["grid_geoms"])
    union = shapely.union_all(district["community_geoms"])
    shapely.prepare(union)
    pts: list[np.ndarray] = []
    got = 0
    while got < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(n - got + 1000, 2))
        xy = xy[shapely.contains_xy(union, xy[:, 0], xy[:, 1])][: n - got]
        pts.append(xy)
        got += len(xy)
    xy = np.concatenate(pts)
    cats = np.array([c.code for c in request_categories()])
    now = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "s")
    created = now - rng.integers(16 * 86400, 365 * 86400, n).astype("timedelta64[s]")
    status = rng.choice(
        np.array(["closed", "open", "rejected", "withdrawn", "resolved"]),
        size=n,
        p=[0.85, 0.07, 0.03, 0.03, 0.02],
    )
    resolved = created + rng.integers(3600, 5 * 86400, n).astype("timedelta64[s]")
    closed = resolved + rng.integers(600, 7 * 86400, n).astype("timedelta64[s]")
    local = np.timedelta64(8 * 3600, "s")

    def stamp(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        s = np.char.add(np.datetime_as_string(values + local, unit="s"), "+08:00")
        return np.where(mask, s, "")

    done = np.isin(status, ["closed", "resolved"])
    ended = np.isin(status, ["closed", "rejected", "withdrawn"])
    rated = (status == "closed") & (rng.random(n) < 0.7)
    frame = pd.DataFrame(
        {
            "lon": xy[:, 0],
            "lat": xy[:, 1],
            "category": rng.choice(cats, size=n),
            "text": np.array(TEXTS, dtype=object)[rng.integers(len(TEXTS), size=n)],
            "created_at": stamp(created, np.ones(n, dtype=bool)),
            "status": status,
            "resolved_at": stamp(resolved, done),
            "closed_at": stamp(np.where(status == "closed", closed, resolved), ended),
            "rating": np.where(rated, rng.integers(1, 6, size=n).astype(str), ""),
        }
    )
    frame.to_csv(path, index=False)


def _request_counts(database: Database) -> tuple[int, int]:
    """(requests, request events) now in the database."""
    with database.session() as s:
        row = s.execute(
            text("SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM request_events)")
        ).one()
    return int(row[0]), int(row[1])


def bulk_bench(
    url: str, district: dict[str, Any], rows: int, seed: int, tmp: Path
) -> dict[str, Any]:
    """Time ``import requests`` of a ``rows``-row CSV on top of the existing requests, then its
    re-run (which must insert nothing)."""
    from layers.importers.requests_bulk import import_requests

    path = tmp / "historical_requests.csv"
    with Timer() as t_write:
        write_bulk_csv(district, rows, seed, path)
    with open_database(url) as database:
        existing, events_before = _request_counts(database)
        with database.session() as s, Timer() as t1:
            first = import_requests(session=s, path=path)
        with database.session() as s, Timer() as t2:
            second = import_requests(session=s, path=path)
        after, events_after = _request_counts(database)
    layer1, layer2 = first.layers["requests"], second.layers["requests"]
    return {
        "bulk_rows": rows,
        "bulk_existing_requests": existing,
        "bulk_csv_write_s": round(t_write.s, 1),
        "bulk_import_s": round(t1.s, 2),
        "bulk_rows_per_s": round(rows / t1.s),
        "bulk_inserted": layer1.inserted,
        "bulk_rejected": layer1.total_rejected,
        "bulk_events": events_after - events_before,
        "bulk_phases_s": {
            k: v for k, v in first.stats.items() if k.endswith("_s") and k != "rows_per_s"
        },
        "bulk_fk_checks": layer1.stats.get("fk_checks"),
        "bulk_rerun_s": round(t2.s, 2),
        "bulk_rerun_inserted": layer2.inserted,
        "bulk_requests_added": after - existing,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (runs in < 90 s)")
    parser.add_argument("--rate", type=float, help="offered requests per second")
    parser.add_argument("--duration", type=float, help="measured seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-load", action="store_true", help="only the bulk import")
    parser.add_argument("--skip-bulk", action="store_true", help="only the HTTP load")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sizes = dict(QUICK if args.quick else FULL)
    mode = "quick" if args.quick else "full"
    if args.rate:
        sizes["rate"] = args.rate
        mode += f"-rate{args.rate:g}"
    if args.duration:
        sizes["duration_s"] = args.duration
    figures: dict[str, Any] = {"bench": "intake", "mode": mode, "seed": args.seed}
    figures.update({k: sizes[k] for k in ("grids", "volunteers", "requests", "rate")})
    figures["warmup_s"], figures["duration_s"] = sizes["warmup_s"], sizes["duration_s"]
    with (
        Timer() as total,
        tempfile.TemporaryDirectory(prefix="minqing_intake_") as tmp,
        scratch_database("minqing_bench_intake") as url,
    ):
        versions = server_version(url)
        district = build_district(url, sizes, args.seed)
        figures["generate_s"] = district["generate_s"]
        figures["network_edges"] = district["summary"].network_edges
        if not args.skip_load:
            # intake, floor, distance_methods, offered_share
            figures.update(load_bench(url, district, sizes, args.seed, Path(tmp)))
        if not args.skip_bulk:
            figures.update(bulk_bench(url, district, sizes["bulk_rows"], args.seed, Path(tmp)))
    figures["total_s"] = round(total.s, 1)
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
        figures["ratio_p50"] = round(it["p50_ms"] / fl["p50_ms"], 2) if fl["p50_ms"] else None
        figures["ratio_p99"] = round(it["p99_ms"] / fl["p99_ms"], 2) if fl["p99_ms"] else None
        figures["ratio_rps"] = (
            round(it["achieved_rps"] / fl["achieved_rps"], 3) if fl["achieved_rps"] else None
        )
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
        lim, cost = figures["limits"], figures["limiter_cost"]
        limits_met = lim["met"]
        figure(
            "intake 429 rate_limited, whole run",
            f"{lim['got_429']} (predicted {lim['predicted_429']}; light addresses "
            f"{lim['light_429']})",
        )
        figure(
            "limiter hit in isolation p50 / p99",
            f"{cost['hit_p50_us']} / {cost['hit_p99_us']} µs (SELECT 1 by the same path "
            f"{cost['select1_p50_us']} / {cost['select1_p99_us']} µs)",
        )
        emit(
            f"rate limit {lim['rule']} per address through one trusted proxy, "
            f"{lim['addresses']:,} addresses: {'met' if limits_met else 'NOT met'}"
        )
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
            f"- rate limit (default {lim['rule']} per address, the app behind one trusted proxy: "
            f"each POST carries X-Forwarded-For): {lim['requests']:,} requests from "
            f"{lim['addresses']:,} addresses, {lim['heavy_clients']} heavy clients sending "
            f"{lim['heavy_each']} each within {lim['heavy_span_s']} s, every other address at "
            f"most {lim['light_max']} over the run; 429s {lim['got_429']}, predicted "
            f"{lim['predicted_429']} (per heavy client "
            f"{[c['429'] for c in lim['per_heavy_client']]}), at light addresses "
            f"{lim['light_429']}, unsure {lim['unsure_clients']}, Retry-After on every 429 "
            f"{lim['retry_after_ok']}: {'met' if limits_met else 'NOT met'}; {it['limited_429']} "
            "of them in the measured window, left out of its latency figures",
            f"- limiter in isolation ({cost['hits']:,} hits over {cost['keys']:,} keys, each "
            f"one autocommit statement on a pooled connection): p50 {cost['hit_p50_us']} µs, p90 "
            f"{cost['hit_p90_us']}, p99 {cost['hit_p99_us']}; SELECT 1 by the same path "
            f"{cost['select1_p50_us']} / {cost['select1_p90_us']} / {cost['select1_p99_us']} µs",
            f"- floor (1 ST_Covers + 1 INSERT + commit): {fl['achieved_rps']} req/s completed, p50 "
            f"{fl['p50_ms']} ms, p99 {fl['p99_ms']} ms, errors {fl['errors']}, mismatches "
            f"{fl['mismatches']}",
            f"- ratio intake / floor: p50 ×{figures['ratio_p50']}, p99 ×{figures['ratio_p99']}, "
            f"throughput {figures['ratio_rps']}; target {TARGET_RATE:g} req/s, p99 ≤ "
            f"{TARGET_P99_MS:g} ms: {verdict}",
        ]
    if "bulk_rows" in figures:
        figure("bulk import", figures["bulk_rows_per_s"], "rows/s")
        figure("bulk import time", figures["bulk_import_s"], "s")
        figure("bulk events written", figures["bulk_events"])
        figure("bulk re-run inserted", figures["bulk_rerun_inserted"])
        figures["bulk_target_met"] = figures["bulk_rows_per_s"] >= TARGET_BULK_ROWS_PER_S
        lines.append(
            f"- bulk `import requests`: {figures['bulk_rows']:,} rows on top of "
            f"{figures['bulk_existing_requests']:,} requests in {figures['bulk_import_s']} s = "
            f"{figures['bulk_rows_per_s']:,} rows/s ({figures['bulk_inserted']:,} inserted, "
            f"{figures['bulk_events']:,} events; phases {figures['bulk_phases_s']}; FK "
            f"{figures['bulk_fk_checks']}); re-run {figures['bulk_rerun_s']} s inserted "
            f"{figures['bulk_rerun_inserted']}; target ≥ {TARGET_BULK_ROWS_PER_S:,} rows/s "
            f"{'met' if figures['bulk_target_met'] else 'NOT met'}"
        )
        if figures["bulk_rerun_inserted"]:
            errors += 1
    publish(f"intake bench ({mode})", lines, figures)
    return 1 if (errors or mismatches or not limits_met) else 0


if __name__ == "__main__":
    sys.exit(main())
