"""The intake bench's rate limit: who sends each request through the trusted proxy, what the
limit then predicts, and the limiter's cost in isolation.

At the DEFAULT intake limit, behind one trusted proxy (``MINQING_TRUSTED_PROXIES=1``), each
intake POST carries the X-Forwarded-For the proxy would add: most come from light addresses
(a pool of at least ``LIMIT_MIN_ADDRESSES``) that each stay within the limit over the whole
run, and ``heavy_clients`` clients send limit + ``LIMIT_EXTRA`` each within one window, so
exactly ``LIMIT_EXTRA`` of each must get 429 ``rate_limited`` (with Retry-After) and no other
request may.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text

from bench.common import emit, figure, open_database
from layers.db import Database
from layers.ratelimits.service import Rule, hit, parse_rule
from web.ratelimit import DEFAULTS, INTAKE_RATE_LIMIT

# the limit check: clients behind one trusted proxy, at the default intake limit
LIMIT_MIN_ADDRESSES = 1_000  # light clients: at least this many, each within the limit
LIMIT_EXTRA = 20  # a heavy client sends limit + this many in one window: this many 429s
LIMIT_MARGIN_S = 10.0  # a heavy client's sends are scheduled within window - this
LIMITER_KEYS = 1_000  # keys of the limiter's isolated timing


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


def limit_report(lim: dict[str, Any], cost: dict[str, Any], limited_in_window: int) -> list[str]:
    """Print the limit check (``lim``, from :func:`limit_check`) and the limiter's cost
    (``cost``, from :func:`limiter_cost`); return their two results lines
    (``limited_in_window``: the 429s among the requests of the measured window)."""
    figure(
        "intake 429 rate_limited, whole run",
        f"{lim['got_429']} (predicted {lim['predicted_429']}; light addresses {lim['light_429']})",
    )
    figure(
        "limiter hit in isolation p50 / p99",
        f"{cost['hit_p50_us']} / {cost['hit_p99_us']} µs (SELECT 1 by the same path "
        f"{cost['select1_p50_us']} / {cost['select1_p99_us']} µs)",
    )
    emit(
        f"rate limit {lim['rule']} per address through one trusted proxy, "
        f"{lim['addresses']:,} addresses: {'met' if lim['met'] else 'NOT met'}"
    )
    return [
        f"- rate limit (default {lim['rule']} per address, the app behind one trusted proxy: "
        f"each POST carries X-Forwarded-For): {lim['requests']:,} requests from "
        f"{lim['addresses']:,} addresses, {lim['heavy_clients']} heavy clients sending "
        f"{lim['heavy_each']} each within {lim['heavy_span_s']} s, every other address at "
        f"most {lim['light_max']} over the run; 429s {lim['got_429']}, predicted "
        f"{lim['predicted_429']} (per heavy client "
        f"{[c['429'] for c in lim['per_heavy_client']]}), at light addresses "
        f"{lim['light_429']}, unsure {lim['unsure_clients']}, Retry-After on every 429 "
        f"{lim['retry_after_ok']}: {'met' if lim['met'] else 'NOT met'}; {limited_in_window} "
        "of them in the measured window, left out of its latency figures",
        f"- limiter in isolation ({cost['hits']:,} hits over {cost['keys']:,} keys, each "
        f"one autocommit statement on a pooled connection): p50 {cost['hit_p50_us']} µs, p90 "
        f"{cost['hit_p90_us']}, p99 {cost['hit_p99_us']}; SELECT 1 by the same path "
        f"{cost['select1_p50_us']} / {cost['select1_p90_us']} / {cost['select1_p99_us']} µs",
    ]
