/* DOM helpers shared by the page scripts (planner, resident, staff, work). web/maps.py loads
 * this file on every map page ahead of the page's own script. User text reaches the page
 * through textContent only, never as HTML. */
(function (global) {
  "use strict";
  var Minqing = (global.Minqing = global.Minqing || {});

  /* <tag attrs...>text</tag>; the text (when given) is set as textContent */
  Minqing.el = function (tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  /* What each workflow action asks for, as the action table's body schemas read it:
   * [field, kind, required]. The leader, staff and volunteer pages build their inputs from
   * it; the server still decides (its 400 message is shown when it refuses). A "target" is
   * one select holding volunteers ("v:<id>") and grids ("g:<code>") (reassign). */
  Minqing.ACTION_FIELDS = {
    assign: [["grid_code", "grid", true], ["note", "note", false]],
    reassign: [["target", "target", true], ["reason", "reason", true],
               ["override", "override", false]],
    escalate: [["reason", "reason", true]],
    reject: [["reason", "reason", true]],
    mark_duplicate: [["duplicate_of", "number", true], ["reason", "reason", true]],
    resolve: [["note", "resolution", true]],
    reply: [["note", "reply", true]],
    reopen: [["note", "note", false]],
    start: [],
    claim: [],
    give_back: [["reason", "give_back", true]],
    decline_offer: [["note", "decline", false]],
  };

  /* the label of an input of ``kind`` */
  Minqing.fieldTitle = function (kind, labels) {
    return {
      grid: labels.staff_target_grid, note: labels.staff_note, reason: labels.staff_reason,
      number: labels.staff_duplicate_of, resolution: labels.staff_resolution,
      reply: labels.act_reply, target: labels.act_target, override: labels.act_override,
      give_back: labels.act_give_back_reason, decline: labels.act_decline_reason,
    }[kind] || kind;
  };

  /* The body of ``action`` read from ``form``'s inputs (named after the fields):
   * {body: {...}}, or {missing: input, kind: kind} when a required one is blank. */
  Minqing.actionBody = function (action, form) {
    var body = {};
    var fields = Minqing.ACTION_FIELDS[action] || [];
    for (var i = 0; i < fields.length; i++) {
      var name = fields[i][0], kind = fields[i][1], required = fields[i][2];
      var input = form.elements[name];
      if (!input) continue;
      if (kind === "override") {
        if (input.checked) body.override = true;
        continue;
      }
      var v = String(input.value || "").trim();
      if (!v) {
        if (required) return { missing: input, kind: kind };
        continue;
      }
      if (kind === "target") {
        if (v.indexOf("v:") === 0) body.volunteer_id = Number(v.slice(2));
        else body.grid_code = v.slice(2);
      } else {
        body[name] = v;
      }
    }
    if (body.override && body.volunteer_id === undefined) delete body.override;
    return { body: body };
  };

  /* The volunteers a reassign may name, as <optgroup>s of "v:<id>" options: the offered
   * ones (nearest first), then the caller's other volunteers with the category's skill (least
   * loaded first); never the one the request already is with or waits for alone. ``inScope``
   * is the caller's volunteers layer (features), or null when it could not be read: then the
   * offers alone. */
  Minqing.volunteerGroups = function (d, inScope, labels) {
    var el = Minqing.el;
    var offers = d.offers || [];
    var listed = {};
    if (d.assignee) listed[d.assignee.volunteer_id] = true;
    if (offers.length === 1 && !d.assignee) listed[offers[0].volunteer_id] = true;
    var known = null;
    if (inScope) {
      known = {};
      inScope.forEach(function (f) { known[f.id] = f; });
    }
    var groups = [];
    var offered = el("optgroup", { label: labels.act_offered });
    offers.forEach(function (o) {
      if (listed[o.volunteer_id] || (known && !known[o.volunteer_id])) return;
      listed[o.volunteer_id] = true;
      offered.appendChild(el("option", { value: "v:" + o.volunteer_id },
        o.name + " · " + Math.round(o.distance_m) + " m"));
    });
    if (offered.children.length) groups.push(offered);
    var others = (inScope || []).filter(function (f) {
      var p = f.properties || {};
      return !listed[f.id] && (p.skills || []).indexOf(d.category) >= 0;
    }).sort(function (a, b) {
      return (a.properties.active_load - b.properties.active_load) || (a.id - b.id);
    });
    if (others.length) {
      var more = el("optgroup", { label: labels.act_more_volunteers });
      others.forEach(function (f) {
        var p = f.properties;
        more.appendChild(el("option", { value: "v:" + f.id },
          p.name + " · " + labels.load + " " + p.active_load + "/" + p.load_limit));
      });
      groups.push(more);
    }
    return groups;
  };

  /* Whom an assigned request waits for, as staff and leaders see it: "待<name>接单" when it is
   * offered to one named volunteer (the name as the API gives this caller, masked or not),
   * the number of volunteers when several; null otherwise. */
  Minqing.awaitingText = function (d, labels) {
    if (d.status !== "assigned" || d.assignee) return null;
    /* the detail lists the offers; a list row says how many and the one name */
    var n = d.offers ? d.offers.length : (d.awaiting ? d.awaiting.count : 0);
    var name = d.offers ? (n === 1 ? d.offers[0].name : null) : (d.awaiting ? d.awaiting.name : null);
    if (!n) return null;
    if (n === 1 && name) return Minqing.fmt(labels.awaiting_named, { name: name });
    return Minqing.fmt(labels.awaiting_volunteers, { n: n });
  };

  /* Lateness as a badge (DESIGN §3): overdue now (red), or a level deadline missed before
   * (曾超期), which an escalation for lateness must not hide; null when on time. */
  Minqing.latenessBadge = function (d, labels, cls) {
    if (d.overdue) return Minqing.el("span", { class: cls + " " + cls + "-overdue overdue" }, labels.overdue_now);
    if (d.was_overdue) return Minqing.el("span", { class: cls + " " + cls + "-late late" }, labels.was_overdue);
    return null;
  };

  /* "3 小时前": the time since an ISO timestamp, in the page's language */
  Minqing.ago = function (iso, labels, now) {
    var t = Date.parse(iso);
    if (isNaN(t)) return "";
    var minutes = Math.max(0, Math.round(((now || Date.now()) - t) / 60000));
    if (minutes < 60) return Minqing.fmt(labels.ago_minutes, { n: minutes });
    if (minutes < 48 * 60) return Minqing.fmt(labels.ago_hours, { n: Math.floor(minutes / 60) });
    return Minqing.fmt(labels.ago_days, { n: Math.floor(minutes / 1440) });
  };

  /* The session's CSRF token: web/csrf.py keeps a readable copy in the mq_csrf cookie (read at
   * each call, so a login in another tab is followed). Every write our pages send through
   * fetch carries it as the X-CSRF-Token header; "" when there is no session. */
  Minqing.csrfToken = function () {
    var m = document.cookie.match(/(?:^|;\s*)mq_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  };
  Minqing.CSRF_HEADER = "X-CSRF-Token";

  /* "{name}" placeholders filled from values; a missing value leaves nothing */
  Minqing.fmt = function (template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (_, k) {
      return values[k] === undefined || values[k] === null ? "" : values[k];
    });
  };
})(window);
