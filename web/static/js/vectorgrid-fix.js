/* Leaflet.VectorGrid 1.3.0 (its latest npm release) predates Leaflet 1.9: its canvas tile
 * renderer calls L.DomEvent.fakeStop, which Leaflet 1.8 removed, so every click throws.
 * Replace the click handler with one that uses Leaflet 1.9's own event path, which also sets
 * the event's latlng (Leaflet.VectorGrid PR #288 / issue #274). */
(function () {
  "use strict";
  if (!window.L || !L.Canvas || !L.Canvas.Tile) return;
  L.Canvas.Tile.include({
    _onClick: function (e) {
      var point = this._map.mouseEventToLayerPoint(e).subtract(this.getOffset());
      var clicked = null;
      for (var id in this._layers) {
        var layer = this._layers[id];
        if (layer.options.interactive && layer._containsPoint(point) &&
            !this._map._draggableMoved(layer)) {
          clicked = layer;
        }
      }
      if (clicked) {
        L.DomEvent.stop(e);
        this._fireEvent([clicked], e);
      }
    },
  });
})();
