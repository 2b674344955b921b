/* Minqing work pages: the grid leader's request map and the volunteer's phone page.
 * Every action goes through the API; the list and the map refresh without a page reload.
 * User text reaches the DOM through textContent only. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});
  Minqing.state = Minqing.state || { layers: {}, pending: 0, errors: [] };

  var el = Minqing.el;  // web/static/js/dom.js
  var fmt = Minqing.fmt;

  /* ``version``: the request version the page shows (its ETag); an action sent with it acts
   * on that version or answers 409 conflict when someone acted meanwhile */
  function api(url, method, body, lang, version) {
    var opts = { method: method || "GET", credentials: "same-origin",
                 headers: { Accept: "application/json", "Accept-Language": lang || "zh-CN" } };
    if (version) opts.headers["If-Match"] = '"' + version + '"';
    if (opts.method !== "GET") opts.headers[Minqing.CSRF_HEADER] = Minqing.csrfToken();
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

  /* A button row: [input?] [button] that posts one action; a required input left blank
   * is refused here (``msg`` says which) before anything is sent. */
  function actionRow(action, label, onClick, input, required, msg, labels) {
    var row = el("div", { class: "act" });
    if (input) row.appendChild(input);
    var b = el("button", { type: "button", "data-action": action }, label);
    b.addEventListener("click", function () {
      var v = input ? input.value.trim() : null;
      if (input && required && !v) {
        input.setAttribute("aria-invalid", "true");
        msg.textContent = Minqing.fmt(labels.act_required, { field: input.getAttribute("placeholder") });
        input.focus();
        return;
      }
      if (input) input.removeAttribute("aria-invalid");
      onClick(v, b);
    });
    row.appendChild(b);
    return row;
  }

  /* One input of an action's form, named after its field (Minqing.ACTION_FIELDS). */
  function fieldInput(name, kind, required) {
    if (kind === "override") return el("input", { type: "checkbox", name: name });
    if (kind === "number") return el("input", { name: name, autocomplete: "off", inputmode: "numeric" });
    var attrs = { name: name, rows: "2", maxlength: "2000" };
    if (required) attrs.required = "required";
    return el("textarea", attrs);
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
      var badges = box.appendChild(el("div", { class: "badges" }));
      badges.appendChild(statusBadge(r.status, labels));
      box.appendChild(el("div", { class: "txt" }, r.text));
      var more = el("div", { class: "mq-more" }, labels.loading);
      box.appendChild(more);
      api(fmt(config.urls.detail, { id: r.id }), "GET", undefined, config.lang).then(function (d) {
        more.textContent = "";
        var awaiting = Minqing.awaitingText(d, labels);
        if (awaiting) badges.appendChild(el("span", { class: "mq-badge awaiting" }, awaiting));
        if (d.contact && (d.contact.name || d.contact.phone)) {
          more.appendChild(el("div", { class: "meta" },
            (d.contact.name || "") + " " + (d.contact.phone || "")));
        }
        if (d.deadline) more.appendChild(el("div", { class: "meta" }, labels.deadline + " " + shortTime(d.deadline)));
        if (d.assignee) more.appendChild(el("div", { class: "meta" }, labels.assignee + " " + d.assignee.name));
        more.appendChild(timelineList(d.timeline, labels));
        return volunteersRead.then(function () {
          more.appendChild(actions(d));
          updatePopup(r.id);
        });
      }).catch(function (e) { more.textContent = e.message; });
      return box;
    }

    function updatePopup(id) {
      var m = st.markers[id];
      if (m && m.isPopupOpen()) m.getPopup().update();
    }

    /* the volunteers of the leader's scope (the map's volunteers layer): those a reassign may
     * name; read once, null when it cannot be read */
    var inScope = null;
    function loadVolunteers(url, acc) {
      return api(url, "GET", undefined, config.lang).then(function (b) {
        acc = acc.concat(b.features || []);
        return b.links && b.links.next ? loadVolunteers(b.links.next, acc) : acc;
      });
    }
    var volunteersRead = config.urls.volunteers
      ? loadVolunteers(config.urls.volunteers, []).then(function (fs) { inScope = fs; })
        .catch(function (e) { Minqing.state.errors.push(String(e)); })
      : Promise.resolve();

    /* where a reassign may send the request: volunteers (Minqing.volunteerGroups) and the
     * leader's other grids */
    function targetSelect(d, name) {
      var pick = el("select", { name: name, required: "required", "aria-label": labels.act_target });
      Minqing.volunteerGroups(d, inScope, labels).forEach(function (g) { pick.appendChild(g); });
      var grids = el("optgroup", { label: labels.grids });
      config.grids.forEach(function (code) {
        if (!d.grid || d.grid.code !== code) grids.appendChild(el("option", { value: "g:" + code }, code));
      });
      if (grids.children.length) pick.appendChild(grids);
      return pick;
    }

    /* A button for every action the API says this leader may take now; one that needs a
     * reason or a note opens its form (required inputs enforced here, the server's refusal
     * shown as it words it). */
    function actions(d) {
      var wrap = el("div", { class: "mq-actions" });
      var buttons = el("div", { class: "mq-act-buttons" });
      var formBox = el("div", { class: "mq-act-form" });
      var msg = el("div", { class: "mq-msg", role: "alert" });
      function run(action, body, button) {
        msg.textContent = "";
        if (button) button.disabled = true;
        return api(fmt(config.urls.detail, { id: d.id }) + "/" + action, "POST", body, config.lang,
                   d.version)
          .then(function () { return refresh(d.id); })
          .catch(function (e) {
            msg.textContent = e.message;
            if (button) button.disabled = false;
            updatePopup(d.id);
          });
      }
      function open(action, opener) {
        msg.textContent = "";
        formBox.textContent = "";
        Array.prototype.forEach.call(buttons.children, function (b) {
          b.setAttribute("aria-pressed", String(b === opener));
        });
        var fields = Minqing.ACTION_FIELDS[action];
        if (!fields.length) { run(action, {}, opener); return; }
        var form = el("form", { class: "mq-act", novalidate: "novalidate", "data-action": action });
        var inputs = [];
        fields.forEach(function (f) {
          var input = f[1] === "target" ? targetSelect(d, f[0]) : fieldInput(f[0], f[1], f[2]);
          var lab = el("label", { class: f[1] === "override" ? "check" : "" });
          if (f[1] === "override") {
            lab.appendChild(input);
            lab.appendChild(document.createTextNode(" " + Minqing.fieldTitle(f[1], labels)));
          } else {
            lab.appendChild(el("span", {}, Minqing.fieldTitle(f[1], labels)));
            lab.appendChild(input);
          }
          if (f[1] === "target" && !input.options.length) {
            lab.appendChild(el("span", { class: "meta" }, labels.act_no_target));
          }
          inputs.push(input);
          form.appendChild(lab);
        });
        var row = el("div", { class: "act" });
        var ok = el("button", { type: "submit" }, labels.act_confirm);
        var cancel = el("button", { type: "button", class: "secondary" }, labels.act_cancel);
        cancel.addEventListener("click", function () {
          formBox.textContent = "";
          msg.textContent = "";
          opener.setAttribute("aria-pressed", "false");
          updatePopup(d.id);
        });
        row.appendChild(ok);
        row.appendChild(cancel);
        form.appendChild(row);
        form.addEventListener("submit", function (ev) {
          ev.preventDefault();
          inputs.forEach(function (i) { i.removeAttribute("aria-invalid"); });
          var got = Minqing.actionBody(action, form);
          if (got.missing) {
            got.missing.setAttribute("aria-invalid", "true");
            msg.textContent = fmt(labels.act_required, { field: Minqing.fieldTitle(got.kind, labels) });
            got.missing.focus();
            updatePopup(d.id);
            return;
          }
          run(action, got.body, ok);
        });
        formBox.appendChild(form);
        updatePopup(d.id);
        if (inputs[0] && inputs[0].type !== "checkbox") inputs[0].focus();
      }
      (d.allowed_actions || []).forEach(function (a) {
        if (!(a in Minqing.ACTION_FIELDS)) return;
        var b = el("button", { type: "button", "data-action": a, "aria-pressed": "false" },
          labels["do_" + a] || a);
        b.addEventListener("click", function () { open(a, b); });
        buttons.appendChild(b);
      });
      wrap.appendChild(buttons);
      wrap.appendChild(formBox);
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
        var late = Minqing.latenessBadge(r, labels, "mq-badge");
        if (late) badges.appendChild(late);
        var awaiting = Minqing.awaitingText(r, labels);
        if (awaiting) badges.appendChild(el("span", { class: "mq-badge awaiting" }, awaiting));
        row1.appendChild(badges);
        li.appendChild(row1);
        li.appendChild(el("div", { class: "meta" },
          (config.categories[r.category] || r.category) + " · " + (r.grid ? r.grid.name : "") +
          " · " + Minqing.ago(r.created_at, labels)));
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
            /* fresh content on every opening; an element, not a function, so that resizing
             * the popup (update) does not build and fetch it again */
            m.bindPopup(el("div", {}, labels.loading),
                        { maxWidth: 320, maxHeight: Math.max(200, map.getSize().y - 130) });
            m.on("popupopen", function () { m.setPopupContent(popupContent(r)); });
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
      var late = kind === "history" ? null : Minqing.latenessBadge(r, labels, "mq-badge");
      if (late) row1.appendChild(late);
      li.appendChild(row1);
      var metres = r.route_m != null ? r.route_m : r.distance_m;
      var walked = r.route_m != null || r.distance_method === "walk";
      var dist = metres != null ? Math.round(metres) + " m" + (walked ? " · " + labels.walking : "") : "";
      li.appendChild(el("div", { class: "meta" },
        (config.categories[r.category] || r.category) + (dist ? " · " + dist : "") +
        (r.grid_name ? " · " + r.grid_name : "") +
        (r.created_at ? " · " + Minqing.ago(r.created_at, labels) : "")));
      if (r.text) li.appendChild(el("div", { class: "txt" }, r.text));
      var msg = el("div", { class: "mq-msg", role: "alert" });
      var acts = el("div", { class: "mq-actions" });
      function run(action, body) {
        msg.textContent = "";
        api(fmt(config.urls.detail, { id: r.id }) + "/" + action, "POST", body, config.lang)
          .then(refresh).catch(function (e) { msg.textContent = e.message; });
      }
      function row(action, label, input, required) {
        acts.appendChild(actionRow(action, label, function (v) {
          var body = {};
          if (input && v) body[input.name] = v;
          run(action, body);
        }, input, required, msg, labels));
      }
      if (kind === "offer") {
        row("claim", labels.action_claim);
        row("decline_offer", labels.do_decline_offer,
          el("input", { name: "note", placeholder: labels.act_decline_reason, maxlength: "2000" }));
      }
      if (r.status === "claimed") row("start", labels.action_start);
      if (r.status === "claimed" || r.status === "in_progress") {
        row("resolve", labels.action_resolve,
          el("input", { name: "note", placeholder: labels.resolve_note, maxlength: "2000" }), true);
        row("give_back", labels.do_give_back,
          el("input", { name: "reason", placeholder: labels.act_give_back_reason, maxlength: "2000" }), true);
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
        .bindTooltip(el("span", {}, labels.my_home)).addTo(layer);
      data.mine.concat(data.offers).forEach(function (r, i) {
        var mine = data.mine.indexOf(r) >= 0;
        L.circleMarker([r.lat, r.lon], { radius: 8, color: mine ? "#0aa" : "#4a90e2", fillOpacity: 0.9 })
          .bindTooltip(el("span", {}, r.number)).addTo(layer);
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
