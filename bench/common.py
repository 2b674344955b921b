"""Helpers shared by the benchmarks: timing, printed figures, RESULTS.md, scratch databases.

A benchmark prints its figures as lines on stdout, appends a dated section to
``bench/RESULTS.md`` (or the file named by ``MINQING_BENCH_RESULTS``) and ends with one line
holding a JSON object of the figures, which tests parse. Databases: a scratch database is
created (and migrated) on the server of ``DATABASE_URL`` or on the embedded cluster, and
dropped afterwards; the embedded server is stopped again only if this process started it.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from layers.config import PROJECT_ROOT
from layers.db import Database, migrate

logger = logging.getLogger(__name__)

RESULTS_ENV = "MINQING_BENCH_RESULTS"
DEFAULT_RESULTS = PROJECT_ROOT / "bench" / "RESULTS.md"
FIGURES_TAG = "figures: "  # a results section's last line: "- figures: `{json}`"


def emit(line: str = "") -> None:
    """One line of benchmark output on stdout (the figures are the product of a bench)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def figure(name: str, value: float | int | str, unit: str = "") -> None:
    """Print ``name: value unit`` with thousands separators for numbers."""
    if isinstance(value, float):
        shown = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        shown = f"{value:,}"
    else:
        shown = str(value)
    emit(f"{name}: {shown}{' ' + unit if unit else ''}")


class Timer:
    """``with Timer() as t: ...`` then ``t.s`` holds the elapsed wall time in seconds."""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self._t0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def machine_line(host: dict[str, Any], setup: str) -> str:
    """The results line saying what the figures were measured on (``host`` from
    :func:`machine`, taken at the end of the run); ``setup``: server versions and the like."""
    return (
        f"- machine: {host['nproc']} CPUs ({host['cpu']}), load {host['load_1m']} at end, "
        f"Python {host['python']}, {setup}"
    )


def results_path() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def append_results(title: str, lines: list[str]) -> Path:
    """Append a dated Markdown section to the results file (never rewrites old sections)."""
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as fh:
        if new_file:
            fh.write("# Benchmark results\n\nAppend-only: each run adds a dated section.\n")
        fh.write(f"\n## {title} — {stamp}\n\n")
        for line in lines:
            fh.write(line + "\n")
    return path


def final_json(figures: dict[str, Any]) -> None:
    """The last stdout line: one JSON object with the figures."""
    emit(json.dumps(figures, ensure_ascii=False, sort_keys=False, default=str))


def publish(
    title: str, lines: list[str], figures: dict[str, Any], recorded: dict[str, Any] | None = None
) -> Path:
    """End of a bench: append ``lines`` and a ``- figures: `{json}``` line holding ``recorded``
    (default: ``figures``) as a section to the results file, say where, then print the final
    JSON line of ``figures``."""
    shown = json.dumps(figures if recorded is None else recorded, ensure_ascii=False, default=str)
    path = append_results(title, [*lines, f"- {FIGURES_TAG}`{shown}`"])
    emit(f"results appended to {path}")
    final_json(figures)
    return path


def server_url() -> tuple[str, Any]:
    """(URL of the server to use, embedded cluster to stop afterwards or None)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    from layers.embedded import EmbeddedCluster

    cluster = EmbeddedCluster(PROJECT_ROOT)
    started = cluster.running_pid() is None
    url = cluster.up()
    return url, (cluster if started else None)


def _admin(url: str) -> Engine:
    return create_engine(
        make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=None
    )


@contextmanager
def scratch_database(prefix: str = "minqing_bench") -> Iterator[str]:
    """A freshly migrated database of its own; dropped (and the server stopped if we started
    it) on exit, even after an error."""
    url, cluster = server_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _admin(url)
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        db_url = make_url(url).set(database=name).render_as_string(hide_password=False)
        try:
            migrate(db_url)
            yield db_url
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
        if cluster is not None:
            cluster.down()


@contextmanager
def open_database(url: str) -> Iterator[Database]:
    """A ``Database`` on ``url`` whose engine is disposed on exit (a bench opens one per phase
    so no pooled connection outlives it)."""
    database = Database.from_url(url)
    try:
        yield database
    finally:
        database.engine.dispose()


def server_version(url: str) -> str:
    engine = create_engine(url, poolclass=None)
    try:
        with engine.connect() as c:
            pg = c.scalar(text("SHOW server_version"))
            postgis = c.scalar(text("SELECT postgis_lib_version()"))
        return f"PostgreSQL {pg}, PostGIS {postgis}"
    finally:
        engine.dispose()


def free_port() -> int:
    """A free loopback TCP port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def app_server(
    url: str,
    *,
    log_path: Path,
    workers: int = 2,
    env: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> Iterator[int]:
    """``minqing serve`` (gunicorn, deadline timer off) on a free loopback port over ``url``;
    yields the port once /health answers, stops the server on exit."""
    import http.client
    import subprocess

    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": url,
        "MINQING_SECRET_KEY": os.environ.get("MINQING_SECRET_KEY", "bench-" + uuid.uuid4().hex),
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "web.cli", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers), "--escalate-every", "0"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=full_env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app server exited ({proc.returncode}); see {log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the app server did not answer in {timeout_s:.0f} s; see {log_path}"
                )
            time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_args(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    *,
    bench: str,
    quick: dict[str, Any],
    full: dict[str, Any],
) -> tuple[argparse.Namespace, dict[str, Any], str, dict[str, Any]]:
    """The command line of a load bench (``parser`` already holds ``--quick``, ``--rate``,
    ``--duration``, ``--seed`` and its own options): (args, sizes from ``quick`` / ``full``
    with ``--rate`` / ``--duration`` applied, mode, the figures it starts with)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sizes = dict(quick if args.quick else full)
    mode = "quick" if args.quick else "full"
    if args.rate:
        sizes["rate"] = args.rate
        mode += f"-rate{args.rate:g}"
    if args.duration:
        sizes["duration_s"] = args.duration
    figures: dict[str, Any] = {"bench": bench, "mode": mode, "seed": args.seed}
    figures.update({k: sizes[k] for k in ("grids", "volunteers", "requests", "rate")})
    figures["warmup_s"], figures["duration_s"] = sizes["warmup_s"], sizes["duration_s"]
    return args, sizes, mode, figures


def load_parser(
    prog: str, description: str | None, *, quick: str, rate: str
) -> argparse.ArgumentParser:
    """The options every load bench has: ``--quick`` (help ``quick``), ``--rate`` (help
    ``rate``), ``--duration``, ``--seed``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--rate", type=float, help=rate)
    parser.add_argument("--duration", type=float, help="measured seconds")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def run_in_process(target: Callable[[dict[str, Any], Any], None], args: dict[str, Any]) -> Any:
    """Run ``target(args, conn)`` in a spawned process (a load generator, so its threads
    do not share this interpreter) and return what it sends on ``conn``."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(args, send), daemon=True)
    proc.start()
    send.close()
    result = recv.recv()
    proc.join(timeout=30)
    return result


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    """``a / b`` rounded, or None when either is missing (or ``b`` is 0): a bench against its
    floor."""
    return round(a / b, digits) if a is not None and b else None


@contextmanager
def bench_workspace(name: str, figures: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """A load bench's run: (URL of a scratch database ``minqing_bench_<name>_…``, a temporary
    directory ``minqing_<name>_…`` for its logs), both removed on exit; ``figures["total_s"]``
    is then the time the run took."""
    with (
        Timer() as total,
        tempfile.TemporaryDirectory(prefix=f"minqing_{name}_") as tmp,
        scratch_database(f"minqing_bench_{name}") as url,
    ):
        yield url, Path(tmp)
    figures["total_s"] = round(total.s, 1)
