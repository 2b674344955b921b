"""folium map pages whose every asset is served by the app (no CDN, DESIGN §6)."""

from __future__ import annotations

import json
import logging
from typing import Any

import folium
import numpy as np
from branca.element import Element, JavascriptLink, MacroElement
from flask import Response, url_for
from jinja2 import Template
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import escape
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.crs import from_wgs84
from web.csp import csp_nonce, nonce_scripts

logger = logging.getLogger(__name__)

# Where the map opens when there is no data yet (the demo district, central Helsinki).
FALLBACK_BOUNDS = ((60.155, 24.92), (60.18, 24.96))

BASEMAPS = {
    "osm": ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "© OpenStreetMap contributors"),
    # AMap draws in GCJ-02: overlays are shifted to match (display_crs below)
    "amap": (
        "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8"
        "&x={x}&y={y}&z={z}",
        "© 高德地图 AutoNavi",
    ),
    "tianditu": (
        "https://t0.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
        "&LAYER=vec&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}"
        "&TILECOL={x}&tk=",
        "© 天地图",
    ),
}


STANDARD_LAYERS = [
    {
        "name": "grids",
        "title_key": "grids",
        "minZoom": 11,
        # outlines only: a filled grid would swallow clicks meant for the buildings beneath
        "style": {"color": "#c0392b", "weight": 2.5, "fill": False},
        "popup": [["code", "code"], ["name", "name"], ["households", "households"]],
        "label": "code",
    },
    {
        "name": "buildings",
        "title_key": "buildings",
        "tiles": True,
        # 50k buildings: a whole district at zoom 14 is 2.8 MB of tiles, a zoom-16 screen
        # about 0.5 MB (bench/pages_bench.py; target ≤ 2 MB for a page's first load)
        "minZoom": 16,
        "style": {
            "color": "#555",
            "weight": 1,
            "fill": True,
            "fillColor": "#f0c27b",
            "fillOpacity": 0.6,
        },
        "popup": [
            ["code", "code"],
            ["name", "name"],
            ["levels", "levels"],
            ["households", "households"],
            # the building leader's public contact, published with consent (layers.contacts)
            ["leader_public_name", "building_leader"],
            ["leader_public_phone", "phone"],
        ],
    },
    {
        "name": "venues",
        "title_key": "venues",
        "minZoom": 12,
        "point": {"radius": 5, "color": "#2e7d32", "weight": 1, "fillOpacity": 0.85},
        "popup": [["name", "name"], ["category", "category"]],
    },
]

BASEMAP_CRS = {"amap": "gcj02"}
BASEMAP_SUBDOMAINS = "1234"


def basemap_origins(basemap: str) -> tuple[str, ...]:
    """The origins ``basemap``'s tiles come from (the CSP's img-src lets them in); none for
    the default ``none``, which is offline."""
    if basemap not in BASEMAPS:
        return ()
    origin = BASEMAPS[basemap][0].split("/", 3)[:3]
    template = "/".join(origin)
    if "{s}" not in template:
        return (template,)
    return tuple(template.replace("{s}", s) for s in BASEMAP_SUBDOMAINS)


def display_crs_for(basemap: str) -> str:
    """The CRS overlays must be drawn in to sit on ``basemap`` (GCJ-02 for AMap)."""
    return BASEMAP_CRS.get(basemap, "wgs84")


def vendor(path: str) -> str:
    return url_for("assets.vendor", filename=path)


# an id no route will see; url_template() turns it into "{id}"
_ID_PLACEHOLDER = 987654321


def url_template(endpoint: str, key: str, **kw: Any) -> str:
    """``endpoint``'s URL with the ``key`` argument left as ``{id}``, for a page script to fill
    in (``Minqing.fmt`` in web/static/js/dom.js)."""
    url = url_for(endpoint, **{key: _ID_PLACEHOLDER}, **kw)
    return url.replace(str(_ID_PLACEHOLDER), "{id}")


def panel_css(page_css: str) -> tuple[str, str]:
    """The stylesheets of a map-and-panel page: the shared layout (css/panel.css), then the
    page's own ``page_css``, which may set the split (``--mq-map-h`` / ``--mq-map-w``)."""
    return (
        url_for("assets.static", filename="css/panel.css"),
        url_for("assets.static", filename=page_css),
    )


def page_response(html: str, lang: str, *, personal: bool = True) -> Response:
    """A rendered page as text/html that remembers ``lang`` in a cookie; a ``personal`` page
    (one that shows what the signed-in account may see) is never stored by a cache."""
    resp = Response(html, mimetype="text/html")
    resp.set_cookie("lang", lang, samesite="Lax")
    if personal:
        resp.headers["Cache-Control"] = "no-store"
    return resp


def data_bounds(session: Session) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(south, west), (north, east) of the district, or of whatever data exists."""
    for sql in (
        "SELECT ST_Extent(geom) FROM areas WHERE level = 'district'",
        "SELECT ST_Extent(geom) FROM grids",
        "SELECT ST_Extent(geom) FROM buildings",
        "SELECT ST_Extent(geom) FROM venues",
    ):
        row = session.execute(
            text(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ({sql}) AS x(e)")
        ).one()
        if row[0] is not None:
            return (row[1], row[0]), (row[3], row[2])
    return None


def base_map(
    *,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None,
    basemap: str,
    tianditu_key: str = "",
    extra_js: tuple[str, ...] = (),
    extra_css: tuple[str, ...] = (),
) -> folium.Map:
    """A folium map with Leaflet from node_modules and the chosen basemap (none by default)."""
    b = bounds or FALLBACK_BOUNDS
    crs = display_crs_for(basemap)
    if crs != "wgs84":
        (s, w), (n, e) = b
        xs, ys = from_wgs84(np.array([w, e]), np.array([s, n]), crs)
        b = ((float(ys[0]), float(xs[0])), (float(ys[1]), float(xs[1])))
    center = ((b[0][0] + b[1][0]) / 2, (b[0][1] + b[1][1]) / 2)
    m = folium.Map(location=center, zoom_start=14, tiles=None, control_scale=True)
    # the DOM helpers every page script takes at load (Minqing.el, Minqing.fmt): a header child
    # added first renders before the scripts attach_script() adds later
    m.get_root().header.add_child(JavascriptLink(url_for("assets.static", filename="js/dom.js")))
    m.default_js = [("leaflet", vendor("leaflet/dist/leaflet.js"))]
    m.default_css = [
        ("leaflet_css", vendor("leaflet/dist/leaflet.css")),
        ("minqing_css", url_for("assets.static", filename="css/minqing.css")),
    ]
    for i, js in enumerate(extra_js):
        m.default_js.append((f"extra_js_{i}", js))
    for i, css in enumerate(extra_css):
        m.default_css.append((f"extra_css_{i}", css))
    if basemap in BASEMAPS:
        url, attribution = BASEMAPS[basemap]
        if basemap == "tianditu":
            url += tianditu_key
        folium.TileLayer(
            tiles=url,
            attr=attribution,
            name=basemap,
            max_zoom=19,
            subdomains=BASEMAP_SUBDOMAINS,
        ).add_to(m)
    m.add_child(_FitBounds([list(b[0]), list(b[1])]))
    return m


class _FitBounds(MacroElement):
    """``fitBounds`` without the zoom animation folium's would start on the next frame: the
    layers' first bbox loads (web/static/js/layers.js) must see the final view, not the
    opening zoom 14 (a leader's page fetched the whole district's volunteers, 0.4 MB)."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "{{ this._parent.get_name() }}.fitBounds({{ this.bounds }}, {animate: false});"
        "{% endmacro %}"
    )

    def __init__(self, bounds: list[list[float]]) -> None:
        super().__init__()
        self._name = "MinqingFitBounds"
        self.bounds = json.dumps(bounds)


class _InitCall(MacroElement):
    """Renders ``init(map, config)`` into the page script, after the map is created."""

    _template = Template(
        "{% macro script(this, kwargs) %}"
        "{{ this.init }}({{ this._parent.get_name() }}, {{ this.payload }});"
        "{% endmacro %}"
    )

    def __init__(self, init: str, payload: str) -> None:
        super().__init__()
        self._name = "MinqingInit"
        self.init = init
        self.payload = payload


def attach_script(m: folium.Map, src: str, init: str, config: dict[str, Any]) -> None:
    """Load one of our scripts and call ``init(map, config)`` once the map exists. ``config``
    holds data (grid, area and community names): as JSON with ``<``, ``>``, ``&`` and ``'``
    written as JSON unicode escapes, no name can end the script or open a comment in it
    ("</script>", "<!--<script>" would otherwise swallow the rest of the page)."""
    m.get_root().header.add_child(JavascriptLink(src))
    payload = str(htmlsafe_json_dumps(config, ensure_ascii=False))
    m.add_child(_InitCall(init, payload))


def render(m: folium.Map, *, title: str, lang: str, body_html: str = "") -> str:
    """The page's HTML; every ``<script>`` in it, folium's inline ones included, carries this
    response's CSP nonce (web/security_headers.py)."""
    root = m.get_root()
    root.header.add_child(Element(f"<title>{escape(title)}</title>"))
    if body_html:
        root.html.add_child(Element(body_html))
    html = root.render()
    return nonce_scripts(html.replace("<html>", f'<html lang="{lang}">', 1), csp_nonce())


def layers_map(
    *,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None,
    settings: Any,
    ui: dict[str, str],
    layer_specs: list[dict[str, Any]] | None = None,
    extra_js: tuple[str, ...] = (),
    extra_css: tuple[str, ...] = (),
) -> folium.Map:
    """A base map with the standard layers (grids, buildings as vector tiles, venues) that
    load by bbox as the map moves (web/static/js/layers.js)."""
    m = base_map(
        bounds=bounds,
        basemap=settings.basemap,
        tianditu_key=settings.tianditu_key,
        extra_js=(
            vendor("leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js"),
            url_for("assets.static", filename="js/vectorgrid-fix.js"),
            *extra_js,
        ),
        extra_css=extra_css,
    )
    tiles_url = url_for("tiles.tile", layer="LAYER", z=0, x=0, y=0).replace(
        "/0/0/0", "/{z}/{x}/{y}"
    )
    layers = [
        {
            **spec,
            "title": ui[spec["title_key"]],
            "tiles": tiles_url.replace("LAYER", spec["name"]) if spec.get("tiles") else None,
        }
        for spec in (STANDARD_LAYERS if layer_specs is None else layer_specs)
    ]
    attach_script(
        m,
        url_for("assets.static", filename="js/layers.js"),
        "Minqing.bboxLayers",
        {
            "api": url_for("api.layers_index"),
            "crs": display_crs_for(settings.basemap),
            "layers": layers,
            "labels": ui,
        },
    )
    return m
