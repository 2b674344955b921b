"""Pages bench: every map page in headless Chromium on the synthetic district, beside a map
with all buildings inlined as GeoJSON.

``python -m bench.pages_bench [--quick]`` in a scratch database (on ``DATABASE_URL`` or the
embedded server; dropped afterwards):

1. writes the synthetic district (600 grids, 50k buildings, 100k volunteers, 1M requests, a
   walking network of ≥ 100k edges; ``--quick``: 60 grids, 5k buildings and small rest) plus
   two venues per grid, and bench accounts: a grid leader, a street staff member, a planner
   and a volunteer (linked to a volunteer row); one request is submitted for a ticket page;
2. serves the app with ``minqing serve --workers 2`` and, for the baseline, the same district
   map built with folium with every building (and grid and venue) inlined as GeoJSON, from a
   temporary directory with Leaflet copied from node_modules;
3. opens each page in a fresh Chromium context (cold cache) at 1280×800 and 390×844 and
   measures, from navigation start:

   - first render: the first contentful paint;
   - map idle: Leaflet's ``load`` fired for every layer in ``Minqing.state.layers`` and no
     loads pending (``Minqing.state.pending == 0``), the document complete, then no network
     request for 500 ms; the figure is the moment the last of those happened (the 500 ms of
     quiet are the check, not part of the figure). Pages without map layers (the service
     card, the ticket, the baseline) are idle when complete and quiet.
   - bytes transferred: the sum of ``encodedDataLength`` of Chromium's
     ``Network.loadingFinished`` over every request of the page (headers included).

   Requests to any host other than the page's own are blocked by Chromium's host resolver
   and recorded; console errors and page errors are recorded.

Figures: a table page × viewport against the targets (≤ 2 s to map idle, ≤ 2 MB first load),
a dated section of ``bench/RESULTS.md`` (``MINQING_BENCH_RESULTS`` overrides the path), and
the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import logging
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import (
    Timer,
    emit,
    machine,
    machine_line,
    open_database,
    publish,
    scratch_database,
    server_version,
)
from bench.common import app_server as common_app_server
from bench.pages_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TARGET_BYTES,
    TARGET_IDLE_MS,
    VIEWPORTS,
    Measurement,
    PageSpec,
    explain,
    form_login,
    measure_page,
    median_measurement,
    table,
    verdict,
)
from layers.config import PROJECT_ROOT
from layers.grids.repo import LIVE_GRIDS, live_sql

logger = logging.getLogger(__name__)

# the browser side lives in bench.pages_browser; these stay importable from here
__all__ = [
    "CHROMIUM",
    "TARGET_BYTES",
    "TARGET_IDLE_MS",
    "VIEWPORTS",
    "Measurement",
    "PageSpec",
    "main",
    "median_measurement",
    "run",
    "table",
    "verdict",
]

PASSWORD = "bench-pages-2024"
VENUES_PER_GRID = 2
VENUE_CATEGORIES = ("community_centre", "clinic", "pharmacy", "elderly_care", "market")

FULL = {
    "grids": 600,
    "buildings": 50_000,
    "volunteers": 100_000,
    "requests": 1_000_000,
    "network_edges": 100_000,
    "repeats": 3,
    "warmups": 2,
}
QUICK = {
    "grids": 60,
    "buildings": 5_000,
    "volunteers": 2_000,
    "requests": 20_000,
    "network_edges": 5_000,
    "repeats": 1,
    "warmups": 1,
}


# --------------------------------------------------------------------------- the district


@dataclass
class Site:
    """What the pages need: a grid, the accounts and a ticket."""

    grid_code: str
    accounts: dict[str, str]  # role → username
    ticket: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def build_district(url: str, sizes: dict[str, int], seed: int) -> tuple[Site, dict[str, Any]]:
    """The synthetic district, venues and bench accounts in the scratch database."""
    from data.synthetic import generate_district
    from layers.auth.service import bind_role, create_user

    with open_database(url) as database:
        with database.session() as session:
            summary = generate_district(
                session=session,
                grids=sizes["grids"],
                buildings=sizes["buildings"],
                volunteers=sizes["volunteers"],
                requests=sizes["requests"],
                network_edges_min=sizes["network_edges"],
                seed=seed,
            )
            step = max(1, sizes["buildings"] // (VENUES_PER_GRID * sizes["grids"]))
            cats = "ARRAY[" + ",".join(f"'{c}'" for c in VENUE_CATEGORIES) + "]"
            session.execute(
                text(
                    "INSERT INTO venues (category, name, shared, geom) "
                    f"SELECT ({cats})[1 + id % {len(VENUE_CATEGORIES)}], '服务点' || id, "
                    f"id % 3 = 0, rep_point FROM buildings WHERE id % {step} = 0"
                )
            )
            # the leader's grid: the live grid with the most buildings (a busy one)
            grid_code, street_code = session.execute(
                text(
                    "SELECT g.code, s.code FROM grids g JOIN areas c ON c.id = g.community_id "
                    "JOIN areas s ON s.id = c.parent_id "
                    f"WHERE {LIVE_GRIDS} ORDER BY g.households DESC, g.code LIMIT 1"
                )
            ).one()
            vol_id, vol_community = session.execute(
                text(
                    "SELECT v.id, c.code FROM volunteers v JOIN areas c ON c.id = v.community_id "
                    "JOIN grids g ON g.community_id = c.id AND g.code = :g "
                    "WHERE ST_Covers(g.geom, v.geom) ORDER BY v.id LIMIT 1"
                ),
                {"g": grid_code},
            ).one_or_none() or (None, None)
            accounts = {
                "leader": ("grid_leader", None, grid_code),
                "staff": ("street_staff", street_code, None),
                "planner": ("planner", None, None),
            }
            if vol_id is not None:
                accounts["volunteer"] = ("volunteer", vol_community, None)
            usernames: dict[str, str] = {}
            for who, (role, area, grid) in accounts.items():
                username = f"bench_{who}"
                user = create_user(session=session, username=username, password=PASSWORD)
                bind_role(
                    session=session, username=username, role=role, area_code=area, grid_code=grid
                )
                if who == "volunteer":
                    session.execute(
                        text("UPDATE volunteers SET user_id = :u WHERE id = :v"),
                        {"u": user.id, "v": vol_id},
                    )
                usernames[who] = username
            counts = {
                name: int(session.scalar(text(f"SELECT count(*) FROM {name}")) or 0)
                for name in ("grids", "buildings", "venues", "volunteers", "requests")
            }
            session.commit()
        return Site(grid_code=grid_code, accounts=usernames, counts=counts), summary.as_dict()


def submit_ticket(base: str, url: str, grid_code: str) -> str | None:
    """Submit one request inside ``grid_code`` through the API; its ticket token."""
    with open_database(url) as database, database.session() as session:
        lon, lat = session.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids "
                f"WHERE code = :c AND {live_sql('')}) x"
            ),
            {"c": grid_code},
        ).one()
    body = json.dumps(
        {"category": "housing", "text": "楼道灯坏了 (pages bench)", "lon": lon, "lat": lat}
    ).encode()
    req = urllib.request.Request(
        f"{base}/api/v1/requests",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["ticket"]
    except urllib.error.HTTPError as err:  # the ticket page is then left out, and said so
        logger.error("could not submit the ticket request: %s %s", err.code, err.read()[:500])
        return None


# --------------------------------------------------------------------------- servers


@contextmanager
def app_server(url: str, workers: int = 2) -> Iterator[str]:
    """``minqing serve`` over the scratch database; its base URL."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        common_app_server(
            url, log_path=Path(tmp) / "serve.log", workers=workers, timeout_s=60
        ) as port,
    ):
        yield f"http://127.0.0.1:{port}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """A tiny threaded HTTP server for the baseline page; its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def build_baseline(url: str, directory: Path) -> dict[str, Any]:
    """The district map with every grid, building and venue inlined as GeoJSON (folium's
    plain way), Leaflet copied from node_modules; writes ``index.html``."""
    import folium

    from web.maps import FALLBACK_BOUNDS

    with open_database(url) as database, database.session() as session:

        def collection(sql: str) -> dict[str, Any]:
            rows = session.execute(text(sql)).all()
            return {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": json.loads(g), "properties": dict(p)}
                    for g, p in rows
                ],
            }

        grids = collection(
            "SELECT ST_AsGeoJSON(geom, 6), json_build_object('code', code, 'name', name, "
            f"'households', households) FROM grids WHERE {live_sql('')}"
        )
        buildings = collection(
            "SELECT ST_AsGeoJSON(geom, 6), json_build_object('code', code, 'name', "
            "coalesce(name, ''), 'levels', levels, 'households', households) FROM buildings"
        )
        venues = collection(
            "SELECT ST_AsGeoJSON(geom, 6), json_build_object('name', name, 'category', "
            "category) FROM venues WHERE active"
        )
        ext = session.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                "FROM (SELECT ST_Extent(geom) e FROM grids) x"
            )
        ).one()
    bounds = ((ext[1], ext[0]), (ext[3], ext[2])) if ext[0] is not None else FALLBACK_BOUNDS
    vendor = directory / "leaflet"
    shutil.copytree(PROJECT_ROOT / "node_modules" / "leaflet" / "dist", vendor)
    center = ((bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2)
    m = folium.Map(location=center, zoom_start=14, tiles=None, control_scale=True)
    m.default_js = [("leaflet", "leaflet/leaflet.js")]
    m.default_css = [("leaflet_css", "leaflet/leaflet.css")]
    folium.GeoJson(
        grids,
        name="grids",
        style_function=lambda _f: {"color": "#c0392b", "weight": 2.5, "fill": False},
        popup=folium.GeoJsonPopup(fields=["code", "name", "households"]),
    ).add_to(m)
    folium.GeoJson(
        buildings,
        name="buildings",
        style_function=lambda _f: {
            "color": "#555",
            "weight": 1,
            "fillColor": "#f0c27b",
            "fillOpacity": 0.6,
        },
        popup=folium.GeoJsonPopup(fields=["code", "name", "levels", "households"]),
    ).add_to(m)
    if venues["features"]:
        folium.GeoJson(
            venues,
            name="venues",
            marker=folium.CircleMarker(radius=5, color="#2e7d32", weight=1, fill_opacity=0.85),
            popup=folium.GeoJsonPopup(fields=["name", "category"]),
        ).add_to(m)
    folium.LayerControl().add_to(m)
    m.fit_bounds([list(bounds[0]), list(bounds[1])])
    html = m.get_root().render()
    path = directory / "index.html"
    path.write_text(html, encoding="utf-8")
    (directory / "favicon.ico").write_bytes(b"")  # Chromium asks for one; a 404 is an error
    return {
        "baseline_html_bytes": path.stat().st_size,
        "baseline_buildings": len(buildings["features"]),
    }


# --------------------------------------------------------------------------- main


def pages(site: Site) -> list[PageSpec]:
    g = site.grid_code
    specs = [
        PageSpec("district", "/"),
        PageSpec("resident", "/r"),
        PageSpec("resident_grid", f"/r?grid={g}"),
        PageSpec("service_card", f"/grids/{g}/card"),
    ]
    if site.ticket:
        specs.append(PageSpec("ticket", f"/t/{site.ticket}"))
    specs.append(PageSpec("leader", "/leader", login="leader"))
    if "volunteer" in site.accounts:
        specs.append(PageSpec("volunteer", "/v", login="volunteer"))
    specs += [
        PageSpec("staff_inbox", "/staff", login="staff"),
        PageSpec("staff_dashboard", "/staff/dashboard", login="staff"),
        PageSpec("planner", "/planner", login="planner"),
        PageSpec("baseline_inlined", "/index.html", base="baseline"),
    ]
    return specs


def _registered(base: str, path: str, login: tuple[str, str] | None, browser: Any) -> bool:
    ctx = browser.new_context()
    try:
        if login:
            form_login(ctx, base, login)
        return ctx.request.get(f"{base}{path}").status != 404
    finally:
        ctx.close()


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Measurement], list[str]]:
    from playwright.sync_api import sync_playwright

    sizes = dict(QUICK if args.quick else FULL)
    for k in ("buildings", "grids", "repeats"):
        if getattr(args, k):
            sizes[k] = getattr(args, k)
    mode = "quick" if args.quick else "full"
    figures: dict[str, Any] = {"bench": "pages", "mode": mode, **sizes, "seed": args.seed}
    notes: list[str] = []
    results: list[Measurement] = []
    with (
        Timer() as total,
        scratch_database("minqing_bench_pages") as url,
        tempfile.TemporaryDirectory(prefix="minqing-baseline-") as tmp,
    ):
        figures["server"] = server_version(url)
        with Timer() as t:
            site, summary = build_district(url, sizes, args.seed)
        figures["district_write_s"] = round(t.s, 1)
        figures["counts"] = site.counts
        with Timer() as t:
            figures.update(build_baseline(url, Path(tmp)))
        figures["baseline_build_s"] = round(t.s, 1)
        with (
            app_server(url, workers=2) as base,
            static_server(Path(tmp)) as baseline_base,
            sync_playwright() as pw,
        ):
            site.ticket = submit_ticket(base, url, site.grid_code)
            if site.ticket is None:
                notes.append("the ticket page was left out: submitting its request failed")
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                for spec in pages(site):
                    origin = base if spec.base == "app" else baseline_base
                    login = (site.accounts[spec.login], PASSWORD) if spec.login else None
                    if spec.name == "planner" and not _registered(base, spec.path, login, browser):
                        notes.append("/planner is not registered in this app: left out")
                        continue
                    # untimed loads warm the server (each worker's imports and caches)
                    for _ in range(sizes["warmups"] if spec.base == "app" else 0):
                        measure_page(
                            browser,
                            url=origin + spec.path,
                            origin=origin,
                            viewport="desktop",
                            page_name=spec.name,
                            login=login,
                        )
                    for viewport in VIEWPORTS:
                        runs = [
                            measure_page(
                                browser,
                                url=origin + spec.path,
                                origin=origin,
                                viewport=viewport,
                                page_name=spec.name,
                                login=login,
                            )
                            for _ in range(sizes["repeats"])
                        ]
                        m = median_measurement(runs)
                        results.append(m)
                        logger.info(
                            "%s @ %s: idle %s ms, %s bytes", m.page, viewport, m.idle_ms, m.bytes
                        )
            finally:
                browser.close()
    figures["total_s"] = round(total.s, 1)
    figures["synthetic_timings_s"] = summary.get("timings_s", {})
    return figures, results, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5k buildings, one repeat")
    parser.add_argument("--buildings", type=int, help="number of synthetic buildings")
    parser.add_argument("--grids", type=int, help="number of synthetic grids")
    parser.add_argument("--repeats", type=int, help="loads per page and viewport (median)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not Path(CHROMIUM).exists():
        emit(f"{CHROMIUM} is missing: ./run.sh installs Debian's chromium")
        return 2

    figures, results, notes = run(args)
    host = machine()
    app_rows = [m for m in results if m.page != "baseline_inlined"]
    base_rows = [m for m in results if m.page == "baseline_inlined"]
    figures["pages"] = [m.as_dict() for m in results]
    figures["all_idle"] = all(m.idle for m in results)
    figures["foreign_requests"] = sum(len(m.foreign_requests) for m in results)
    figures["console_errors"] = sum(len(m.console_errors) for m in results)
    figures["http_errors"] = sum(sum("(HTTP " in f for f in m.failed_requests) for m in results)
    figures["targets_met"] = all(verdict(m) == "ok" for m in app_rows)
    figures["misses"] = [f"{m.page}@{m.viewport}: {verdict(m)}" for m in app_rows if verdict(m) != "ok"]  # fmt: skip
    figures["load_1m"] = host["load_1m"]

    counts = figures["counts"]
    emit(
        f"pages bench ({figures['mode']}): {counts['grids']:,} grids, "
        f"{counts['buildings']:,} buildings, {counts['venues']:,} venues, "
        f"{counts['volunteers']:,} volunteers, {counts['requests']:,} requests"
    )
    emit(
        f"targets: map idle ≤ {TARGET_IDLE_MS:,} ms, first load ≤ {TARGET_BYTES / 1e6:.0f} MB; "
        f"{figures['repeats']} load(s) per page and viewport, median"
    )
    rows = table(app_rows + base_rows)
    for line in rows:
        emit(line)
    why = [w for w in (explain(m) for m in app_rows) if w]
    for line in why:
        emit(line)
    for m in results:
        for e in m.console_errors[:3]:
            emit(f"console error on {m.page} @ {m.viewport}: {e[:200]}")
        for u in m.foreign_requests[:3]:
            emit(f"foreign request from {m.page} @ {m.viewport}: {u}")
        for u in [f for f in m.failed_requests if "(HTTP " in f][:3]:
            emit(f"HTTP error on {m.page} @ {m.viewport}: {u}")
    for n in notes:
        emit(f"note: {n}")

    lines = [
        machine_line(
            host,
            f"{figures['server']}, Chromium headless (Debian), app under `minqing serve "
            "--workers 2`",
        ),
        f"- district: {counts['grids']:,} grids, {counts['buildings']:,} buildings, "
        f"{counts['venues']:,} venues, {counts['volunteers']:,} volunteers, "
        f"{counts['requests']:,} requests (seed {figures['seed']}); baseline page "
        f"{figures['baseline_html_bytes'] / 1e6:.1f} MB of HTML with "
        f"{figures['baseline_buildings']:,} buildings inlined",
        f"- targets: map idle ≤ {TARGET_IDLE_MS:,} ms, first load ≤ {TARGET_BYTES / 1e6:.0f} MB "
        f"(cold cache; {figures['repeats']} load(s) per cell, median); "
        f"met by every page: {'yes' if figures['targets_met'] else 'no'}",
        "",
        *rows,
        "",
        *why,
        *[f"- note: {n}" for n in notes],
        f"- foreign requests: {figures['foreign_requests']}; console errors: "
        f"{figures['console_errors']}; total run {figures['total_s']} s",
    ]
    cells = {f"{m.page}@{m.viewport}": [m.first_render_ms, m.idle_ms, m.bytes] for m in results}
    recorded = {k: v for k, v in figures.items() if k != "pages"} | {"cells": cells}
    publish(f"pages bench ({figures['mode']})", lines, figures, recorded)
    ok = figures["all_idle"] and not figures["foreign_requests"] and not figures["console_errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
