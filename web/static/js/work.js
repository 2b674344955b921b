/* Minqing work pages: the grid leader's request map and the volunteer's phone page.
 * Every action goes through the API; the list and the map refresh without a page reload.
 * User text reaches the DOM through textContent only. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});
  Minqing.state = Minqing.state || { layers: {}, pending: 0, errors: [] };

  var el = Minqing.el;  // web/static/js/dom.js
  var fmt = Minqing.fmt;

  function api(url, method, body, lang) {
    var opts = { method: method || "GET", credentials: "same-origin",
                 headers: { Accept: "application/json", "Accept-Language": lang || "zh-CN" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      if (r.status === 401) {  // session expired: log in again and come back
        global.location.href = "/login?next=" + encodeURIComponent(global.location.pathname);
        throw new Error("unauthorized");
      }
      return r.json().then(function (b) {
        if (!r.ok) {
          var err = new Error(b.error ? b.error.message : "HTTP " + r.status);
          err.code = b.error && b.error.code;
          throw err;
        }
        return b;
      });
    });
  }
  Minqing.api = api;

  function shortTime(iso) { return iso ? iso.slice(5, 16).replace("T", " ") : ""; }

  function timelineList(items, labels) {
    var ol = el("ol", { class: "mq-timeline" });
    (items || []).forEach(function (ev) {
      var li = el("li", {}, shortTime(ev.at) + " " + (labels["action_" + ev.action] || ev.action));
      if (ev.note) li.appendChild(el("div", { class: "note" }, ev.note));
      ol.appendChild(li);
    });
    return ol;
  }

  function statusBadge(status, labels) {
    return el("span", { class: "mq-badge st-" + status }, labels["status_" + status] || status);
  }

  /* A button row: [input?] [button] that posts one action. */
  function actionRow(label, onClick, input) {
    var row = el("div", { class: "act" });
    if (input) row.appendChild(input);
    var b = el("button", { type: "button", "data-action": label }, label);
    b.addEventListener("click", function () { onClick(input ? input.value : null, b); });
    row.appendChild(b);
    return row;
  }

  /* ---------------------------------------------------------------- grid leader */
  Minqing.leader = function (map, config) {
    var labels = config.labels;
    var st = (Minqing.state.work = { requests: [], markers: {}, selected: null, loaded: false });
    var cluster = L.markerClusterGroup({ maxClusterRadius: 40, showCoverageOnHover: false });
    cluster.addTo(map);
    var list = document.getElementById("mq-list");
    var overdueOnly = document.getElementById("mq-overdue-only");
    overdueOnly.addEventListener("change", render);

    function icon(r) {
      return L.divIcon({ className: "mq-req st-" + r.status + (r.overdue ? " overdue" : ""),
                         iconSize: [18, 18], iconAnchor: [9, 18] });
    }

    function select(id, fly) {
      st.selected = id;
      Array.prototype.forEach.call(list.children, function (li) {
        li.classList.toggle("active", li.dataset.id === String(id));
        if (li.dataset.id === String(id)) li.scrollIntoView({ block: "nearest" });
      });
      var marker = st.markers[id];
      if (marker && fly) {
        cluster.zoomToShowLayer(marker, function () { marker.openPopup(); });
      }
    }

    function popupContent(r) {
      var box = el("div", { class: "mq-req-popup", "data-id": r.id });
      box.appendChild(el("strong", {}, r.number + " · " + (config.categories[r.category] || r.category)));
      box.appendChild(el("div", {})).appendChild(statusBadge(r.status, labels));
      box.appendChild(el("div", { class: "txt" }, r.text));
      var more = el("div", { class: "mq-more" }, labels.loading);
      box.appendChild(more);
      api(fmt(config.urls.detail, { id: r.id }), "GET", undefined, config.lang).then(function (d) {
        more.textContent = "";
        if (d.contact && (d.contact.name || d.contact.phone)) {
          more.appendChild(el("div", { class: "meta" },
            (d.contact.name || "") + " " + (d.contact.phone || "")));
        }
        if (d.deadline) more.appendChild(el("div", { class: "meta" }, labels.deadline + " " + shortTime(d.deadline)));
        if (d.assignee) more.appendChild(el("div", { class: "meta" }, labels.assignee + " " + d.assignee.name));
        more.appendChild(timelineList(d.timeline, labels));
        more.appendChild(actions(d));
      }).catch(function (e) { more.textContent = e.message; });
      return box;
    }

    function actions(d) {
      var wrap = el("div", { class: "mq-actions" });
      var msg = el("div", { class: "mq-msg", role: "alert" });
      var allowed = d.allowed_actions || [];
      function run(action, body) {
        msg.textContent = "";
        return api(fmt(config.urls.detail, { id: d.id }) + "/" + action, "POST", body, config.lang)
          .then(function () { return refresh(d.id); })
          .catch(function (e) { msg.textContent = e.message; });
      }
      if (allowed.indexOf("reassign") >= 0) {
        var pick = el("select", { "aria-label": labels.dispatch });
        (d.offers || []).forEach(function (o) {
          pick.appendChild(el("option", { value: o.volunteer_id },
            o.name + " · " + Math.round(o.distance_m) + " m"));
        });
        if (pick.options.length) {
          wrap.appendChild(actionRow(labels.dispatch, function (v) {
            run("reassign", { volunteer_id: Number(v) });
          }, pick));
        }
        var grid = el("input", { placeholder: labels.grid_code, inputmode: "numeric" });
        wrap.appendChild(actionRow(labels.reassign_grid, function (v) {
          run("reassign", { grid_code: (v || "").trim() });
        }, grid));
      }
      if (allowed.indexOf("resolve") >= 0) {
        var note = el("input", { placeholder: labels.resolve_note });
        wrap.appendChild(actionRow(labels.action_resolve, function (v) {
          run("resolve", { note: v || "" });
        }, note));
      }
      if (allowed.indexOf("escalate") >= 0) {
        wrap.appendChild(actionRow(labels.action_escalate, function () { run("escalate", {}); }));
      }
      wrap.appendChild(msg);
      return wrap;
    }

    function render() {
      list.textContent = "";
      var shown = st.requests.filter(function (r) { return !overdueOnly.checked || r.overdue; });
      document.getElementById("mq-count").textContent = shown.length + " / " + st.requests.length;
      shown.forEach(function (r) {
        var li = el("li", { "data-id": r.id, class: r.overdue ? "overdue" : "" });
        var row1 = el("div", { class: "row1" });
        row1.appendChild(el("strong", {}, r.number));
        var badges = el("span", {});
        badges.appendChild(statusBadge(r.status, labels));
        if (r.overdue) badges.appendChild(el("span", { class: "mq-badge overdue" }, labels.overdue));
        row1.appendChild(badges);
        li.appendChild(row1);
        li.appendChild(el("div", { class: "meta" },
          (config.categories[r.category] || r.category) + " · " + (r.grid ? r.grid.name : "")));
        li.appendChild(el("div", { class: "txt" }, r.text));
        li.addEventListener("click", function () { select(r.id, true); });
        list.appendChild(li);
      });
      if (st.selected) select(st.selected, false);
    }

    function load(url, acc) {
      return api(url, "GET", undefined, config.lang).then(function (b) {
        acc = acc.concat(b.requests);
        return b.links && b.links.next ? load(b.links.next, acc) : acc;
      });
    }

    function refresh(reopen) {
      var statuses = "triage,assigned,claimed,in_progress,resolved";
      /* locations come back in the basemap's CRS (GCJ-02 for AMap) */
      var base = config.urls.requests + "?limit=500&crs=" + config.crs + "&status=" + statuses;
      var urls = config.grids.length
        ? config.grids.map(function (g) { return base + "&grid=" + g; })
        : [base];
      Minqing.state.pending += 1;
      return Promise.all(urls.map(function (u) { return load(u, []); }))
        .then(function (parts) {
          st.requests = [].concat.apply([], parts).sort(function (a, b) {
            return (b.overdue - a.overdue) || (a.deadline || "").localeCompare(b.deadline || "");
          });
          cluster.clearLayers();
          st.markers = {};
          st.requests.forEach(function (r) {
            if (!r.location) return;
            var m = L.marker([r.location.lat, r.location.lon], { icon: icon(r), title: r.number });
            m.bindPopup(function () { return popupContent(r); }, { maxWidth: 320 });
            m.on("click", function () { select(r.id, false); });
            st.markers[r.id] = m;
            cluster.addLayer(m);
          });
          render();
          st.loaded = true;
          if (reopen && st.markers[reopen]) select(reopen, true);
        })
        .catch(function (e) { Minqing.state.errors.push(String(e)); })
        .finally(function () { Minqing.state.pending -= 1; });
    }
    Minqing.leaderRefresh = refresh;
    refresh();
  };

  /* ---------------------------------------------------------------- volunteer */
  Minqing.volunteer = function (map, config) {
    var labels = config.labels;
    var st = (Minqing.state.work = { data: null, loaded: false });
    var layer = L.layerGroup().addTo(map);
    var home = null;

    function item(r, kind) {
      var li = el("li", { "data-id": r.id });
      var row1 = el("div", { class: "row1" });
      row1.appendChild(el("strong", {}, r.number));
      row1.appendChild(statusBadge(r.status, labels));
      li.appendChild(row1);
      var metres = r.route_m != null ? r.route_m : r.distance_m;
      var walked = r.route_m != null || r.distance_method === "walk";
      var dist = metres != null ? Math.round(metres) + " m" + (walked ? " · " + labels.walking : "") : "";
      li.appendChild(el("div", { class: "meta" },
        (config.categories[r.category] || r.category) + (dist ? " · " + dist : "") +
        (r.grid_name ? " · " + r.grid_name : "")));
      if (r.text) li.appendChild(el("div", { class: "txt" }, r.text));
      var msg = el("div", { class: "mq-msg", role: "alert" });
      var acts = el("div", { class: "mq-actions" });
      function run(action, body) {
        msg.textContent = "";
        api(fmt(config.urls.detail, { id: r.id }) + "/" + action, "POST", body, config.lang)
          .then(refresh).catch(function (e) { msg.textContent = e.message; });
      }
      if (kind === "offer") acts.appendChild(actionRow(labels.action_claim, function () { run("claim", {}); }));
      if (r.status === "claimed") acts.appendChild(actionRow(labels.action_start, function () { run("start", {}); }));
      if (r.status === "claimed" || r.status === "in_progress") {
        var note = el("input", { placeholder: labels.resolve_note });
        acts.appendChild(actionRow(labels.action_resolve, function (v) { run("resolve", { note: v || "" }); }, note));
      }
      if (kind !== "history") { li.appendChild(acts); li.appendChild(msg); }
      li.addEventListener("click", function (ev) {
        if (ev.target.tagName === "BUTTON" || ev.target.tagName === "INPUT") return;
        if (r.lat != null) map.flyTo([r.lat, r.lon], 17);
      });
      return li;
    }

    function draw(data) {
      layer.clearLayers();
      var me = data.volunteer;
      home = L.circleMarker([me.lat, me.lon], { radius: 7, color: "#8e44ad", fillOpacity: 1 })
        .bindTooltip(labels.my_home).addTo(layer);
      data.mine.concat(data.offers).forEach(function (r, i) {
        var mine = data.mine.indexOf(r) >= 0;
        L.circleMarker([r.lat, r.lon], { radius: 8, color: mine ? "#0aa" : "#4a90e2", fillOpacity: 0.9 })
          .bindTooltip(r.number).addTo(layer);
        // the walking route to the request; a dashed straight line where there is none
        var style = { color: mine ? "#0aa" : "#4a90e2", weight: i === 0 ? 4 : 2 };
        if (r.route) {
          L.geoJSON(r.route, { style: style, interactive: false }).addTo(layer);
        } else {
          style.dashArray = "6 6";
          L.polyline([[me.lat, me.lon], [r.lat, r.lon]], style).addTo(layer);
        }
      });
    }

    function fill(id, rows, kind) {
      var ol = document.getElementById(id);
      ol.textContent = "";
      if (!rows.length) ol.appendChild(el("li", { class: "empty" }, labels.no_data));
      rows.forEach(function (r) { ol.appendChild(item(r, kind)); });
    }

    function refresh() {
      Minqing.state.pending += 1;
      return api(config.urls.me, "GET", undefined, config.lang).then(function (data) {
        st.data = data;
        document.getElementById("mq-points").textContent = data.volunteer.points;
        document.getElementById("mq-load").textContent =
          data.volunteer.active_load + "/" + data.volunteer.load_limit;
        fill("mq-mine", data.mine, "mine");
        fill("mq-offers", data.offers, "offer");
        fill("mq-history", data.history.map(function (h) {
          return Object.assign({}, h, { text: h.rating ? "★".repeat(h.rating) : "" });
        }), "history");
        draw(data);
        st.loaded = true;
      }).catch(function (e) { Minqing.state.errors.push(String(e)); })
        .finally(function () { Minqing.state.pending -= 1; });
    }
    Minqing.volunteerRefresh = refresh;
    refresh();
  };
})(window);
