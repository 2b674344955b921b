/* Staff pages: the triage / escalation inbox synced with its map, and the dashboard
 * (党建地图: choropleths, heat map, metrics table). Everything goes through the public API;
 * user text reaches the page through textContent only, never as HTML. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});
  var DRAFT = "mq-staff:draft:";
  var OPEN_KEY = "mq-staff:open";

  function state() {
    Minqing.state = Minqing.state || { layers: {}, pending: 0, errors: [] };
    Minqing.state.layers = Minqing.state.layers || {};
    return Minqing.state;
  }

  var el = Minqing.el;  // web/static/js/dom.js
  var fmt = Minqing.fmt;

  function storage() {
    try { return global.sessionStorage; } catch (e) { return null; }
  }

  function store(key, value) {
    var s = storage();
    if (!s) return;
    if (value === null || value === undefined || value === "") s.removeItem(key);
    else s.setItem(key, value);
  }

  function recall(key) {
    var s = storage();
    return s ? s.getItem(key) : null;
  }

  function forget(prefix) {
    var s = storage();
    if (!s) return;
    var keys = [];
    for (var i = 0; i < s.length; i++) if (s.key(i).indexOf(prefix) === 0) keys.push(s.key(i));
    keys.forEach(function (k) { s.removeItem(k); });
  }

  /* fetch JSON from our API; a 401 means the session has expired: back to the login page. */
  function makeApi(config, onExpired) {
    return function (url, opts) {
      opts = opts || {};
      var headers = { Accept: "application/json", "Accept-Language": config.lang };
      if (opts.body) headers["Content-Type"] = "application/json";
      if (opts.version) headers["If-Match"] = '"' + opts.version + '"';  // the version shown
      if (opts.method && opts.method !== "GET") headers[Minqing.CSRF_HEADER] = Minqing.csrfToken();
      var st = state();
      st.pending += 1;
      return fetch(url, { method: opts.method || "GET", credentials: "same-origin",
                          headers: headers, body: opts.body, signal: opts.signal })
        .then(function (r) {
          return r.json().catch(function () { return null; }).then(function (b) {
            if (r.status === 401) {
              onExpired();
              var err = new Error("unauthorized");
              err.expired = true;
              throw err;
            }
            return { status: r.status, body: b };
          });
        })
        .finally(function () { st.pending -= 1; });
    };
  }

  function errorText(res) {
    return res.body && res.body.error ? res.body.error.message : "HTTP " + res.status;
  }

  function expiredHandler(config) {
    var gone = false;
    return function () {
      if (gone) return;
      gone = true;
      var toast = document.getElementById("mq-toast") || document.getElementById("mq-error");
      if (toast) toast.textContent = config.labels.staff_session_expired;
      state().expired = true;
      setTimeout(function () { global.location.href = config.urls.login; }, 300);
    };
  }

  // -- the inbox ----------------------------------------------------------------------------
  Minqing.staffInbox = function (map, config) {
    var labels = config.labels;
    var st = state();
    var inbox = (st.inbox = { items: [], selected: null, actions: 0, loaded: false });
    var markerLayer = L.featureGroup().addTo(map);
    st.layers.requests = { layer: markerLayer, count: 0, loaded: false };
    Minqing.map = map;
    var api = makeApi(config, expiredHandler(config));
    var rows = {};  // id -> {item, marker, li}
    var filter = "all";
    var list = document.getElementById("mq-inbox");
    var count = document.getElementById("mq-count");
    var toast = document.getElementById("mq-toast");
    var gridsByCommunity = {};
    config.grids.forEach(function (g) {
      (gridsByCommunity[g.community_code] = gridsByCommunity[g.community_code] || []).push(g);
    });

    function levelName(level) { return labels["level_" + level] || level; }
    function statusName(s) { return labels["status_" + s] || s; }
    function shortTime(iso) { return iso ? iso.slice(0, 16).replace("T", " ") : ""; }

    function rank(item) {
      return (item.status === "triage" ? 0 : 2) + (item.overdue ? 0 : 1);
    }

    function sortItems(items) {
      return items.slice().sort(function (a, b) {
        var d = rank(a) - rank(b);
        if (d) return d;
        var da = a.deadline || "9999", db = b.deadline || "9999";
        return da < db ? -1 : da > db ? 1 : a.id - b.id;
      });
    }

    function colour(item) {
      if (item.overdue) return "#d00000";
      if (item.status === "triage") return "#6f42c1";
      return "#f08c00";
    }

    function styleMarker(entry) {
      var item = entry.item;
      var selected = inbox.selected === item.id;
      entry.marker.setStyle({ color: selected ? "#1f6feb" : "#ffffff", weight: selected ? 4 : 2,
                              fillColor: colour(item), fillOpacity: 0.95,
                              radius: item.overdue ? 10 : 8 });
    }

    function visible(item) {
      if (filter === "triage") return item.status === "triage";
      if (filter === "overdue") return item.overdue || item.was_overdue;
      return true;
    }

    function renderRow(item) {
      var li = el("li", { "data-id": item.id, tabindex: "0", role: "button" });
      if (item.status === "triage") li.classList.add("is-triage");
      if (item.overdue) li.classList.add("is-overdue");
      if (inbox.selected === item.id) li.classList.add("is-selected");
      var head = el("div", { class: "row-head" });
      head.appendChild(el("span", { class: "number" }, item.number));
      head.appendChild(el("span", { class: "badge badge-" + item.status }, statusName(item.status)));
      var late = Minqing.latenessBadge(item, labels, "badge");
      if (late) head.appendChild(late);
      var awaiting = Minqing.awaitingText(item, labels);
      if (awaiting) head.appendChild(el("span", { class: "badge badge-awaiting" }, awaiting));
      head.appendChild(el("span", { class: "badge" }, levelName(item.owner_level)));
      li.appendChild(head);
      li.appendChild(el("div", { class: "text" }, item.text));
      var where = item.grid ? item.grid.name + " " + item.grid.code
        : (item.community ? item.community.name + " · " : "") + labels.staff_no_grid;
      li.appendChild(el("div", { class: "meta" },
        (config.categories[item.category] || item.category) + " · " + where + " · " +
        labels.deadline + " " + shortTime(item.deadline) + " · " + Minqing.ago(item.created_at, labels)));
      li.addEventListener("click", function () { select(item.id, true); });
      li.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(item.id, true); }
      });
      return li;
    }

    function renderList() {
      list.textContent = "";
      var items = sortItems(inbox.items);
      var shown = 0, overdue = 0, late = 0;
      items.forEach(function (item) {
        if (item.overdue) overdue += 1;
        else if (item.was_overdue) late += 1;
        if (!visible(item)) return;
        shown += 1;
        var li = renderRow(item);
        rows[item.id].li = li;
        list.appendChild(li);
      });
      count.textContent = fmt(labels.staff_count, { n: inbox.items.length, o: overdue, w: late });
      if (!shown) list.appendChild(el("li", { class: "empty" }, labels.staff_empty));
    }

    /* where the map draws an item: the list is asked for in the basemap's CRS */
    function latlng(item) { return [item.location.lat, item.location.lon]; }

    function addMarker(item) {
      var marker = L.circleMarker(latlng(item), { radius: 8 });
      marker.bindTooltip(el("span", {}, item.number), { direction: "top" });
      var box = el("div", { class: "mq-detail", "data-id": item.id });
      marker.bindPopup(box, { maxWidth: 340, minWidth: 240, autoPanPadding: [16, 16],
                              maxHeight: Math.max(200, map.getSize().y - 60) });
      marker.on("click", function () { select(item.id, false); });
      marker.on("popupopen", function () {
        store(OPEN_KEY, String(item.id));
        loadDetail(item.id, box, marker);
      });
      marker.on("popupclose", function () {
        if (recall(OPEN_KEY) === String(item.id)) store(OPEN_KEY, null);
      });
      marker.addTo(markerLayer);
      return marker;
    }

    /* Bring the map and the list to the same fresh set of items. */
    function reconcile(items) {
      var keep = {};
      items.forEach(function (item) {
        keep[item.id] = true;
        if (rows[item.id]) {
          rows[item.id].item = item;
          rows[item.id].marker.setLatLng(latlng(item));
        } else {
          rows[item.id] = { item: item, marker: null, li: null };
          rows[item.id].marker = addMarker(item);
        }
        styleMarker(rows[item.id]);
      });
      Object.keys(rows).forEach(function (id) {
        if (!keep[id]) {
          markerLayer.removeLayer(rows[id].marker);
          delete rows[id];
          if (inbox.selected === Number(id)) inbox.selected = null;
        }
      });
      inbox.items = items;
      st.layers.requests.count = items.length;
      renderList();
    }

    function loadAll(url, acc) {
      return api(url).then(function (res) {
        if (res.status !== 200) throw new Error(errorText(res));
        acc = acc.concat(res.body.requests || []);
        return res.body.links && res.body.links.next ? loadAll(res.body.links.next, acc) : acc;
      });
    }

    function loadList() {
      st.layers.requests.loaded = false;
      var url = config.urls.list + "?limit=1000&status=" + config.open.join(",") +
        "&owner_level=" + config.levels.join(",") + "&crs=" + config.crs;
      return loadAll(url, [])
        .then(function (items) {
          reconcile(items.filter(function (i) { return config.levels.indexOf(i.owner_level) >= 0; }));
          inbox.loaded = true;
        })
        .catch(function (err) {
          if (!err.expired) { st.errors.push(String(err)); count.textContent = String(err.message); }
        })
        .finally(function () { st.layers.requests.loaded = true; });
    }

    function select(id, fly) {
      var entry = rows[id];
      if (!entry) return;
      var previous = inbox.selected;
      inbox.selected = id;
      if (previous && rows[previous]) styleMarker(rows[previous]);
      styleMarker(entry);
      entry.marker.bringToFront();
      Array.prototype.forEach.call(list.querySelectorAll("li.is-selected"), function (li) {
        li.classList.remove("is-selected");
      });
      if (entry.li) {
        entry.li.classList.add("is-selected");
        if (!fly) entry.li.scrollIntoView({ block: "nearest" });
      }
      if (fly) {
        var target = entry.marker.getLatLng();
        var zoom = Math.max(map.getZoom(), 16);
        var open = function () { if (!entry.marker.isPopupOpen()) entry.marker.openPopup(); };
        if (map.getCenter().distanceTo(target) < 5 && map.getZoom() === zoom) open();
        else {
          map.once("moveend", open);
          map.flyTo(target, zoom, { duration: 0.5 });
        }
      }
    }

    // -- detail and actions -----------------------------------------------------------------
    function loadDetail(id, box, marker) {
      box.textContent = labels.loading;
      return api(fmt(config.urls.detail, { id: id })).then(function (res) {
        if (res.status !== 200) { box.textContent = errorText(res); return; }
        return volunteersNear(res.body).then(function (near) {
          res.body.volunteersNear = near;
          renderDetail(box, res.body);
          marker.getPopup().update();
        });
      }).catch(function (err) { if (!err.expired) box.textContent = String(err.message); });
    }

    function renderDetail(box, d) {
      box.textContent = "";
      var h = el("h3", {});
      h.appendChild(el("span", { class: "number" }, d.number + " "));
      h.appendChild(el("span", { class: "badge badge-" + d.status }, statusName(d.status)));
      var lateness = Minqing.latenessBadge(d, labels, "badge");
      if (lateness) h.appendChild(lateness);
      var awaiting = Minqing.awaitingText(d, labels);
      if (awaiting) h.appendChild(el("span", { class: "badge badge-awaiting" }, awaiting));
      box.appendChild(h);
      box.appendChild(el("div", { class: "text", id: "mq-detail-text" }, d.text));
      var dl = el("dl", {});
      function row(k, v) {
        if (v === null || v === undefined || v === "") return;
        dl.appendChild(el("dt", {}, k));
        dl.appendChild(el("dd", {}, v));
      }
      row(labels.category, config.categories[d.category] || d.category);
      row(labels.grids, d.grid ? d.grid.name + " " + d.grid.code : labels.staff_no_grid);
      row(labels.community, d.community ? d.community.name : null);
      row(labels.staff_owner_level, levelName(d.owner_level));
      row(labels.deadline, shortTime(d.deadline));
      row(labels.staff_created, shortTime(d.created_at));
      if (d.contact && (d.contact.name || d.contact.phone)) {
        row(labels.staff_contact, [d.contact.name, d.contact.phone].filter(Boolean).join(" "));
      }
      box.appendChild(dl);
      box.appendChild(el("strong", {}, labels.timeline));
      var ol = el("ol", { class: "timeline" });
      (d.timeline || []).forEach(function (ev) {
        var li = el("li", {});
        li.appendChild(el("time", {}, shortTime(ev.at) + (ev.actor ? " · " + ev.actor : "")));
        li.appendChild(el("span", {}, (labels["action_" + ev.action] || ev.action) +
          (ev.owner_level ? " (" + levelName(ev.owner_level) + ")" : "")));
        if (ev.note) li.appendChild(el("div", { class: "note" }, ev.note));
        ol.appendChild(li);
      });
      box.appendChild(ol);
      if (config.canAct) box.appendChild(actionForm(d));
    }

    function popupUpdate(id) {
      var entry = rows[id];
      if (entry && entry.marker.isPopupOpen()) entry.marker.getPopup().update();
    }

    var FIELDS = Minqing.ACTION_FIELDS;  // web/static/js/dom.js: what each action asks for

    /* the community's grids first (but the request's own), then the others in scope; with
     * ``prefix`` "g:" and ``volunteers`` (optgroups), a reassign's target, volunteers first */
    function gridSelect(d, key, prefix, volunteers) {
      prefix = prefix || "";
      var select = el("select", { name: key, required: "required" });
      (volunteers || []).forEach(function (g) { select.appendChild(g); });
      var home = d.community ? d.community.code : null;
      var own = gridsByCommunity[home] || [];
      var first = el("optgroup", { label: d.community ? d.community.name : labels.grids });
      own.forEach(function (g) {
        if (!d.grid || g.code !== d.grid.code) {
          first.appendChild(el("option", { value: prefix + g.code }, g.name + " " + g.code));
        }
      });
      if (first.children.length) select.appendChild(first);
      Object.keys(gridsByCommunity).forEach(function (c) {
        if (c === home) return;
        var group = el("optgroup", { label: config.communities[c] || c });
        gridsByCommunity[c].forEach(function (g) {
          group.appendChild(el("option", { value: prefix + g.code }, g.name + " " + g.code));
        });
        select.appendChild(group);
      });
      return select;
    }

    /* the volunteers of the caller's scope around a request (the volunteers layer, about 2 km
     * each way): those a reassign may name besides the offered ones; null when they cannot
     * be read (then the offers alone) */
    var NEAR_DEG = 0.02;
    function volunteersNear(d) {
      if (!config.canAct || !config.urls.volunteers || !d.location ||
          (d.allowed_actions || []).indexOf("reassign") < 0) return Promise.resolve(null);
      var x = d.location.lon, y = d.location.lat;
      var bbox = [x - NEAR_DEG, y - NEAR_DEG, x + NEAR_DEG, y + NEAR_DEG].map(function (v) {
        return v.toFixed(6);
      }).join(",");
      return api(config.urls.volunteers + "&bbox=" + bbox).then(function (res) {
        if (res.status !== 200) throw new Error(errorText(res));
        return res.body.features || [];
      }).catch(function (err) {
        if (!err.expired) st.errors.push(String(err));
        return null;
      });
    }

    function actionForm(d) {
      var form = el("form", { class: "mq-act", novalidate: "novalidate" });
      var actions = (d.allowed_actions || []).filter(function (a) {
        return config.actions.indexOf(a) >= 0 && a in FIELDS;
      });
      if (!actions.length) return form;
      var prefix = DRAFT + d.id + ":";
      var chooser = el("select", { name: "action", "aria-label": labels.staff_action });
      actions.forEach(function (a) { chooser.appendChild(el("option", { value: a }, labels["do_" + a] || a)); });
      var saved = recall(prefix + "action");
      if (saved && actions.indexOf(saved) >= 0) chooser.value = saved;
      var label = el("label", {}, labels.staff_action);
      label.appendChild(chooser);
      form.appendChild(label);
      var fields = el("div", { class: "fields" });
      form.appendChild(fields);
      var restored = el("p", { class: "mq-restored", role: "status" });
      form.appendChild(restored);
      var error = el("p", { class: "mq-error", role: "alert" });
      var button = el("button", { type: "submit" }, labels.staff_do);
      form.appendChild(error);
      form.appendChild(button);

      function build() {
        fields.textContent = "";
        var action = chooser.value;
        var any = false;
        FIELDS[action].forEach(function (field) {
          var key = field[0], kind = field[1];
          var title = Minqing.fieldTitle(kind, labels);
          var input = kind === "grid" ? gridSelect(d, key)
            : kind === "target" ? gridSelect(d, key, "g:", Minqing.volunteerGroups(d, d.volunteersNear || null, labels))
            : kind === "override" ? el("input", { type: "checkbox", name: key })
            : kind === "number" ? el("input", { name: key, autocomplete: "off" })
            : el("textarea", { name: key, rows: "2", maxlength: "2000" });
          if (field[2]) input.setAttribute("required", "required");
          if (kind === "override") {  // a confirmation is not kept as a draft
            var check = el("label", { class: "check" });
            check.appendChild(input);
            check.appendChild(document.createTextNode(" " + title));
            fields.appendChild(check);
            return;
          }
          var draftKey = prefix + action + ":" + key;
          var draft = recall(draftKey);
          if (draft !== null) {
            var listed = kind !== "grid" && kind !== "target" ||
              input.querySelector('option[value="' + draft.replace(/"/g, "") + '"]');
            if (listed) {
              input.value = draft;
              if (kind !== "grid" && kind !== "target") any = true;
            }
          }
          var save = function () { store(draftKey, input.value); store(prefix + "action", action); };
          input.addEventListener("input", save);
          input.addEventListener("change", save);
          var lab = el("label", {}, title);
          lab.appendChild(input);
          fields.appendChild(lab);
        });
        restored.textContent = any ? labels.staff_draft_restored : "";
      }
      chooser.addEventListener("change", function () { store(prefix + "action", chooser.value); build(); });
      build();

      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        error.textContent = "";
        var action = chooser.value;
        Array.prototype.forEach.call(fields.querySelectorAll("[aria-invalid]"), function (i) {
          i.removeAttribute("aria-invalid");
        });
        var got = Minqing.actionBody(action, form);
        if (got.missing) {  // required and blank: say which, send nothing
          got.missing.setAttribute("aria-invalid", "true");
          error.textContent = fmt(labels.act_required, { field: Minqing.fieldTitle(got.kind, labels) });
          got.missing.focus();
          popupUpdate(d.id);
          return;
        }
        var body = got.body;
        button.disabled = true;
        button.textContent = labels.staff_working;
        api(fmt(config.urls.action, { id: d.id, action: action }),
            { method: "POST", body: JSON.stringify(body), version: d.version })
          .then(function (res) {
            if (res.status !== 200) { error.textContent = errorText(res); popupUpdate(d.id); return; }
            inbox.actions += 1;
            forget(prefix);
            store(OPEN_KEY, null);
            afterAction(d, res.body);
          })
          .catch(function (err) { if (!err.expired) error.textContent = String(err.message); })
          .finally(function () {
            button.disabled = false;
            button.textContent = labels.staff_do;
          });
      });
      return form;
    }

    function afterAction(before, after) {
      var entry = rows[before.id];
      var stays = after.in_scope !== false && config.levels.indexOf(after.owner_level) >= 0 &&
        config.open.indexOf(after.status) >= 0;
      if (!stays) {
        toast.textContent = fmt(labels.staff_left_inbox, { n: before.number });
        if (entry) entry.marker.closePopup();
        reconcile(inbox.items.filter(function (i) { return i.id !== before.id; }));
      } else {
        toast.textContent = fmt(labels.staff_done, { n: before.number });
        var fresh = inbox.items.map(function (i) {
          if (i.id !== before.id) return i;
          var copy = {};
          Object.keys(i).forEach(function (k) { copy[k] = k in after ? after[k] : i[k]; });
          return copy;
        });
        reconcile(fresh);
        if (entry && entry.marker.isPopupOpen()) {
          after.volunteersNear = before.volunteersNear;
          renderDetail(entry.marker.getPopup().getContent(), after);
          entry.marker.getPopup().update();
        }
      }
      loadList();  // and pick up whatever else changed meanwhile
    }

    Array.prototype.forEach.call(document.querySelectorAll("#mq-filter button"), function (b) {
      b.addEventListener("click", function () {
        filter = b.getAttribute("data-filter");
        Array.prototype.forEach.call(document.querySelectorAll("#mq-filter button"), function (o) {
          o.setAttribute("aria-selected", String(o === b));
        });
        renderList();
      });
    });

    loadList().then(function () {
      var open = recall(OPEN_KEY);  // back from a login after the session expired
      if (open && rows[open]) select(Number(open), true);
    });
    Minqing.staff = { select: select, reload: loadList, rows: rows };
  };

  // -- the dashboard (党建地图) ----------------------------------------------------------------
  var PALETTES = {
    bad_high: ["#fff5eb", "#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"],
    good_high: ["#f7fcf5", "#c7e9c0", "#74c476", "#238b45", "#00441b"],
  };
  var NO_DATA = "#d9d9d9";

  function breaksFor(metric, values) {
    if (metric === "on_time_rate" || metric === "coverage") return [0, 0.2, 0.4, 0.6, 0.8, 1];
    if (metric === "mean_rating") return [1, 2, 3, 4, 4.5, 5];
    var max = Math.max.apply(null, values.concat([1]));
    var step = Math.max(1, Math.ceil(max / 5));
    return [0, step, 2 * step, 3 * step, 4 * step, 5 * step];
  }

  function formatValue(metric, v) {
    if (v === null || v === undefined) return "–";
    if (metric === "on_time_rate" || metric === "closure_rate" || metric === "coverage") {
      return (v * 100).toFixed(1) + "%";
    }
    if (metric === "mean_rating") return Number(v).toFixed(2);
    return String(v);
  }

  function plusOneDay(iso) {
    var p = iso.split("-").map(Number);
    return new Date(Date.UTC(p[0], p[1] - 1, p[2] + 1)).toISOString().slice(0, 10);
  }

  Minqing.staffDashboard = function (map, config) {
    var labels = config.labels;
    var st = state();
    var dash = (st.dashboard = { level: "grid", metric: "open_backlog", rows: [], heatCount: 0,
                                 drawn: 0, csv: null });
    Minqing.map = map;
    var api = makeApi(config, expiredHandler(config));
    var inScope = {};
    config.areas.forEach(function (c) { inScope[c] = true; });
    var geometry = {};  // level -> features
    var byCode = {};
    var coverage = (dash.coverage = {});  // level -> code -> mean households share
    var errorBox = document.getElementById("mq-error");
    var form = document.getElementById("mq-dash");
    var from = document.getElementById("mq-from");
    var to = document.getElementById("mq-to");
    var metricSelect = document.getElementById("mq-metric");
    var tbody = document.querySelector("#mq-table tbody");
    var csv = document.getElementById("mq-csv");
    from.value = config.from;
    to.value = config.to;

    var choropleth = L.geoJSON(null, {
      style: function (f) { return styleFor(f); },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(function () {
          return el("span", {}, f.properties.name + " " + f.properties.code + ": " +
            formatValue(dash.metric, valueOf(f.properties.code)));
        }, { sticky: true });
        layer.on("click", function () { highlightRow(f.properties.code); });
      },
    }).addTo(map);
    st.layers.choropleth = { layer: choropleth, count: 0, loaded: false };
    /* leaflet.heat 0.2.0 keeps the scale of a zoom animation that starts while it is being
     * added (the page's initial fitBounds), so its points drift from the map: it joins the
     * map once the first points arrive, and re-anchors itself after every zoom. */
    var heat = L.heatLayer([], { radius: 20, blur: 16, maxZoom: 17, minOpacity: 0.3 });
    var heatWanted = true;
    st.layers.heat = { layer: heat, count: 0, loaded: false };
    map.on("zoomend", function () { if (map.hasLayer(heat)) heat._reset(); });
    var control = L.control.layers(null, {}, { collapsed: true }).addTo(map);
    control.addOverlay(choropleth, labels.dash_metric);
    control.addOverlay(heat, labels.dash_heat);

    var legend = L.control({ position: "bottomright" });
    legend.onAdd = function () {
      this._div = L.DomUtil.create("div", "mq-legend");
      this._div.id = "mq-legend";
      return this._div;
    };
    legend.addTo(map);

    var breaks = [0, 1, 2, 3, 4, 5];
    function palette() {
      return PALETTES[dash.metric === "open_backlog" ? "bad_high" : "good_high"];
    }
    function classOf(v) {
      for (var i = 1; i < breaks.length - 1; i++) if (v < breaks[i]) return i - 1;
      return breaks.length - 2;
    }
    function valueOf(code) {
      if (dash.metric === "coverage") {
        var cov = coverage[dash.level];
        return cov && code in cov ? cov[code] : null;
      }
      var row = byCode[code];
      return row ? row[dash.metric] : null;
    }
    function styleFor(f) {
      var v = valueOf(f.properties.code);
      var fill = v === null || v === undefined ? NO_DATA : palette()[classOf(v)];
      return { color: "#555", weight: dash.level === "grid" ? 1 : 2, fillColor: fill,
               fillOpacity: 0.65 };
    }

    function drawLegend() {
      var div = legend._div;
      div.textContent = "";
      div.appendChild(el("h4", {}, labels["metric_" + dash.metric] + " · " +
        labels["level_" + dash.level]));
      var colours = palette();
      for (var i = 0; i < colours.length; i++) {
        var line = el("div", { class: "legend-row" });
        var swatch = el("i", {});
        swatch.style.background = colours[i];
        line.appendChild(swatch);
        var lo = breaks[i], hi = breaks[i + 1];
        var last = i === colours.length - 1;
        var label = dash.metric !== "open_backlog"
          ? formatValue(dash.metric, lo) + "–" + formatValue(dash.metric, hi)
          : last ? "≥ " + lo : hi - 1 === lo ? String(lo) : lo + "–" + (hi - 1);
        line.appendChild(document.createTextNode(label));
        div.appendChild(line);
      }
      var none = el("div", { class: "legend-row" });
      var sw = el("i", {});
      sw.style.background = NO_DATA;
      none.appendChild(sw);
      none.appendChild(document.createTextNode(labels.dash_no_data));
      div.appendChild(none);
    }

    function draw() {
      var values = (geometry[dash.level] || []).map(function (f) { return valueOf(f.properties.code); })
        .filter(function (v) { return v !== null && v !== undefined; });
      breaks = breaksFor(dash.metric, values);
      choropleth.clearLayers();
      choropleth.addData(geometry[dash.level] || []);
      dash.drawn = (geometry[dash.level] || []).length;
      st.layers.choropleth.count = dash.drawn;
      drawLegend();
    }

    function highlightRow(code) {
      Array.prototype.forEach.call(tbody.querySelectorAll("tr"), function (tr) {
        var on = tr.getAttribute("data-code") === code;
        tr.classList.toggle("is-hover", on);
        if (on) tr.scrollIntoView({ block: "nearest" });
      });
    }

    function renderTable() {
      tbody.textContent = "";
      var cols = Array.prototype.map.call(document.querySelectorAll("#mq-table thead th[data-col]"),
        function (th) { return th.getAttribute("data-col"); });
      dash.rows.forEach(function (r) {
        var tr = el("tr", { "data-code": r.code });
        tr.appendChild(el("td", { class: "mono" }, r.code));
        tr.appendChild(el("td", {}, r.name));
        cols.forEach(function (c) { tr.appendChild(el("td", { "data-col": c }, formatValue(c, r[c]))); });
        tbody.appendChild(tr);
      });
      if (!dash.rows.length) {
        var tr = el("tr", {});
        tr.appendChild(el("td", { colspan: String(cols.length + 2) }, labels.dash_no_data));
        tbody.appendChild(tr);
      }
    }

    function loadFeatures(url, acc) {
      return api(url).then(function (res) {
        if (res.status !== 200) throw new Error(errorText(res));
        acc = acc.concat(res.body.features || []);
        return res.body.links && res.body.links.next ? loadFeatures(res.body.links.next, acc) : acc;
      });
    }

    function loadGeometry(level) {
      if (geometry[level]) return Promise.resolve(geometry[level]);
      var layer = level === "grid" ? "grids" : "areas";
      var url = config.urls.layers + "/" + layer + "?limit=1000&bbox=" + config.bbox.join(",");
      if (config.crs && config.crs !== "wgs84") url += "&crs=" + config.crs;
      return loadFeatures(url, []).then(function (features) {
        geometry[level] = features.filter(function (f) {
          var p = f.properties;
          return level === "grid" ? inScope[p.community_code] : p.level === "community" && inScope[p.code];
        });
        return geometry[level];
      });
    }

    function period() {
      return "from=" + encodeURIComponent(from.value) + "&to=" + encodeURIComponent(plusOneDay(to.value));
    }

    function apply() {
      errorBox.textContent = "";
      if (!from.value || !to.value || from.value > to.value) {
        errorBox.textContent = labels.dash_period + ": " + from.value + " – " + to.value;
        return Promise.resolve();
      }
      var level = form.elements.level.value;
      dash.level = level;
      dash.metric = metricSelect.value;
      var q = period();
      dash.csv = config.urls.csv + "?level=" + level + "&" + q + "&lang=" + config.lang;
      csv.setAttribute("href", dash.csv);
      st.layers.choropleth.loaded = false;
      st.layers.heat.loaded = false;
      var figures = Promise.all([
        loadGeometry(level),
        api(config.urls.metrics + "?level=" + level + "&" + q),
      ]).then(function (res) {
        if (res[1].status !== 200) throw new Error(errorText(res[1]));
        dash.rows = res[1].body.rows || [];
        byCode = {};
        dash.rows.forEach(function (r) { byCode[r.code] = r; });
        renderTable();
        return dash.metric === "coverage" ? loadCoverage(level).then(draw) : draw();
      });
      var points = api(config.urls.heat + "?" + q + (config.crs !== "wgs84" ? "&crs=" + config.crs : ""))
        .then(function (res) {
          if (res.status !== 200) throw new Error(errorText(res));
          var pts = res.body.points || [];
          heat.setLatLngs(pts);
          if (heatWanted && !map.hasLayer(heat)) heat.addTo(map);
          dash.heatCount = pts.length;
          st.layers.heat.count = pts.length;
          document.getElementById("mq-heat-count").textContent =
            "(" + fmt(labels.dash_heat_count, { n: pts.length }) + ")";
        });
      return Promise.all([
        figures.catch(report).finally(function () { st.layers.choropleth.loaded = true; }),
        points.catch(report).finally(function () { st.layers.heat.loaded = true; }),
      ]);
    }

    function report(err) {
      if (err && err.expired) return;
      st.errors.push(String(err));
      errorBox.textContent = String(err.message || err);
    }

    form.addEventListener("submit", function (ev) { ev.preventDefault(); apply(); });
    Array.prototype.forEach.call(form.elements.level, function (r) {
      r.addEventListener("change", apply);
    });
    /* Service coverage per unit: the mean share of households within reach of each required
     * facility (GET /api/v1/coverage), computed once per level when first asked for. */
    function loadCoverage(level) {
      if (!config.urls.coverage || coverage[level]) return Promise.resolve();
      st.layers.choropleth.loaded = false;
      return api(config.urls.coverage + "?level=" + level).then(function (res) {
        if (res.status !== 200) throw new Error(errorText(res));
        var sums = {};
        (res.body.items || []).forEach(function (it) {
          if (!it.code || it.households_share === null || it.households_share === undefined) return;
          var s = (sums[it.code] = sums[it.code] || [0, 0]);
          s[0] += it.households_share;
          s[1] += 1;
        });
        var out = {};
        Object.keys(sums).forEach(function (c) { out[c] = sums[c][0] / sums[c][1]; });
        coverage[level] = out;
      }).catch(report).finally(function () { st.layers.choropleth.loaded = true; });
    }

    function redraw() {
      dash.metric = metricSelect.value;
      if (dash.metric === "coverage") loadCoverage(dash.level).then(draw);
      else draw();
    }
    metricSelect.addEventListener("change", redraw);
    document.getElementById("mq-heat-on").addEventListener("change", function (ev) {
      heatWanted = ev.target.checked;
      if (heatWanted) heat.addTo(map); else map.removeLayer(heat);
    });
    apply();
  };
})(window);
