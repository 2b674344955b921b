"""The intake bench: its bookkeeping (fast) and a quick run end to end (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from bench.intake_bench import bench_points, expected_outcome, summarise
from bench.intake_limits import LIMIT_EXTRA, address_plan, limit_check
from data.synthetic import synthetic_grids


def small_district() -> dict:
    geoms, codes = synthetic_grids(24, seed=5)
    # two communities of 12 grids each; the last grid is a gap (in a community, in no grid)
    communities = np.array(
        [shapely.union_all(geoms[:12]), shapely.union_all(geoms[12:])], dtype=object
    )
    return {
        "grid_geoms": geoms[:-1],
        "grid_codes": codes[:-1],
        "community_geoms": communities,
        "community_codes": np.array(["990100001001", "990100001002"]),
        "gap_geoms": geoms[-1:],
    }


def test_points_mix_grids_triage_and_outside() -> None:
    d = small_district()
    lon, lat = bench_points(d, 5_000, seed=2)
    exp = expected_outcome(d, lon, lat)
    outside = np.array([e is None for e in exp])
    triage = np.array([e == "" for e in exp])
    assert outside.sum() >= 100 and triage.sum() >= 100  # 2 % each, plus stray box points
    union = shapely.union_all(d["community_geoms"])
    assert not shapely.intersects_xy(union, lon[outside], lat[outside]).any()
    assert shapely.intersects_xy(d["gap_geoms"][0], lon[triage], lat[triage]).all()
    # the expected grid is the lowest code among the grids covering the point
    for i in np.flatnonzero(~outside & ~triage)[:200]:
        covering = [
            c
            for g, c in zip(d["grid_geoms"], d["grid_codes"], strict=True)
            if shapely.intersects_xy(g, lon[i], lat[i])
        ]
        assert exp[i] == min(covering)


def test_summary_counts_errors_mismatches_and_expected_422() -> None:
    exp = np.array(["A", "B", "", None, "A", "A"], dtype=object)
    result = {
        "sched": np.array([0.0, 0.1, 1.0, 1.1, 1.2, 1.3]),
        "latency": np.array([0.5, 0.5, 0.010, 0.020, 0.030, 0.040]),
        "lag": np.zeros(6),
        "status": np.array([201, 201, 201, 422, 201, 500]),
        # row 4 got the wrong grid; row 5 is a server error; rows 0-1 are warm-up
        "answer": ["A", "B", "", "outside_jurisdiction", "B", "internal_error"],
    }
    s = summarise(result, exp, warmup_s=1.0, duration_s=1.0, rate=10.0)
    assert s["sent"] == 4
    assert s["errors"] == 1 and s["error_kinds"] == {"500:internal_error": 1}
    assert s["mismatches"] == 1
    assert s["outside_422"] == 1 and s["triage"] == 1 and s["created"] == 2
    assert s["p50_ms"] == pytest.approx(20.0)
    assert s["achieved_rps"] == 3.0  # answers completed in [1 s, 2 s): rows 2, 3 and 4
    # a warm-up request answered inside the window counts towards throughput, not latency
    result["latency"][1] = 1.0
    s = summarise(result, exp, warmup_s=1.0, duration_s=1.0, rate=10.0)
    assert s["achieved_rps"] == 4.0 and s["sent"] == 4 and s["p50_ms"] == pytest.approx(20.0)
    result["latency"][1] = 0.5
    # a 201 where 422 was due is a mismatch too, and a 422 where a grid was due
    result["status"] = np.array([201, 201, 422, 201, 201, 201])
    result["answer"] = ["A", "B", "outside_jurisdiction", "X", "A", "A"]
    s = summarise(result, exp, warmup_s=1.0, duration_s=1.0, rate=10.0)
    assert s["mismatches"] == 2 and s["errors"] == 0
    # requests the generator never got to send are not errors but infinitely late
    result["status"] = np.array([201, 201, 201, 422, 201, -2])
    result["answer"] = ["A", "B", "", "outside_jurisdiction", "A", "unsent"]
    result["latency"][5] = np.inf
    s = summarise(result, exp, warmup_s=1.0, duration_s=1.0, rate=10.0)
    assert s["unsent"] == 1 and s["errors"] == 0 and s["mismatches"] == 0
    assert s["p99_ms"] == float("inf") and s["p50_ms"] == pytest.approx(30.0)


def test_the_address_plan_predicts_the_429s() -> None:
    """Full size: ≥ 1,000 addresses behind the proxy, light ones within the limit over the
    whole run, heavy ones limit + LIMIT_EXTRA within one window; the check wants exactly
    LIMIT_EXTRA 429s from each heavy client and none elsewhere."""
    n, rate = 21_000, 300.0
    plan = address_plan(n, rate, heavy_clients=10, seed=1)
    limit, window = plan.rule.limit, plan.rule.window_s
    assert (limit, window) == (30, 60.0) and plan.addresses >= 1_000
    assert plan.light_max <= limit // 2
    sched = np.arange(n) / rate
    for h in range(10):
        mine = np.flatnonzero(plan.heavy == h)
        assert len(mine) == limit + LIMIT_EXTRA and len({plan.xff[i] for i in mine}) == 1
        assert sched[mine].max() - sched[mine].min() < window - 5
    light = plan.heavy < 0
    assert not {plan.xff[i] for i in np.flatnonzero(light)} & set(np.array(plan.xff)[~light])
    # the server refuses each heavy client's sends after its first `limit`
    status = np.full(n, 201)
    for h in range(10):
        status[np.flatnonzero(plan.heavy == h)[limit:]] = 429
    result = {"sched": sched, "lag": np.zeros(n), "latency": np.full(n, 0.01), "status": status}
    check = limit_check(result, plan)
    assert check["met"] and check["got_429"] == check["predicted_429"] == 10 * LIMIT_EXTRA
    status[np.flatnonzero(light)[0]] = 429  # one light address refused: not what was due
    assert not limit_check(result, plan)["met"]
    status[np.flatnonzero(light)[0]] = 201
    status[np.flatnonzero(plan.heavy == 0)[-1]] = 201  # one 429 short
    assert not limit_check(result, plan)["met"]
    # in the summary the heavy clients' 429s are no errors and out of the latency figures
    exp = np.full(n, "", dtype=object)
    answer = ["" if c == 201 else "rate_limited" for c in status]
    s = summarise(
        {**result, "answer": answer},
        exp,
        warmup_s=0.0,
        duration_s=n / rate,
        rate=rate,
        may_be_limited=plan.heavy >= 0,
    )
    assert s["errors"] == 0 and s["limited_429"] == 10 * LIMIT_EXTRA - 1
    assert s["sent"] == s["created"] + s["limited_429"]
    s = summarise({**result, "answer": answer}, exp, warmup_s=0.0, duration_s=70.0, rate=rate)
    assert s["errors"] == 10 * LIMIT_EXTRA - 1  # without the plan, a 429 is an error


@pytest.mark.slow
def test_quick_bench_has_no_errors_or_mismatches(run_quick_bench) -> None:
    figures, results, _stdout = run_quick_bench("intake_bench", timeout=300)
    assert figures["bench"] == "intake" and figures["mode"] == "quick"
    intake, floor = figures["intake"], figures["floor"]
    assert intake["errors"] == 0 and intake["mismatches"] == 0
    assert floor["errors"] == 0 and floor["mismatches"] == 0
    assert intake["created"] > 0 and intake["triage"] > 0 and intake["outside_422"] > 0
    assert intake["sent"] == intake["created"] + intake["outside_422"] + intake["limited_429"]
    limits = figures["limits"]
    assert limits["met"] and limits["got_429"] == limits["predicted_429"] > 0
    assert limits["light_429"] == 0 and limits["retry_after_ok"]
    assert intake["p99_ms"] > 0 and floor["p99_ms"] > 0
    assert figures["offered_share"] > 0  # the synthetic volunteers do get offers
    assert figures["bulk_inserted"] > 0 and figures["bulk_rerun_inserted"] == 0
    assert figures["bulk_requests_added"] == figures["bulk_inserted"]
    assert figures["total_s"] < 90
    text = results.read_text(encoding="utf-8")
    assert "## intake bench (quick)" in text and '"mismatches": 0' in text
