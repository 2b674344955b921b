/* Minqing: GeoJSON layers loaded from /api/v1/layers by bbox as the map moves.
 * User text reaches the page only through textContent, never as HTML. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});
  Minqing.state = { layers: {}, pending: 0, errors: [] };

  function popupFor(props, fields, labels) {
    var dl = document.createElement("dl");
    dl.className = "mq-popup";
    fields.forEach(function (pair) {
      var value = props[pair[0]];
      if (value === null || value === undefined || value === "") return;
      var dt = document.createElement("dt");
      dt.textContent = labels[pair[1]] || pair[1];
      var dd = document.createElement("dd");
      dd.textContent = String(value);
      if (pair[0] === "households" && props.households_estimated) {
        dd.textContent += " (" + (labels.estimated || "estimated") + ")";
      }
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
    return dl;
  }

  function bboxOf(map) {
    var b = map.getBounds();
    var w = Math.max(-180, b.getWest()), s = Math.max(-90, b.getSouth());
    var e = Math.min(180, b.getEast()), n = Math.min(90, b.getNorth());
    return [w, s, e, n].map(function (v) { return v.toFixed(6); }).join(",");
  }

  function loadAll(url, signal, onPage) {
    return fetch(url, { signal: signal, credentials: "same-origin",
                        headers: { Accept: "application/geo+json, application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status + " for " + url);
        return r.json();
      })
      .then(function (fc) {
        onPage(fc.features);
        if (fc.links && fc.links.next) return loadAll(fc.links.next, signal, onPage);
        return null;
      });
  }

  /* Big layers come as vector tiles (ST_AsMVT); a click opens the same popup as GeoJSON. */
  function tileLayer(map, control, spec, config) {
    var st = { layer: null, count: 0, loaded: false, tiles: 0 };
    var styles = {};
    styles[spec.name] = spec.style || {};
    var url = spec.tiles + (config.crs && config.crs !== "wgs84" ? "?crs=" + config.crs : "");
    var layer = L.vectorGrid.protobuf(url, {
      rendererFactory: L.canvas.tile,
      vectorTileLayerStyles: styles,
      interactive: true,
      minZoom: spec.minZoom || 0,
      maxNativeZoom: 18,
      maxZoom: 22,
      getFeatureId: function (f) { return f.properties.id; },
    });
    layer.on("loading", function () { st.loaded = false; });
    layer.on("load", function () { st.loaded = true; layer.fire("minqing:loaded"); });
    layer.on("tileload", function () { st.tiles += 1; });
    layer.on("click", function (e) {
      L.popup()
        .setLatLng(e.latlng)
        .setContent(popupFor(e.layer.properties, spec.popup || [], config.labels))
        .openOn(map);
      Minqing.state.lastTileClick = e.layer.properties;
    });
    layer.addTo(map);
    control.addOverlay(layer, spec.title);
    st.layer = layer;
    st.loaded = map.getZoom() < (spec.minZoom || 0);
    // zoomed out below minZoom, Leaflet drops the tiles in flight and never fires "load"
    map.on("zoomend", function () {
      if (map.getZoom() < (spec.minZoom || 0)) st.loaded = true;
    });
    return st;
  }

  Minqing.bboxLayers = function (map, config) {
    Minqing.map = map;
    // folium passes zoom limits only to tile layers; with no basemap the map needs its own
    if (map.options.maxZoom === undefined) map.setMaxZoom(20);
    // ... and without its own minZoom Leaflet takes the smallest minZoom of its tile layers,
    // which would stop the user zooming out past the buildings' minZoom
    if (map.options.minZoom === undefined) map.setMinZoom(0);
    var control = L.control.layers(null, {}, { collapsed: true }).addTo(map);
    var notice = document.createElement("div");
    notice.className = "mq-notice";
    notice.style.display = "none";
    map.getContainer().appendChild(notice);
    var specs = config.layers;
    var controllers = {};

    specs.forEach(function (spec) {
      if (spec.tiles) {
        Minqing.state.layers[spec.name] = tileLayer(map, control, spec, config);
        return;
      }
      var group = L.geoJSON(null, {
        style: function (feature) {
          var hl = spec.highlight;
          if (hl && feature && hl.codes.indexOf(feature.properties[hl.key || "code"]) >= 0) {
            return Object.assign({}, spec.style || {}, hl.style);
          }
          return spec.style || {};
        },
        pointToLayer: function (feature, latlng) {
          return L.circleMarker(latlng, spec.point || { radius: 5 });
        },
        onEachFeature: function (feature, layer) {
          layer.bindPopup(function () {
            return popupFor(feature.properties, spec.popup || [], config.labels);
          });
          if (spec.label && feature.properties[spec.label] != null) {
            var label = document.createElement("span");
            label.textContent = String(feature.properties[spec.label]);
            layer.bindTooltip(label, { sticky: true });
          }
        },
      });
      if (!spec.hidden) group.addTo(map);
      control.addOverlay(group, spec.title);
      Minqing.state.layers[spec.name] = { layer: group, count: 0, loaded: false };
    });

    function refresh() {
      var zoom = map.getZoom();
      var hidden = [];
      specs.forEach(function (spec) {
        var st = Minqing.state.layers[spec.name];
        if (spec.tiles) {  // vector tiles load themselves; say when they are zoomed out
          if (zoom < (spec.minZoom || 0) && map.hasLayer(st.layer)) hidden.push(spec.title);
          return;
        }
        if (controllers[spec.name]) controllers[spec.name].abort();
        if (!map.hasLayer(st.layer)) {  // switched off: load when switched on
          st.loaded = true;
          return;
        }
        if (zoom < (spec.minZoom || 0)) {
          st.layer.clearLayers();
          st.count = 0;
          st.loaded = true;
          hidden.push(spec.title);
          return;
        }
        var ctl = new AbortController();
        controllers[spec.name] = ctl;
        // the zoom lets the server simplify outlines to what this zoom can show
        var url = config.api + "/" + spec.name + "?limit=1000&bbox=" + bboxOf(map) +
          "&zoom=" + Math.round(zoom);
        if (config.crs && config.crs !== "wgs84") url += "&crs=" + config.crs;
        var fresh = [];
        st.loaded = false;
        Minqing.state.pending += 1;
        loadAll(url, ctl.signal, function (features) { fresh = fresh.concat(features); })
          .then(function () {
            st.layer.clearLayers();
            st.layer.addData(fresh);
            st.count = fresh.length;
            st.loaded = true;
            st.layer.fire("minqing:loaded");
          })
          .catch(function (err) {
            if (err.name !== "AbortError") {
              Minqing.state.errors.push(String(err));
              st.loaded = true;
            }
          })
          .finally(function () { Minqing.state.pending -= 1; });
      });
      if (hidden.length) {
        notice.textContent = (config.labels.zoom_in || "Zoom in to see") + ": " + hidden.join(", ");
        notice.style.display = "";
      } else {
        notice.style.display = "none";
      }
    }

    var timer = null;
    map.on("overlayadd", function () { refresh(); });
    map.on("moveend", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 120);
    });
    refresh();
  };
})(window);
