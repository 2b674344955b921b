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

  /* "{name}" placeholders filled from values; a missing value leaves nothing */
  Minqing.fmt = function (template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (_, k) {
      return values[k] === undefined || values[k] === null ? "" : values[k];
    });
  };
})(window);
