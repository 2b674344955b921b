/* Resident page: a draggable pin, nearest service points by walking distance, the 15-minute
 * circle, and a request form. User text reaches the page through textContent only. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});

  var el = Minqing.el;  // web/static/js/dom.js
  var fmt = Minqing.fmt;

  Minqing.resident = function (map, config) {
    var labels = config.labels;
    var state = (Minqing.state = Minqing.state || {});
    state.resident = { nearest: [], circle: null, pending: 0, submitted: null, errors: [] };
    Minqing.map = map;
    var start = config.start ? [config.start[1], config.start[0]] : map.getCenter();
    var pin = L.marker(start, { draggable: true, autoPan: true, title: labels.pin_hint });
    pin.addTo(map);
    Minqing.pin = pin;
    var overlay = L.layerGroup().addTo(map);
    var service = config.services.length ? config.services[0].code : null;

    var chips = document.getElementById("mq-services");
    config.services.forEach(function (s) {
      var b = el("button", { type: "button", role: "tab", "data-code": s.code,
                             "aria-selected": String(s.code === service) }, s.name);
      b.addEventListener("click", function () {
        service = s.code;
        Array.prototype.forEach.call(chips.children, function (c) {
          c.setAttribute("aria-selected", String(c.getAttribute("data-code") === service));
        });
        refresh();
      });
      chips.appendChild(b);
    });

    var select = document.getElementById("mq-category");
    config.categories.forEach(function (c) {
      select.appendChild(el("option", { value: c.code }, c.name));
    });

    function lonlat() {
      var p = pin.getLatLng();
      return { lon: p.lng, lat: p.lat };
    }

    function showNearest(body) {
      var list = document.getElementById("mq-nearest");
      list.textContent = "";
      overlay.clearLayers();
      var items = body.results || body.venues || [];
      state.resident.nearest = items;
      if (!items.length) list.appendChild(el("li", {}, labels.no_nearest));
      items.forEach(function (v, i) {
        var li = el("li", { "data-rank": i + 1 });
        li.appendChild(el("strong", {}, v.name || v.category));
        var minutes = Math.max(1, Math.round(v.minutes));
        li.appendChild(el("div", { class: "meta" },
          Math.round(v.distance_m) + " m · " + fmt(labels.walk_min, { m: minutes })));
        list.appendChild(li);
        if (v.route) {
          L.geoJSON(v.route, { style: { color: i === 0 ? "#1f6feb" : "#7aa7f0", weight: 4,
                                        opacity: 0.8 } }).addTo(overlay);
        }
        if (v.lon !== undefined) {
          L.circleMarker([v.lat, v.lon], { radius: 7, color: "#1f6feb", fillOpacity: 0.9 })
            .bindTooltip(el("span", {}, v.name || v.category)).addTo(overlay);
        }
      });
      if (body.circle) {
        state.resident.circle = L.geoJSON(body.circle, {
          style: { color: "#27ae60", weight: 1, fillOpacity: 0.08 },
          interactive: false,
        }).addTo(overlay);
      }
    }

    var timer = null;
    function refresh() {
      if (!config.urls.nearest || !service) return;
      clearTimeout(timer);
      timer = setTimeout(function () {
        var p = lonlat();
        var url = config.urls.nearest + "?lon=" + p.lon.toFixed(7) + "&lat=" + p.lat.toFixed(7) +
          "&category=" + encodeURIComponent(service) + "&k=3&circle=1&crs=" + config.crs;
        state.resident.pending += 1;
        fetch(url, { headers: { Accept: "application/json" } })
          .then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
          .then(function (res) {
            if (res[0] === 200) showNearest(res[1]);
            else {
              showNearest({ results: [] });
              var msg = res[1] && res[1].error ? res[1].error.message : "HTTP " + res[0];
              document.getElementById("mq-nearest").firstChild.textContent = msg;
            }
          })
          .catch(function (err) { state.resident.errors.push(String(err)); })
          .finally(function () { state.resident.pending -= 1; });
      }, 150);
    }

    pin.on("dragend", refresh);
    map.on("click", function (e) { pin.setLatLng(e.latlng); refresh(); });
    document.getElementById("mq-locate").addEventListener("click", function () {
      if (!navigator.geolocation) return;
      navigator.geolocation.getCurrentPosition(function (pos) {
        pin.setLatLng([pos.coords.latitude, pos.coords.longitude]);
        map.setView(pin.getLatLng(), Math.max(map.getZoom(), 16));
        refresh();
      });
    });

    // The draft (居民草稿) and its Idempotency-Key, kept in localStorage: one key per draft,
    // 16 random bytes, so a double tap, or a retry after a lost answer (even after a reload),
    // replays the first submission instead of making a second request. ``sent`` is the body
    // first sent under the key while its outcome is unknown: if the draft was edited since
    // and the server says the key was used with another body (409 idempotency_conflict),
    // that first body was stored, and re-sending it brings back its ticket.
    var form = document.getElementById("mq-request");
    var error = document.getElementById("mq-error");
    var submit = document.getElementById("mq-submit");
    var fields = { text: "mq-text", name: "mq-name", phone: "mq-phone" };
    var DRAFT = "minqing.resident.draft.v1";
    var memory = null;  // the draft when localStorage is unavailable

    function newKey() {
      var bytes = new Uint8Array(16);
      global.crypto.getRandomValues(bytes);
      return Array.prototype.map.call(bytes, function (b) {
        return (b + 256).toString(16).slice(1);
      }).join("");
    }
    function loadDraft() {
      try {
        var raw = global.localStorage.getItem(DRAFT);
        return raw ? JSON.parse(raw) : memory;
      } catch (e) { return memory; }
    }
    function storeDraft(draft) {
      memory = draft;
      try {
        if (draft) global.localStorage.setItem(DRAFT, JSON.stringify(draft));
        else global.localStorage.removeItem(DRAFT);
      } catch (e) { /* private mode or full: the draft lives in this page only */ }
    }
    function saveDraft() {
      var draft = loadDraft() || { key: newKey(), sent: null };
      var p = lonlat();
      draft.category = select.value;
      draft.lon = p.lon;
      draft.lat = p.lat;
      Object.keys(fields).forEach(function (f) {
        draft[f] = document.getElementById(fields[f]).value;
      });
      storeDraft(draft);
      return draft;
    }
    state.resident.draft = loadDraft;

    var restored = loadDraft();
    if (restored) {
      var known = Array.prototype.some.call(select.options, function (o) {
        return o.value === restored.category;
      });
      if (known) select.value = restored.category;
      Object.keys(fields).forEach(function (f) {
        if (typeof restored[f] === "string") document.getElementById(fields[f]).value = restored[f];
      });
      if (typeof restored.lon === "number" && typeof restored.lat === "number") {
        pin.setLatLng([restored.lat, restored.lon]);
        map.setView(pin.getLatLng(), map.getZoom());
      }
    }
    form.addEventListener("input", saveDraft);
    form.addEventListener("change", saveDraft);
    pin.on("dragend", saveDraft);
    map.on("click", saveDraft);

    function send(key, payload) {
      return fetch(config.urls.submit, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json",
                   "Accept-Language": config.lang, "Idempotency-Key": key,
                   // needed only when a signed-in account submits (web/csrf.py)
                   "X-CSRF-Token": Minqing.csrfToken() },
        body: payload,
      }).then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); });
    }
    var leaving = false;
    function submitted(res) {
      if (leaving) return;  // a double tap's second answer is the same request: go once
      leaving = true;
      storeDraft(null);  // done: the next request is a new draft with a new key
      state.resident.submitted = res[1];
      global.location.href = config.urls.ticket.replace("TICKET", res[1].ticket);
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      error.textContent = "";
      var p = lonlat();
      var body = {
        lon: p.lon, lat: p.lat, crs: config.crs,
        category: select.value,
        text: document.getElementById("mq-text").value,
      };
      var name = document.getElementById("mq-name").value.trim();
      var phone = document.getElementById("mq-phone").value.trim();
      if (name || phone) body.contact = { name: name || null, phone: phone || null };
      var payload = JSON.stringify(body);
      var draft = saveDraft();
      if (!draft.sent) {
        draft.sent = payload;
        storeDraft(draft);
      }
      submit.disabled = true;
      submit.textContent = labels.submitting;
      send(draft.key, payload)
        .then(function (res) {
          if (res[0] === 201) return submitted(res);
          var code = res[1] && res[1].error ? res[1].error.code : null;
          var now = loadDraft() || draft;
          if (res[0] === 409 && code === "idempotency_conflict" && now.sent) {
            // the first body sent under this key was stored: bring back its ticket
            return send(now.key, now.sent).then(function (first) {
              if (first[0] === 201) return submitted(first);
              error.textContent = first[1] && first[1].error ? first[1].error.message
                                                              : "HTTP " + first[0];
            });
          }
          if (res[0] === 409 && code === "idempotency_conflict") {
            now.key = newKey();  // used by a submission this page no longer knows: start anew
            storeDraft(now);
          } else if (res[0] >= 400 && res[0] < 500 && res[0] !== 409 && now.sent === payload) {
            now.sent = null;  // refused, nothing stored: the key stays free for the correction
            storeDraft(now);
          }
          error.textContent = res[1] && res[1].error ? res[1].error.message : "HTTP " + res[0];
        })
        .catch(function (err) { error.textContent = String(err); })  // unknown: keep the key
        .finally(function () {
          submit.disabled = false;
          submit.textContent = labels.submit;
        });
    });
    refresh();
  };
})(window);
