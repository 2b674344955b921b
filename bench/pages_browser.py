"""Pages bench, the browser side: Chromium's settings and targets, the in-page hooks, one
page measured from navigation start (first render, map idle, bytes), and the report table.

``bench.pages_bench`` builds the district and the servers and drives these per page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# as tests/browser/conftest.py, plus a host resolver that lets nothing leave the machine
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
TARGET_IDLE_MS = 2000
TARGET_BYTES = 2_000_000
QUIET_MS = 500
PAGE_TIMEOUT_S = 60.0

# Runs in the page before its own scripts: records when the map's layers are all loaded
# (Minqing.state) on a 10 ms timer, which long tasks delay just as they delay the user.
HOOK_JS = """
(() => {
  try { performance.setResourceTimingBufferSize(100000); } catch (e) {}
  const s = (window.__mqBench = { readyAt: null, layers: null });
  function layersReady() {
    const M = window.Minqing;
    if (!M || !M.state || !M.state.layers) return null;
    const all = Object.values(M.state.layers);
    s.layers = all.length;
    return (M.state.pending || 0) === 0 && all.every((l) => l.loaded);
  }
  setInterval(() => {
    const ok = document.readyState === "complete" && layersReady() !== false;
    if (!ok) s.readyAt = null;
    else if (s.readyAt === null) s.readyAt = performance.now();
  }, 10);
})();
"""

PROBE_JS = """
() => {
  const res = performance.getEntriesByType("resource");
  const nav = performance.getEntriesByType("navigation")[0];
  let lastNet = nav ? nav.responseEnd : 0;
  for (const r of res) lastNet = Math.max(lastNet, r.responseEnd, r.startTime);
  const slowest = res
    .map((r) => [Math.round(r.responseEnd - r.startTime), Math.round(r.startTime),
                 r.name.replace(location.origin, "")])
    .sort((a, b) => b[0] - a[0]).slice(0, 3);
  const paint = {};
  for (const p of performance.getEntriesByType("paint")) paint[p.name] = p.startTime;
  const M = window.Minqing;
  const layers = {};
  if (M && M.state && M.state.layers) {
    for (const [k, l] of Object.entries(M.state.layers)) {
      layers[k] = { loaded: !!l.loaded, count: l.count || 0, tiles: l.tiles || 0 };
    }
  }
  return {
    now: performance.now(),
    readyAt: window.__mqBench ? window.__mqBench.readyAt : null,
    lastNet: lastNet,
    fcp: paint["first-contentful-paint"] ?? null,
    fp: paint["first-paint"] ?? null,
    dcl: nav ? nav.domContentLoadedEventEnd : null,
    load: nav ? nav.loadEventEnd : null,
    layers: layers,
    errors: M && M.state && M.state.errors ? M.state.errors.map(String) : [],
    zoom: M && M.map ? M.map.getZoom() : null,
    slowest: slowest,
  };
}
"""


# --------------------------------------------------------------------------- measuring


@dataclass
class PageSpec:
    name: str
    path: str
    login: str | None = None  # account key in Site.accounts
    base: str = "app"  # "app" or "baseline"


@dataclass
class Measurement:
    page: str
    viewport: str
    url: str
    status: int | None = None
    first_render_ms: float | None = None
    idle_ms: float | None = None
    idle: bool = False
    dcl_ms: float | None = None
    load_ms: float | None = None
    bytes: int = 0
    requests: int = 0
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    largest: list[tuple[int, str]] = field(default_factory=list)
    slowest: list[tuple[int, int, str]] = field(default_factory=list)  # ms, started at, url
    layers: dict[str, Any] = field(default_factory=dict)
    zoom: float | None = None
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["largest"] = [[n, u] for n, u in self.largest]
        d["slowest"] = [list(x) for x in self.slowest]
        return d


def _kind(url: str, rtype: str) -> str:
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url
    if path.startswith("/tiles/"):
        return "tiles"
    if path.startswith("/api/") or rtype in ("Fetch", "XHR"):
        return "api"
    if rtype == "Document":
        return "document"
    return "assets"


def form_login(ctx: Any, origin: str, login: tuple[str, str]) -> Any:
    """Log in through the login form as a browser does: show it (its CSRF token is tied to a
    pre-session cookie, web/csrf.py), then post it with the token; the POST's response."""
    ctx.request.get(f"{origin}/login")
    token = next((c["value"] for c in ctx.cookies(origin) if c["name"] == "mq_csrf"), "")
    return ctx.request.post(
        f"{origin}/login",
        form={"username": login[0], "password": login[1], "csrf_token": token},
        max_redirects=0,
    )


def measure_page(
    browser: Any,
    *,
    url: str,
    origin: str,
    viewport: str,
    page_name: str,
    login: tuple[str, str] | None = None,
    timeout_s: float = PAGE_TIMEOUT_S,
) -> Measurement:
    """Open ``url`` in a fresh context (cold cache) and measure it (see the module doc)."""
    out = Measurement(page=page_name, viewport=viewport, url=url)
    ctx = browser.new_context(viewport=VIEWPORTS[viewport], locale="zh-CN")
    try:
        if login:
            resp = form_login(ctx, origin, login)
            if resp.status not in (302, 303):
                raise RuntimeError(f"login as {login[0]} failed: HTTP {resp.status}")
        ctx.add_init_script(HOOK_JS)
        page = ctx.new_page()
        inflight: set[Any] = set()

        def on_request(req: Any) -> None:
            u = req.url
            if u.startswith(("data:", "blob:")):
                return
            if not u.startswith(origin + "/") and u != origin:
                out.foreign_requests.append(u)
            inflight.add(req)

        def on_done(req: Any) -> None:
            inflight.discard(req)

        def on_failed(req: Any) -> None:
            inflight.discard(req)
            if req.url.startswith(origin):
                out.failed_requests.append(f"{req.url} ({req.failure})")

        def on_response(resp: Any) -> None:
            if resp.status >= 400:
                out.failed_requests.append(f"{resp.url} (HTTP {resp.status})")

        page.on("request", on_request)
        page.on("response", on_response)
        page.on("requestfinished", on_done)
        page.on("requestfailed", on_failed)
        page.on(
            "console",
            lambda msg: out.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: out.console_errors.append(str(exc)))
        page.on("dialog", lambda d: d.dismiss())

        cdp = ctx.new_cdp_session(page)
        cdp.send("Network.enable")
        types: dict[str, tuple[str, str]] = {}
        sizes: list[tuple[int, str, str]] = []

        def on_cdp_response(ev: dict[str, Any]) -> None:
            types[ev["requestId"]] = (ev["response"]["url"], ev.get("type", ""))

        def on_finished(ev: dict[str, Any]) -> None:
            u, rtype = types.get(ev["requestId"], ("?", ""))
            sizes.append((int(ev["encodedDataLength"]), u, rtype))

        cdp.on("Network.responseReceived", on_cdp_response)
        cdp.on("Network.loadingFinished", on_finished)

        response = page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        out.status = response.status if response else None
        deadline = time.monotonic() + timeout_s
        probe: dict[str, Any] = {}
        while time.monotonic() < deadline:
            page.wait_for_timeout(50)
            probe = page.evaluate(PROBE_JS)
            ready_at = probe["readyAt"]
            if ready_at is None or inflight:
                continue
            # never before the first paint: a map is not idle before anything is drawn
            settled = max(ready_at, probe["lastNet"], probe["fcp"] or 0)
            if probe["now"] - settled >= QUIET_MS:
                out.idle = True
                out.idle_ms = round(settled, 1)
                break
        out.first_render_ms = _ms(probe.get("fcp") or probe.get("fp"))
        out.dcl_ms = _ms(probe.get("dcl"))
        out.load_ms = _ms(probe.get("load"))
        out.layers = probe.get("layers", {})
        out.zoom = probe.get("zoom")
        out.slowest = [tuple(x) for x in probe.get("slowest", [])]
        out.console_errors += [f"Minqing.state.errors: {e}" for e in probe.get("errors", [])]
        page.wait_for_timeout(50)  # let the last CDP events arrive
        out.requests = len(sizes)
        out.bytes = sum(n for n, _, _ in sizes)
        for n, u, rtype in sizes:
            k = _kind(u, rtype)
            out.bytes_by_kind[k] = out.bytes_by_kind.get(k, 0) + n
        out.largest = [(n, u.replace(origin, "")) for n, u, _ in sorted(sizes, reverse=True)[:3]]
        cdp.detach()
    finally:
        ctx.close()
    return out


def _ms(v: float | None) -> float | None:
    return None if v is None or v <= 0 else round(float(v), 1)


def median_measurement(runs: list[Measurement]) -> Measurement:
    """The run with the median time to idle (its other figures kept together)."""
    ok = [r for r in runs if r.idle] or runs
    ok.sort(key=lambda r: r.idle_ms if r.idle_ms is not None else float("inf"))
    pick = ok[len(ok) // 2]
    if len(runs) > 1:
        pick.console_errors = sorted({e for r in runs for e in r.console_errors})
        pick.foreign_requests = sorted({u for r in runs for u in r.foreign_requests})
        pick.idle = all(r.idle for r in runs)
    return pick


# --------------------------------------------------------------------------- report


def _fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def verdict(m: Measurement) -> str:
    miss = []
    if not m.idle or m.idle_ms is None or m.idle_ms > TARGET_IDLE_MS:
        miss.append("idle")
    if m.bytes > TARGET_BYTES:
        miss.append("bytes")
    return "ok" if not miss else "MISS " + "+".join(miss)


def table(rows: list[Measurement]) -> list[str]:
    head = (
        "| page | viewport | zoom | first render | map idle | bytes | requests | "
        "api / tiles / assets | vs targets |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        kinds = m.bytes_by_kind
        split = " / ".join(
            _fmt_bytes(kinds.get(k, 0)) for k in ("api", "tiles", "assets")
        )  # fmt: skip
        idle = _fmt_ms(m.idle_ms) if m.idle else "not idle"
        zoom = "—" if m.zoom is None else f"{m.zoom:g}"
        lines.append(
            f"| {m.page} | {m.viewport} | {zoom} | {_fmt_ms(m.first_render_ms)} | {idle} | "
            f"{_fmt_bytes(m.bytes)} | {m.requests} | {split} | {verdict(m)} |"
        )
    return lines


def explain(m: Measurement) -> str | None:
    """One line saying why a page missed a target (its biggest downloads and layers)."""
    if verdict(m) == "ok":
        return None
    layers = ", ".join(
        f"{k} {v['count'] or v['tiles']}{' tiles' if v['tiles'] else ''}"
        for k, v in m.layers.items()
    )
    big = ", ".join(f"{u} {_fmt_bytes(n)}" for n, u in m.largest)
    slow = ", ".join(f"{u} {ms} ms (from {t0} ms)" for ms, t0, u in m.slowest)
    return (
        f"- {m.page} @ {m.viewport} ({verdict(m)}): layers {layers or '—'}; "
        f"largest {big}; slowest {slow}"
    )
