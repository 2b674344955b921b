"""Actions bench: the workflow actions under open-loop load, checked for double effects.

``python -m bench.actions_bench [--quick]`` in a scratch database (on ``DATABASE_URL`` or the
embedded server; dropped afterwards), default durability:

1. the synthetic district of the intake bench (``bench.intake_bench.build_district``: 600
   grids, 50k buildings, 100k volunteers, 1M historical requests; ``--quick``: a small one);
2. ``minqing serve --workers 4 --escalate-every 0`` with the bench floor endpoints on (an
   action is ~15 short statements, so a sync worker waits on PostgreSQL most of its time: 2
   workers per core let one compute while the other waits — gunicorn's own advice is 2–4
   per core; the intake bench keeps 2, its one statement leaves little to overlap);
3. setup, not timed (``bench.actions_setup``): fresh requests submitted through the API, the
   accounts the plan needs (grid leaders, community staff, volunteers) with their tokens, and
   the claims some units start from;
4. the plan (``bench.actions_plan``): 100 actions/s (``--quick``: 30) for a warm-up plus 60 s
   (``--quick``: 10 s) in the fixed mix claim 30 %, resolve 20 %, reassign 15 %, escalate
   10 %, decline_offer / give_back 10 %, reject / mark_duplicate 10 %, reply 5 %; 14 % of
   the actions in contended pairs (two actors, one request, one scheduled instant: claim vs
   claim, claim vs reassign, resolve vs escalate, escalate vs escalate, reject vs
   mark_duplicate);
5. the load from a separate process (``bench.actions_load``), latency from each action's
   SCHEDULED send time; then the model check from the database (``bench.actions_check``);
6. the same schedule against the floor, ``POST /bench/floor/action``: SELECT … FOR UPDATE of
   the request row + one UPDATE + one event-shaped INSERT + commit.

Prints throughput, p50 / p99 / max per action and overall, errors (5xx, failed, unsent),
the model's findings, the floor and the ratios; appends a dated section to
``bench/RESULTS.md`` (``MINQING_BENCH_RESULTS`` overrides); the last stdout line is one JSON
object. Target: p99 ≤ 50 ms at the offered rate, 0 errors, 0 double effects. Staff send the
version their page showed as If-Match (the leader and staff pages do), volunteers none.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from bench.actions_check import (
    Outcome,
    check,
    events_after,
    install_clock,
    remove_clock,
    snapshot,
)
from bench.actions_load import run_load, summarise
from bench.actions_plan import MIX, PAIRS, Plan, make_plan
from bench.actions_setup import (
    create_accounts,
    login,
    page_versions,
    preclaim,
    read_world,
    submit_pool,
)
from bench.common import (
    Timer,
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
    server_version,
)
from bench.intake_bench import build_district, gunicorn

logger = logging.getLogger(__name__)

TARGET_P99_MS = 50.0
CONTENDED_SHARE = 0.14  # of the actions, in pairs (the target asks for at least 10 %)
POOL_SPARE = 1.2  # requests submitted per unit the plan needs
FULL: dict[str, Any] = {
    "grids": 600,
    "buildings": 50_000,
    "volunteers": 100_000,
    "requests": 1_000_000,
    "network_edges_min": 100_000,
    "rate": 100.0,
    "warmup_s": 10.0,
    "duration_s": 60.0,
    "threads": 32,
    "grace_s": 15.0,
    "workers": 4,
}
QUICK: dict[str, Any] = {
    "grids": 48,
    "buildings": 2_000,
    "volunteers": 4_000,
    "requests": 20_000,
    "network_edges_min": 3_000,
    "rate": 30.0,
    "warmup_s": 3.0,
    "duration_s": 10.0,
    "threads": 16,
    "grace_s": 10.0,
    "workers": 4,
}


def shots_of(
    plan: Plan, tokens: dict[str, str], versions: dict[int, str]
) -> tuple[list[tuple[float, str, bytes, dict[str, str]]], list[str]]:
    """(the load's shots in schedule order, the action of each); staff send the version
    their page showed (If-Match), volunteers none."""
    shots, actions = [], []
    for u in plan.units:
        for s in u.shots:
            headers = {
                "Content-Type": "application/json",
                "Accept-Language": "en",
                "Authorization": f"Bearer {tokens[s.actor]}",
            }
            if s.volunteer_id is None:
                headers["If-Match"] = f'"{versions[u.request_id]}"'
            body = json.dumps(s.body, ensure_ascii=False).encode()
            shots.append((u.due_s, f"/api/v1/requests/{u.request_id}/{s.action}", body, headers))
            actions.append(s.action)
    return shots, actions


def floor_shots(plan: Plan) -> list[tuple[float, str, bytes, dict[str, str]]]:
    """The same schedule against the floor (same requests, so pairs contend there too)."""
    headers = {"Content-Type": "application/json", "Accept-Language": "en"}
    return [
        (
            u.due_s,
            "/bench/floor/action",
            json.dumps({"request_id": u.request_id, "action": s.action}).encode(),
            headers,
        )
        for u in plan.units
        for s in u.shots
    ]


def load_bench(
    url: str, district: dict[str, Any], sizes: dict[str, Any], seed: int, log_dir: Path
) -> dict[str, Any]:
    """Setup, the actions under load, the model check, the floor under the same schedule."""
    rate, warm, dur = sizes["rate"], sizes["warmup_s"], sizes["duration_s"]
    n_actions = round(rate * (warm + dur))
    units_needed = n_actions - math.ceil(n_actions * CONTENDED_SHARE / 2)
    out: dict[str, Any] = {}
    workers = sizes["workers"]
    with open_database(url) as database, gunicorn(url, workers, log_dir / "gunicorn.log") as port:
        with Timer() as t_setup:
            ids = submit_pool(port, district, math.ceil(units_needed * POOL_SPARE) + 20, seed)
            world = read_world(database, ids)
            plan = make_plan(
                world, n_actions, rate=rate, contended_share=CONTENDED_SHARE, seed=seed
            )
            users = create_accounts(database, plan, world)
            tokens = login(port, sorted(plan.accounts()))
            failed = preclaim(port, plan, tokens)
            with database.engine.connect() as c:
                c = c.execution_options(isolation_level="AUTOCOMMIT")
                c.execute(text("ANALYZE requests, request_offers, request_events, volunteers"))
        out.update(
            setup_s=round(t_setup.s, 1),
            pool_submitted=len(ids),
            pool_usable=len(world.candidates),
            accounts=len(users),
            units=len(plan.units),
            actions=plan.actions,
            contended_share=plan.contended_share(),
            mix=plan.mix(),
            plan_short=plan.short,
            setup_claims_failed=len(failed),
        )
        request_ids = sorted({u.request_id for u in plan.units})
        volunteer_ids = sorted(
            {s.volunteer_id for u in plan.units for s in u.shots if s.volunteer_id}
            | {u.preclaim for u in plan.units if u.preclaim}
        )
        before = snapshot(database, request_ids, volunteer_ids)
        shots, actions = shots_of(plan, tokens, page_versions(database, request_ids))
        due = np.array([s[0] for s in shots])
        install_clock(database)
        res = run_load(port, shots, threads=sizes["threads"], grace_s=sizes["grace_s"])
        remove_clock(database)
        out["load"] = summarise(res, due, actions, warmup_s=warm, duration_s=dur, rate=rate)
        if (res["status"] >= 500).any():  # the log goes with the temporary directory: show it
            tail = (log_dir / "gunicorn.log").read_text(errors="replace").splitlines()[-60:]
            logger.warning("5xx answers; the end of the server log:\n%s", "\n".join(tail))
        after = snapshot(database, request_ids, volunteer_ids)
        events = events_after(database, request_ids, before.last_event_id)
        outcomes = [
            Outcome(int(st), str(code), float(sent), float(done))
            for st, code, sent, done in zip(
                res["status"], res["answer"], res["sent_wall"], res["done_wall"], strict=True
            )
        ]
        out["model"] = check(plan.units, outcomes, users, before, events, after)
        res = run_load(port, floor_shots(plan), threads=sizes["threads"], grace_s=sizes["grace_s"])
        floor = summarise(res, due, actions, warmup_s=warm, duration_s=dur, rate=rate)
        floor.pop("per_action")
        out["floor"] = floor
    return out


def report(
    figures: dict[str, Any], sizes: dict[str, Any], host: dict[str, Any], versions: str
) -> list[str]:
    """Print the figures; return the RESULTS.md lines."""
    ld, fl, md = figures["load"], figures["floor"], figures["model"]
    for name, d in (("actions POST /api/v1/requests/<id>/<action>", ld), ("floor", fl)):
        figure(f"{name}: achieved", d["achieved_rps"], f"actions/s of {d['offered_rps']:g}")
        figure(f"{name}: p50 / p99 / max", f"{d['p50_ms']} / {d['p99_ms']} / {d['max_ms']}", "ms")
        figure(f"{name}: errors (5xx, failed) / unsent", f"{d['errors']} / {d['unsent']}")
    for action, d in ld["per_action"].items():
        figure(
            f"  {action} (n={d['n']}): p50 / p99 / max",
            f"{d['p50_ms']} / {d['p99_ms']} / {d['max_ms']}",
            "ms",
        )
    figure("contended share of the actions", figures["contended_share"])
    figure("double effects", md["double_effects"])
    figure("other model violations", md["violations"])
    figure("pairs", json.dumps(md["pairs"]))
    figure("ratio to floor p50 / p99", f"{figures['ratio_p50']} / {figures['ratio_p99']}")
    verdict = "met" if figures["target_met"] else "NOT met"
    emit(
        f"target {sizes['rate']:g} actions/s with p99 ≤ {TARGET_P99_MS:g} ms, 0 errors, "
        f"0 double effects: {verdict}"
    )
    per_action = ", ".join(
        f"{a} {d['p50_ms']} / {d['p99_ms']} / {d['max_ms']} (n {d['n']})"
        for a, d in ld["per_action"].items()
    )
    return [
        machine_line(host, versions),
        f"- district: {sizes['grids']} grids, {sizes['buildings']:,} buildings, "
        f"{sizes['volunteers']:,} volunteers, {sizes['requests']:,} historical requests "
        f"(generated in {figures['generate_s']} s); setup {figures['setup_s']} s: "
        f"{figures['pool_submitted']:,} requests submitted through the API, "
        f"{figures['accounts']:,} accounts, {figures['setup_claims_failed']} setup claims failed",
        f"- load: open loop, {sizes['rate']:g} actions/s, {sizes['warmup_s']:g} s warm-up + "
        f"{sizes['duration_s']:g} s measured, {sizes['threads']} sender threads in a separate "
        f"process, latency from the scheduled send time; gunicorn {sizes['workers']} sync workers; "
        f"{figures['actions']:,} actions on {figures['units']:,} requests, mix {figures['mix']} "
        f"(target {MIX}), {100 * figures['contended_share']:.1f} % in contended pairs "
        f"({', '.join(PAIRS)}); plan short of {figures['plan_short'] or 'nothing'}",
        f"- actions: {ld['achieved_rps']} actions/s completed in the measured window, p50 "
        f"{ld['p50_ms']} ms, p90 {ld['p90_ms']} ms, p99 {ld['p99_ms']} ms, max {ld['max_ms']} "
        f"ms; {ld['status_2xx']} 2xx, {ld['status_4xx']} 4xx; errors {ld['errors']}"
        f"{' ' + str(ld['error_kinds']) if ld['error_kinds'] else ''}, unsent "
        f"{ld['unsent']}; worst per 10 s "
        f"{ld['worst_ms_by_10s']} ms",
        f"- per action p50 / p99 / max ms: {per_action}",
        f"- model check (events replayed against DESIGN §3): double effects "
        f"**{md['double_effects']}** {md['findings']}; other violations {md['violations']}; "
        f"examples {md['examples'] or '{}'}; pairs {md['pairs']}"
        + (
            f", both won (gap = first event written − second begun) {md['both_won']}"
            if md["both_won"]
            else ""
        )
        + f"; loser codes {md['loser_codes']} ({md['losers_not_409']} not 409); single "
        f"actions refused {md['refused_singles'] or '{}'}; {md['events']} events for "
        f"{md['answered_2xx']} 2xx",
        f"- floor (SELECT … FOR UPDATE + 1 UPDATE + 1 event INSERT + commit, same schedule): "
        f"{fl['achieved_rps']} actions/s, p50 {fl['p50_ms']} ms, p99 {fl['p99_ms']} ms, max "
        f"{fl['max_ms']} ms, errors {fl['errors']}",
        f"- ratio actions / floor: p50 ×{figures['ratio_p50']}, p99 ×{figures['ratio_p99']}; "
        f"target p99 ≤ {TARGET_P99_MS:g} ms, 0 errors, 0 double effects: {verdict}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = load_parser(
        "python -m bench.actions_bench",
        __doc__,
        quick="small sizes (runs in < 2 min)",
        rate="offered actions per second",
    )
    args, sizes, mode, figures = bench_args(parser, argv, bench="actions", quick=QUICK, full=FULL)
    with bench_workspace("actions", figures) as (url, tmp):
        versions = server_version(url)
        district = build_district(url, sizes, args.seed)
        figures["generate_s"] = district["generate_s"]
        figures.update(load_bench(url, district, sizes, args.seed, tmp))
    host = machine()
    figures["load_1m_end"] = host["load_1m"]
    ld, fl, md = figures["load"], figures["floor"], figures["model"]
    figures["ratio_p50"] = ratio(ld["p50_ms"], fl["p50_ms"])
    figures["ratio_p99"] = ratio(ld["p99_ms"], fl["p99_ms"])
    figures["double_effects"] = md["double_effects"]
    figures["target_met"] = bool(
        ld["achieved_rps"] >= 0.99 * sizes["rate"]
        and ld["p99_ms"] is not None
        and ld["p99_ms"] <= TARGET_P99_MS
        and ld["errors"] == 0
        and ld["unsent"] == 0
        and md["double_effects"] == 0
        and md["violations"] == 0
    )
    emit(
        f"actions bench ({mode}): {sizes['grids']} grids, {sizes['volunteers']:,} volunteers, "
        f"{sizes['requests']:,} historical requests"
    )
    lines = report(figures, sizes, host, versions)
    publish(f"actions bench ({mode})", lines, figures)
    bad = ld["errors"] + ld["unsent"] + fl["errors"] + md["double_effects"] + md["violations"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
