"""The actions bench's load: an open-loop sender in a separate process, and its figures.

Each shot is (scheduled offset, path, body, headers). Sender threads take shots in schedule
order, sleep until the shot is due and send it on their own keep-alive connection; latency
runs from the SCHEDULED time (no coordinated omission), so a pair's two shots, due at the same
instant, go out together on two threads. A shot still unsent ``grace_s`` after the last due
time is recorded as unsent (latency infinite): an overloaded server cannot stretch the run.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections import Counter
from typing import Any

import numpy as np

from bench.common import run_in_process

logger = logging.getLogger(__name__)

UNSENT = -2  # status of a shot never sent
FAILED = -1  # status of a shot whose connection failed or timed out


def _load_worker(args: dict[str, Any], conn_out: Any) -> None:
    """Child process: sends the shots; sends back per shot (latency s, send lag s, HTTP
    status or FAILED / UNSENT, "ok" or the error code)."""
    due: list[float] = args["due"]
    paths: list[str] = args["paths"]
    bodies: list[bytes] = args["bodies"]
    headers: list[dict[str, str]] = args["headers"]
    port, grace_s, timeout_s = args["port"], args["grace_s"], args["timeout_s"]
    n = len(due)
    latency = np.full(n, np.nan)
    lag = np.full(n, np.nan)
    sent_wall = np.full(n, np.nan)  # epoch seconds, to compare with the server's timestamps
    done_wall = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int32)
    answer: list[str | None] = [None] * n
    next_i = [0]
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.2
    stop_at = t0 + (due[-1] if n else 0.0) + grace_s

    def sender() -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                break
            at = t0 + due[i]
            if time.perf_counter() > stop_at:
                latency[i], lag[i], status[i], answer[i] = np.inf, np.inf, UNSENT, "unsent"
                continue
            wait = at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            sent_wall[i] = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
                conn.request("POST", paths[i], bodies[i], headers[i])
                resp = conn.getresponse()
                data = resp.read()
                code = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
                if code < 400:
                    answer[i] = "ok"
                else:
                    doc = json.loads(data) if data else {}
                    answer[i] = (doc.get("error") or {}).get("code") or f"http_{code}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                code, answer[i] = FAILED, type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            latency[i] = time.perf_counter() - at
            done_wall[i] = time.time()
            lag[i] = sent - at
            status[i] = code

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(args["threads"])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    conn_out.send(
        {
            "latency": latency,
            "lag": lag,
            "status": status,
            "answer": answer,
            "sent_wall": sent_wall,
            "done_wall": done_wall,
        }
    )
    conn_out.close()


def run_load(
    port: int,
    shots: list[tuple[float, str, bytes, dict[str, str]]],
    *,
    threads: int,
    grace_s: float,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Send ``shots`` (sorted by due offset) open loop from a separate process; returns
    per-shot arrays ``latency``, ``lag``, ``status``, ``sent_wall`` / ``done_wall`` (epoch
    seconds) and the list ``answer``."""
    args = {
        "due": [s[0] for s in shots],
        "paths": [s[1] for s in shots],
        "bodies": [s[2] for s in shots],
        "headers": [s[3] for s in shots],
        "port": port,
        "threads": threads,
        "grace_s": grace_s,
        "timeout_s": timeout_s,
    }
    return run_in_process(_load_worker, args)


def _ms(values: np.ndarray, q: float) -> float | None:
    if not len(values):
        return None
    return round(float(np.percentile(values, q, method="higher")) * 1000.0, 2)


def _max_ms(values: np.ndarray) -> float | None:
    return round(float(np.nanmax(values)) * 1000.0, 2) if len(values) else None


def latency_figures(latency: np.ndarray) -> dict[str, Any]:
    """n, p50 / p90 / p99 / max in ms of ``latency`` (seconds; unsent shots are inf)."""
    return {
        "n": len(latency),
        "p50_ms": _ms(latency, 50),
        "p90_ms": _ms(latency, 90),
        "p99_ms": _ms(latency, 99),
        "max_ms": round(float(latency.max()) * 1000.0, 2) if len(latency) else None,
    }


def summarise(
    result: dict[str, Any],
    due: np.ndarray,
    actions: list[str],
    *,
    warmup_s: float,
    duration_s: float,
    rate: float,
) -> dict[str, Any]:
    """Figures of the measured window (shots due at or after ``warmup_s``): latency overall
    and per action, answers by status class, errors (5xx, failed connections, unsent);
    throughput = answers completed inside the window (whenever they were due)."""
    latency, status = result["latency"], result["status"]
    answer = np.array(result["answer"], dtype=object)
    acts = np.array(actions, dtype=object)
    measured = due >= warmup_s - 1e-9
    done = due + latency
    answered = status > 0
    completed = int((answered & (done >= warmup_s) & (done < warmup_s + duration_s)).sum())
    st = status[measured]
    server_errors = st >= 500
    failed = st == FAILED
    unsent = st == UNSENT
    per_action = {
        a: latency_figures(latency[measured & (acts == a)])
        for a in sorted(set(actions))
        if (measured & (acts == a)).any()
    }
    edges = np.arange(warmup_s, warmup_s + duration_s, 10.0)
    worst_by_10s = [
        round(float(np.nanmax(latency[m])) * 1000.0, 1) if m.any() else None
        for m in ((due >= e) & (due < e + 10.0) for e in edges)
    ]
    bad = measured & ((status >= 500) | (status < 0))
    return {
        "sent": int(measured.sum()),
        "offered_rps": rate,
        "achieved_rps": round(completed / duration_s, 1),
        **latency_figures(latency[measured]),
        "per_action": per_action,
        "status_2xx": int(((st >= 200) & (st < 300)).sum()),
        "status_4xx": int(((st >= 400) & (st < 500)).sum()),
        "errors": int(server_errors.sum() + failed.sum()),
        "errors_5xx": int(server_errors.sum()),
        "timeouts_or_failed": int(failed.sum()),
        "unsent": int(unsent.sum()),
        "error_kinds": dict(
            Counter(f"{s}:{a}" for s, a in zip(status[bad], answer[bad], strict=True))
        ),
        "max_send_lag_ms": _max_ms(result["lag"][measured & (status != UNSENT)]),
        "worst_ms_by_10s": worst_by_10s,
    }
