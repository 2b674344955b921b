/* Planner map: a community's draft grids edited with Leaflet-Geoman through the drafts API,
 * the validation list and the impact preview beside the map, publish / undo, and the history of
 * generations with two of them compared on synchronized maps. Every edit is one
 * POST /drafts/<id>/edits; the map redraws from the returned document (no page reload).
 * User text reaches the page through textContent only. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});

  var STYLE = {
    draft: { color: "#c0392b", weight: 2.5, fillColor: "#c0392b", fillOpacity: 0.06 },
    selected: { color: "#1f6feb", weight: 4, fillColor: "#1f6feb", fillOpacity: 0.18 },
    live: { color: "#555", weight: 2, dashArray: "6 6", fill: false, interactive: false },
    blocking: { color: "#d00000", weight: 2, fillColor: "#d00000", fillOpacity: 0.35 },
    warning: { color: "#e08e0b", weight: 2, fillColor: "#f0ad4e", fillOpacity: 0.15 },
    focus: { color: "#1f6feb", weight: 5, dashArray: "8 4", fillColor: "#1f6feb", fillOpacity: 0.25 },
    moved: { radius: 5, color: "#6f42c1", weight: 1, fillColor: "#6f42c1", fillOpacity: 0.9 },
    compareA: { color: "#1f6feb", weight: 2, fillColor: "#1f6feb", fillOpacity: 0.08 },
    compareB: { color: "#c0392b", weight: 2, fillColor: "#c0392b", fillOpacity: 0.08 },
  };

  // finding codes whose geometry is the whole grid
  var GRID_WIDE = { households_out_of_range: 1, non_contiguous: 1, code_missing: 1,
                    code_duplicate: 1, code_malformed: 1 };

  var el = Minqing.el;  // web/static/js/dom.js
  var fmt = Minqing.fmt;

  function byId(id) { return document.getElementById(id); }

  /* point-in-polygon for GeoJSON Polygon / MultiPolygon, lon/lat (ray casting, with holes) */
  function inRing(x, y, ring) {
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  function inGeometry(x, y, geom) {
    if (!geom) return false;
    var polys = geom.type === "Polygon" ? [geom.coordinates] :
      geom.type === "MultiPolygon" ? geom.coordinates : [];
    return polys.some(function (rings) {
      if (!inRing(x, y, rings[0])) return false;
      for (var k = 1; k < rings.length; k++) if (inRing(x, y, rings[k])) return false;
      return true;
    });
  }

  Minqing.planner = function (map, config) {
    var labels = config.labels;
    var urls = config.urls;
    var state = (Minqing.state = Minqing.state || { layers: {}, pending: 0, errors: [] });
    var st = (state.planner = {
      pending: 0, redraws: 0, doc: null, impact: null, history: [], generation: config.generation,
      mode: null, selected: [], focus: null, errors: [], lastEdit: null, drafts: [],
      community: config.community || (config.communities[0] || {}).code || null,
    });
    Minqing.map = map;
    if (map.options.maxZoom === undefined) map.setMaxZoom(20);
    map.pm.setLang(config.lang === "en" ? "en" : "zh");
    map.pm.setGlobalOptions({ snappable: true, snapDistance: 12, allowSelfIntersection: false });

    var liveLayer = L.geoJSON(null, { style: function () { return STYLE.live; }, interactive: false,
                                      pmIgnore: true }).addTo(map);
    var draftLayer = L.geoJSON(null, {
      pmIgnore: true,
      style: function (f) { return isSelected(f.properties.id) ? STYLE.selected : STYLE.draft; },
      onEachFeature: function (feature, layer) {
        var code = feature.properties.code;
        var seq = code && code.length === 15 ? code.slice(12) : (code || "#" + feature.properties.id);
        layer.bindTooltip(el("span", {}, seq), { permanent: true, direction: "center",
                                                className: "mq-grid-label" });
        layer.on("click", function (ev) {
          if (st.mode) return;  // a click while drawing places a vertex, it does not select
          L.DomEvent.stopPropagation(ev);
          toggleSelected(feature.properties.id);
        });
      },
    }).addTo(map);
    var findingLayer = L.geoJSON(null, {
      pmIgnore: true,
      style: function (f) { return f.properties.severity === "blocking" ? STYLE.blocking : STYLE.warning; },
      pointToLayer: function (f, latlng) { return L.circleMarker(latlng, { radius: 6 }); },
      onEachFeature: function (feature, layer) {
        layer.on("click", function (ev) {
          if (st.mode) return;
          L.DomEvent.stopPropagation(ev);
          focusFinding(feature.properties._index, false);
        });
      },
    }).addTo(map);
    // findings about a whole grid are outlined, not filled, and let clicks through to the grid
    var gridFindingLayer = L.geoJSON(null, {
      pmIgnore: true, interactive: false,
      style: function (f) {
        var base = f.properties.severity === "blocking" ? STYLE.blocking : STYLE.warning;
        return Object.assign({}, base, { fill: false, weight: 4, dashArray: "2 6" });
      },
    }).addTo(map);
    var movedLayer = L.layerGroup().addTo(map);
    var focusLayer = L.geoJSON(null, { pmIgnore: true, interactive: false,
                                       style: function () { return STYLE.focus; } }).addTo(map);

    /* ------------------------------------------------------------------ requests */
    function api(method, url, body, form) {
      var headers = { Accept: "application/json", "Accept-Language": config.lang };
      var init = { method: method, headers: headers, credentials: "same-origin" };
      if (method !== "GET") headers[Minqing.CSRF_HEADER] = Minqing.csrfToken();
      if (form) init.body = form;
      else if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      st.pending += 1;
      state.pending += 1;
      return fetch(url, init)
        .then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (b) {
            if (r.status === 401) {
              say(labels.planner_session_expired);
              global.setTimeout(function () { global.location.href = urls.login; }, 800);
            }
            return [r.status, b];
          });
        })
        .catch(function (err) {
          st.errors.push(String(err));
          return [0, { error: { message: String(err) } }];
        })
        .finally(function () { st.pending -= 1; state.pending -= 1; });
    }
    function u(template, id) { return template.replace("{id}", encodeURIComponent(id)); }

    function say(text) { byId("mq-message").textContent = text || ""; }
    function fail(res) {
      var body = res[1] || {};
      var msg = body.error ? body.error.message : "HTTP " + res[0];
      byId("mq-error").textContent = msg;
      st.errors.push(msg);
    }
    function clearMessages() { say(""); byId("mq-error").textContent = ""; }

    /* ------------------------------------------------------------------ selection */
    function isSelected(id) { return st.selected.indexOf(id) >= 0; }
    function featureById(id) {
      var feats = st.doc ? st.doc.grids.features : [];
      for (var i = 0; i < feats.length; i++) if (feats[i].properties.id === id) return feats[i];
      return null;
    }
    function toggleSelected(id) {
      var i = st.selected.indexOf(id);
      if (i >= 0) st.selected.splice(i, 1);
      else st.selected.push(id);
      showSelection();
    }
    function showSelection() {
      st.selected = st.selected.filter(function (id) { return featureById(id) !== null; });
      draftLayer.setStyle(function (f) {
        return isSelected(f.properties.id) ? STYLE.selected : STYLE.draft;
      });
      var codes = st.selected.map(function (id) {
        var f = featureById(id);
        return f.properties.code || "#" + id;
      });
      byId("mq-selected").textContent = codes.length ?
        fmt(labels.planner_selected, { codes: codes.join("、") }) : labels.planner_none_selected;
      var one = st.selected.length === 1 ? featureById(st.selected[0]) : null;
      byId("mq-rename-code").value = one ? one.properties.code || "" : "";
      byId("mq-rename-name").value = one ? one.properties.name || "" : "";
    }

    /* ------------------------------------------------------------------ rendering */
    function editable() { return st.doc && st.doc.draft.status === "open"; }

    function render(doc, fit) {
      st.doc = doc;
      st.redraws += 1;
      st.community = doc.draft.community_code;
      byId("mq-community").value = st.community;
      draftLayer.clearLayers();
      draftLayer.addData(doc.grids);
      if (fit && doc.grids.features.length) map.fitBounds(draftLayer.getBounds(), { padding: [16, 16] });
      showSelection();
      var d = doc.draft;
      var info = fmt(labels.planner_draft, { id: d.id, community: d.community_name, base: d.base_generation }) +
        " · " + fmt(labels.planner_grid_count, { n: doc.grids.features.length }) + " · " +
        (labels["planner_draft_status_" + d.status] || d.status);
      byId("mq-draft-info").textContent = info;
      byId("mq-stale").hidden = !d.stale;
      renderFindings(doc.validation);
      Array.prototype.forEach.call(document.querySelectorAll("#mq-tools button, #mq-rename button, " +
        "#mq-upload button, #mq-propose button"), function (b) { b.disabled = !editable(); });
      if (d.rules) {
        byId("mq-hh-min").value = d.rules.households_min;
        byId("mq-hh-max").value = d.rules.households_max;
      }
      updatePublish();
      loadImpact();
      loadLive();
    }

    function renderFindings(v) {
      var list = byId("mq-findings");
      list.textContent = "";
      findingLayer.clearLayers();
      gridFindingLayer.clearLayers();
      focusLayer.clearLayers();
      st.focus = null;
      var feats = v.findings.features;
      byId("mq-validation-summary").textContent = feats.length ?
        fmt(labels.planner_validation_summary, { b: v.blocking, w: v.warnings }) : labels.planner_validation_ok;
      feats.forEach(function (f, i) {
        f.properties._index = i;
        var sev = f.properties.severity;
        var li = el("li", { class: "finding is-" + sev, tabindex: "0", "data-index": String(i),
                            "data-code": f.properties.code, "data-severity": sev });
        li.appendChild(el("span", { class: "badge badge-" + sev },
          sev === "blocking" ? labels.planner_blocking : labels.planner_warning));
        li.appendChild(el("span", { class: "msg" }, f.properties.message));
        li.addEventListener("click", function () { focusFinding(i, true); });
        li.addEventListener("keydown", function (ev) {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); focusFinding(i, true); }
        });
        list.appendChild(li);
        if (f.geometry) (GRID_WIDE[f.properties.code] ? gridFindingLayer : findingLayer).addData(f);
      });
      findingLayer.bringToFront();
    }

    function focusFinding(i, zoom) {
      var f = st.doc.validation.findings.features[i];
      if (!f) return;
      st.focus = i;
      focusLayer.clearLayers();
      Array.prototype.forEach.call(byId("mq-findings").children, function (li) {
        li.classList.toggle("is-selected", li.getAttribute("data-index") === String(i));
      });
      var geom = f.geometry;
      if (!geom && f.properties.grids.length) {
        var g = featureById(f.properties.grids[0]);
        geom = g ? g.geometry : null;
      }
      if (geom) {
        focusLayer.addData({ type: "Feature", geometry: geom, properties: {} });
        if (zoom) map.fitBounds(focusLayer.getBounds(), { maxZoom: 18, padding: [30, 30] });
      }
      var item = byId("mq-findings").children[i];
      if (item && !zoom) item.scrollIntoView({ block: "nearest" });
    }

    function updatePublish() {
      var btn = byId("mq-publish");
      var hint = byId("mq-publish-hint");
      if (!st.doc || !editable()) {
        btn.disabled = true;
        hint.textContent = "";
      } else if (st.doc.validation.blocking > 0 || st.doc.draft.stale) {
        btn.disabled = true;
        hint.textContent = st.doc.draft.stale ? labels.planner_stale : labels.planner_publish_blocked;
      } else {
        btn.disabled = false;
        hint.textContent = "";
      }
      byId("mq-undo").disabled = undoTarget() === null;
    }

    function loadLive() {
      if (!st.community) return;
      var url = u(urls.generation_grids, st.generation) + "?community=" + encodeURIComponent(st.community);
      var seq = (st.liveSeq = (st.liveSeq || 0) + 1);
      api("GET", url).then(function (res) {
        if (seq !== st.liveSeq) return;
        liveLayer.clearLayers();
        if (res[0] === 200) {
          liveLayer.addData(res[1]);
          st.live = { generation: res[1].generation, grids: res[1].features.length };
        }
        else fail(res);
      });
    }

    function loadImpact() {
      if (!st.doc) return;
      var id = st.doc.draft.id;
      var seq = (st.impactSeq = (st.impactSeq || 0) + 1);
      api("GET", u(urls.impact, id)).then(function (res) {
        if (seq !== st.impactSeq) return;  // a newer edit asked again
        if (res[0] !== 200) { fail(res); return; }
        st.impact = res[1];
        renderImpact(res[1]);
      });
    }

    function renderImpact(imp) {
      var t = imp.totals;
      byId("mq-impact-totals").textContent = fmt(labels.planner_impact_totals, {
        c: t.grids_changed, a: t.grids_added, r: t.grids_removed, b: t.buildings_moved, h: t.households_moved,
      });
      byId("mq-impact-people").textContent = fmt(labels.planner_impact_people, {
        q: t.requests_moved, v: t.volunteers_moved, l: t.building_leaders_moved, g: t.grid_leaders_affected,
      });
      var body = byId("mq-impact-table").tBodies[0];
      body.textContent = "";
      imp.grids.forEach(function (g) {
        var tr = el("tr", { class: "is-" + g.status, "data-code": g.code });
        var delta = g.households_after - g.households_before;
        tr.appendChild(el("td", { class: "mono" }, g.code));
        tr.appendChild(el("td", { class: "num" }, g.households_before));
        tr.appendChild(el("td", { class: "num" }, g.households_after));
        tr.appendChild(el("td", { class: "num" }, (delta > 0 ? "+" : "") + delta));
        tr.appendChild(el("td", {}, labels["planner_status_" + g.status] || g.status));
        body.appendChild(tr);
      });
      var lists = byId("mq-impact-lists");
      lists.textContent = "";
      function section(title, items, line) {
        if (!items.length) return;
        var det = el("details", { class: "mq-people" });
        det.appendChild(el("summary", {}, title + " (" + items.length + ")"));
        var ul = el("ul");
        items.slice(0, 200).forEach(function (x) { ul.appendChild(el("li", {}, line(x))); });
        det.appendChild(ul);
        lists.appendChild(det);
      }
      function move(x) { return (x.from || "—") + " → " + (x.to || "—"); }
      section(labels.planner_requests_moved, imp.requests, function (x) { return x.number + " · " + move(x); });
      section(labels.planner_volunteers_moved, imp.volunteers, function (x) { return x.name + " · " + move(x); });
      section(labels.planner_leaders_moved, imp.building_leaders, function (x) {
        return x.building + " · " + x.leader_name + " · " + move(x);
      });
      section(labels.planner_grid_leaders, imp.grid_leaders, function (x) {
        return (x.username || x.user_id) + " · " + x.grid + " · +" + x.area_gained_m2 + " / −" + x.area_lost_m2 + " m²";
      });
      movedLayer.clearLayers();
      imp.buildings_moved.forEach(function (b) {
        var text = b.code + " · " + move(b) + " · " + b.households + " " + labels.households;
        L.circleMarker([b.point[1], b.point[0]], STYLE.moved)
          .bindTooltip(el("span", {}, text))
          .addTo(movedLayer);
      });
    }

    /* ------------------------------------------------------------------ drafts */
    function loadDrafts() {
      return api("GET", urls.drafts).then(function (res) {
        if (res[0] !== 200) { fail(res); return; }
        st.drafts = res[1].drafts;
        var list = byId("mq-drafts");
        list.textContent = "";
        st.drafts.filter(function (d) { return d.status === "open"; }).slice(0, 8).forEach(function (d) {
          var li = el("li", { "data-id": String(d.id) });
          var b = el("button", { type: "button", class: "link" },
            "#" + d.id + " · " + d.community_name + " · " + fmt(labels.planner_grid_count, { n: d.grids }));
          b.addEventListener("click", function () { openDraftId(d.id); });
          li.appendChild(b);
          list.appendChild(li);
        });
      });
    }

    function openDraftId(id) {
      clearMessages();
      return api("GET", u(urls.draft, id)).then(function (res) {
        if (res[0] !== 200) { fail(res); return; }
        st.selected = [];
        render(res[1], true);
      });
    }

    function openCommunity(code, fresh) {
      clearMessages();
      st.community = code;
      var existing = fresh ? null : st.drafts.filter(function (d) {
        return d.status === "open" && d.community_code === code;
      })[0];
      if (existing) return openDraftId(existing.id);
      return api("POST", urls.drafts, { community_code: code }).then(function (res) {
        if (res[0] !== 201) { fail(res); return; }
        st.selected = [];
        render(res[1], true);
        loadDrafts();
      });
    }

    function edit(body, form) {
      if (!st.doc) return Promise.resolve();
      clearMessages();
      // geometries are drawn over the draft as the API returns it (WGS84): no crs to send
      say(labels.planner_working);
      var id = st.doc.draft.id;
      var req = form ? api("POST", u(urls.upload, id), undefined, form) :
        api("POST", u(urls.edits, id), body);
      return req.then(function (res) {
        say("");
        if (res[0] !== 200) { fail(res); return; }
        st.lastEdit = res[1].edit;
        render(res[1], false);
        say(fmt(labels.planner_edit_done, { op: (res[1].edit && res[1].edit.op) || "" }));
      });
    }

    /* ------------------------------------------------------------------ drawing tools */
    function setMode(mode) {
      st.mode = mode;
      byId("mq-tool-cancel").hidden = !mode;
      Array.prototype.forEach.call(document.querySelectorAll("#mq-tools [data-tool]"), function (b) {
        b.classList.toggle("is-active", b.getAttribute("data-tool") === mode);
      });
      var hints = { draw: labels.planner_hint_draw, split: labels.planner_hint_split,
                    move: labels.planner_hint_move };
      byId("mq-hint").textContent = hints[mode] || labels.planner_hint_select;
      if (mode) map.doubleClickZoom.disable();
      else map.doubleClickZoom.enable();
    }
    function startDraw(mode) {
      clearMessages();
      if (mode === "move" && st.selected.length !== 2) { byId("mq-error").textContent = labels.planner_need_two; return; }
      map.pm.disableDraw();
      setMode(mode);
      map.pm.enableDraw(mode === "draw" ? "Polygon" : "Line", { snappable: true, continueDrawing: false });
    }
    function cancelDraw() {
      map.pm.disableDraw();
      setMode(null);
    }
    Minqing.plannerStartDraw = startDraw;  // for scripted use (tests, console)

    map.on("pm:create", function (e) {
      var mode = st.mode;
      var geom = e.layer.toGeoJSON(8).geometry;
      map.removeLayer(e.layer);
      setMode(null);
      if (mode === "draw") {
        edit({ op: "draw", geometry: geom, mode: byId("mq-draw-mode").value });
      } else if (mode === "split") {
        var target = st.selected.length === 1 ? st.selected[0] : gridUnderLine(geom);
        if (target === null) { byId("mq-error").textContent = labels.planner_no_target; return; }
        edit({ op: "split", grid: target, line: geom });
      } else if (mode === "move") {
        edit({ op: "move_boundary", grids: st.selected.slice(0, 2), line: geom });
      }
    });

    function gridUnderLine(line) {
      var c = line.coordinates;
      var best = null, hits = {};
      for (var k = 0; k + 1 < c.length; k++) {  // sample each segment; the grid hit most wins
        for (var s = 1; s < 20; s++) {
          var x = c[k][0] + ((c[k + 1][0] - c[k][0]) * s) / 20;
          var y = c[k][1] + ((c[k + 1][1] - c[k][1]) * s) / 20;
          st.doc.grids.features.forEach(function (f) {
            if (inGeometry(x, y, f.geometry)) hits[f.properties.id] = (hits[f.properties.id] || 0) + 1;
          });
        }
      }
      Object.keys(hits).forEach(function (id) { if (best === null || hits[id] > hits[best]) best = id; });
      return best === null ? null : Number(best);
    }

    Array.prototype.forEach.call(document.querySelectorAll("#mq-tools [data-tool]"), function (b) {
      b.addEventListener("click", function () {
        var tool = b.getAttribute("data-tool");
        if (tool === "draw" || tool === "split" || tool === "move") { startDraw(tool); return; }
        cancelDraw();
        clearMessages();
        if (tool === "merge") {
          if (st.selected.length < 2) { byId("mq-error").textContent = labels.planner_need_two; return; }
          edit({ op: "merge", grids: st.selected.slice() });
        } else if (tool === "delete") {
          if (st.selected.length !== 1) { byId("mq-error").textContent = labels.planner_need_one; return; }
          edit({ op: "delete", grid: st.selected[0] });
        } else if (tool === "repair") {
          edit({ op: "repair" });
        } else if (tool === "renumber") {
          edit({ op: "renumber" });
        }
      });
    });
    byId("mq-tool-cancel").addEventListener("click", cancelDraw);
    document.addEventListener("keydown", function (ev) { if (ev.key === "Escape" && st.mode) cancelDraw(); });

    byId("mq-rename").addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (st.selected.length !== 1) { byId("mq-error").textContent = labels.planner_need_one; return; }
      edit({ op: "rename", grid: st.selected[0], code: byId("mq-rename-code").value.trim(),
             name: byId("mq-rename-name").value.trim() });
    });
    byId("mq-upload").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = byId("mq-upload-file").files[0];
      if (!file) { byId("mq-error").textContent = labels.planner_upload_hint; return; }
      var form = new FormData();
      form.append("file", file);
      if (byId("mq-upload-crs").value) form.append("crs", byId("mq-upload-crs").value);
      edit({}, form);
    });
    byId("mq-propose").addEventListener("submit", function (ev) {
      ev.preventDefault();
      edit({ op: "propose", households_min: Number(byId("mq-hh-min").value),
             households_max: Number(byId("mq-hh-max").value),
             follow_streets: byId("mq-follow-streets").checked });
    });

    /* ------------------------------------------------------------------ publish / undo */
    function confirmDialog(text) {
      var dlg = byId("mq-confirm");
      byId("mq-confirm-text").textContent = text;
      return new Promise(function (resolve) {
        function done(answer) {
          byId("mq-confirm-yes").removeEventListener("click", yes);
          byId("mq-confirm-no").removeEventListener("click", no);
          dlg.removeEventListener("cancel", no);
          dlg.close();
          resolve(answer);
        }
        function yes() { done(true); }
        function no() { done(false); }
        byId("mq-confirm-yes").addEventListener("click", yes);
        byId("mq-confirm-no").addEventListener("click", no);
        dlg.addEventListener("cancel", no);
        dlg.showModal();
      });
    }

    function latestGeneration() {
      return st.history.reduce(function (m, g) { return Math.max(m, g.id); }, st.generation || 0);
    }

    byId("mq-publish").addEventListener("click", function () {
      if (!st.doc || byId("mq-publish").disabled) return;
      var id = st.doc.draft.id;
      confirmDialog(fmt(labels.planner_publish_confirm, { id: id, n: latestGeneration() + 1 }))
        .then(function (ok) {
          if (!ok) return null;
          clearMessages();
          say(labels.planner_working);
          return api("POST", u(urls.publish, id)).then(function (res) {
            if (res[0] !== 201) { say(""); fail(res); return null; }
            st.generation = res[1].generation;
            return Promise.all([openDraftId(id), loadHistory(), loadDrafts()]).then(function () {
              say(fmt(labels.planner_published, { n: res[1].generation, q: res[1].requests_rehomed,
                                                c: res[1].requests_changed_grid }));
            });
          });
        });
    });

    function undoTarget() {
      if (!st.community) return null;
      for (var i = 0; i < st.history.length; i++) {  // newest first
        var g = st.history[i];
        var s = g.summary || {};
        if (s.community_code === st.community && (s.action === "publish" || s.action === "restore")) {
          return g.id > 1 ? g.id - 1 : null;
        }
      }
      return null;
    }

    byId("mq-undo").addEventListener("click", function () {
      var target = undoTarget();
      if (target === null) return;
      confirmDialog(fmt(labels.planner_undo_confirm, { n: target })).then(function (ok) {
        if (!ok) return null;
        clearMessages();
        say(labels.planner_working);
        return api("POST", u(urls.restore, target), { community_code: st.community }).then(function (res) {
          if (res[0] !== 201) { say(""); fail(res); return null; }
          st.generation = res[1].generation;
          return loadHistory().then(function () {
            loadLive();
            if (st.doc) openDraftId(st.doc.draft.id);
            say(fmt(labels.planner_restored, { g: target, n: res[1].generation }));
          });
        });
      });
    });

    /* ------------------------------------------------------------------ history / compare */
    function loadHistory() {
      return api("GET", urls.generations + "?limit=50").then(function (res) {
        if (res[0] !== 200) { fail(res); return; }
        st.history = res[1].generations;
        st.generation = latestGeneration();
        var list = byId("mq-history");
        list.textContent = "";
        st.history.forEach(function (g, i) {
          var s = g.summary || {};
          var li = el("li", { "data-generation": String(g.id) });
          var box = el("input", { type: "checkbox", value: String(g.id), "aria-label": fmt(labels.planner_generation, { n: g.id }) });
          box.checked = i < 2;
          li.appendChild(box);
          li.appendChild(el("strong", {}, fmt(labels.planner_generation, { n: g.id })));
          if (g.current) li.appendChild(el("span", { class: "badge badge-live" }, labels.planner_current));
          var when = g.published_at ? g.published_at.slice(0, 16).replace("T", " ") : "";
          var what = [when, g.published_by || "", labels["planner_action_" + s.action] || s.action || s.source || "",
                      s.community_code || ""].filter(Boolean).join(" · ");
          li.appendChild(el("div", { class: "meta" }, what));
          list.appendChild(li);
        });
        updatePublish();
      });
    }

    var compare = { a: null, b: null, la: null, lb: null, syncing: false };
    function compareMaps() {
      if (compare.a) return;
      compare.a = L.map("mq-compare-a", { zoomControl: true, attributionControl: false, maxZoom: 20 });
      compare.b = L.map("mq-compare-b", { zoomControl: true, attributionControl: false, maxZoom: 20 });
      compare.la = L.layerGroup().addTo(compare.a);
      compare.lb = L.layerGroup().addTo(compare.b);
      function sync(from, to) {
        from.on("move zoom", function () {
          if (compare.syncing) return;
          compare.syncing = true;
          to.setView(from.getCenter(), from.getZoom(), { animate: false });
          compare.syncing = false;
        });
      }
      sync(compare.a, compare.b);
      sync(compare.b, compare.a);
    }
    function gridsLayer(fc, style) {
      return L.geoJSON(fc, {
        style: function () { return style; },
        onEachFeature: function (f, layer) {
          layer.bindTooltip(el("span", {}, f.properties.code ? f.properties.code.slice(12) : ""), {
            permanent: true, direction: "center", className: "mq-grid-label" });
        },
      });
    }
    byId("mq-compare").addEventListener("click", function () {
      clearMessages();
      var picked = Array.prototype.filter.call(byId("mq-history").querySelectorAll("input"), function (x) {
        return x.checked;
      }).map(function (x) { return Number(x.value); }).sort(function (x, y) { return x - y; });
      if (picked.length !== 2 || !st.community) { byId("mq-error").textContent = labels.planner_compare_pick; return; }
      var q = "?community=" + encodeURIComponent(st.community);
      Promise.all([api("GET", u(urls.generation_grids, picked[0]) + q),
                   api("GET", u(urls.generation_grids, picked[1]) + q)]).then(function (res) {
        if (res[0][0] !== 200) { fail(res[0]); return; }
        if (res[1][0] !== 200) { fail(res[1]); return; }
        byId("mq-compare-view").hidden = false;
        byId("mq-compare-title").textContent = fmt(labels.planner_compare_title, { a: picked[0], b: picked[1] });
        byId("mq-compare-label-a").textContent = fmt(labels.planner_generation, { n: picked[0] }) +
          " · " + fmt(labels.planner_grid_count, { n: res[0][1].features.length });
        byId("mq-compare-label-b").textContent = fmt(labels.planner_generation, { n: picked[1] }) +
          " · " + fmt(labels.planner_grid_count, { n: res[1][1].features.length });
        compareMaps();
        compare.a.invalidateSize();
        compare.b.invalidateSize();
        compare.la.clearLayers();
        compare.lb.clearLayers();
        var a = gridsLayer(res[0][1], STYLE.compareA).addTo(compare.la);
        var b = gridsLayer(res[1][1], STYLE.compareB).addTo(compare.lb);
        // the other generation's outlines, dashed, under each map's own grids
        L.geoJSON(res[1][1], { style: Object.assign({}, STYLE.live, { color: "#c0392b" }) }).addTo(compare.la);
        L.geoJSON(res[0][1], { style: Object.assign({}, STYLE.live, { color: "#1f6feb" }) }).addTo(compare.lb);
        var bounds = a.getBounds();
        if (b.getLayers().length) bounds = bounds.isValid() ? bounds.extend(b.getBounds()) : b.getBounds();
        if (bounds.isValid()) compare.a.fitBounds(bounds, { padding: [10, 10], animate: false });
        st.compared = [picked[0], picked[1], res[0][1].features.length, res[1][1].features.length];
      });
    });
    byId("mq-compare-close").addEventListener("click", function () { byId("mq-compare-view").hidden = true; });

    /* ------------------------------------------------------------------ start */
    byId("mq-open").addEventListener("click", function () { openCommunity(byId("mq-community").value, false); });
    byId("mq-new").addEventListener("click", function () { openCommunity(byId("mq-community").value, true); });
    byId("mq-community").addEventListener("change", function () {
      st.community = byId("mq-community").value;
      var lang = byId("mq-lang");
      lang.href = "?lang=" + lang.getAttribute("data-other") + "&community=" + encodeURIComponent(st.community);
      loadLive();
      updatePublish();
    });
    showSelection();
    Array.prototype.forEach.call(document.querySelectorAll("#mq-tools button, #mq-rename button, " +
      "#mq-upload button, #mq-propose button"), function (b) { b.disabled = true; });
    Promise.all([loadDrafts(), loadHistory()]).then(function () {
      if (config.draft) return openDraftId(config.draft);
      if (config.community) {
        var open = st.drafts.filter(function (d) {
          return d.status === "open" && d.community_code === config.community;
        })[0];
        if (open) return openDraftId(open.id);
      }
      loadLive();
      return null;
    }).finally(function () { st.ready = true; });
  };
})(window);
