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
            .bindTooltip(v.name || "", {}).addTo(overlay);
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

    var form = document.getElementById("mq-request");
    var error = document.getElementById("mq-error");
    var submit = document.getElementById("mq-submit");
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
      submit.disabled = true;
      submit.textContent = labels.submitting;
      fetch(config.urls.submit, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json",
                   "Accept-Language": config.lang,
                   "Idempotency-Key": form.dataset.key || (form.dataset.key = String(Date.now()) +
                                      "-" + Math.random().toString(36).slice(2)) },
        body: JSON.stringify(body),
      })
        .then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
        .then(function (res) {
          if (res[0] === 201) {
            state.resident.submitted = res[1];
            global.location.href = config.urls.ticket.replace("TICKET", res[1].ticket);
            return;
          }
          error.textContent = res[1] && res[1].error ? res[1].error.message : "HTTP " + res[0];
          delete form.dataset.key;  // a corrected form is a new request
        })
        .catch(function (err) { error.textContent = String(err); })
        .finally(function () {
          submit.disabled = false;
          submit.textContent = labels.submit;
        });
    });
    refresh();
  };
})(window);
