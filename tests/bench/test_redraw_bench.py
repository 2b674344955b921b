"""The redraw bench: its lattice redraw (fast), and a quick run end to end (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from bench.redraw_bench import lattice_redraw
from data.synthetic import synthetic_grids
from geo.validation import UtmProjector


def test_lattice_redraw_tiles_the_community_with_new_boundaries() -> None:
    geoms, _ = synthetic_grids(24, seed=5)
    community_lonlat = shapely.union_all(geoms[:12])
    proj = UtmProjector(community_lonlat)
    community = proj.to_utm(community_lonlat)
    old = [proj.to_utm(g) for g in geoms[:12]]
    pieces = lattice_redraw(community, 12)
    assert 8 <= len(pieces) <= 30
    union = shapely.union_all(pieces)
    assert abs(union.area - community.area) < 1.0  # no gap, nothing outside
    assert sum(p.area for p in pieces) - union.area < 1.0  # no overlap
    assert all(p.within(community.buffer(0.01)) for p in pieces)
    # no piece is an old grid again: the redraw moves every grid's outline
    for p in pieces:
        assert min(p.symmetric_difference(g).area for g in old) > 100.0
    # a rectangle of 4 cells: the offset lattice still covers it exactly
    rect = Polygon([(0, 0), (400, 0), (400, 200), (0, 200)])
    cells = lattice_redraw(rect, 4)
    assert abs(sum(c.area for c in cells) - rect.area) < 1e-6
    assert np.isclose(shapely.union_all(cells).area, rect.area)


@pytest.mark.slow
def test_quick_bench_runs_and_agrees_with_the_naive_baseline(run_quick_bench) -> None:
    figures, results, stdout = run_quick_bench("redraw_bench", "--repeats", "2", timeout=300)
    assert figures["bench"] == "redraw" and figures["mode"] == "quick"
    assert figures["mismatches"] == 0
    for key in ("a_total_s", "b_total_s", "c_total_s", "publish_s", "undo_s", "a_naive_s"):
        assert figures[key] > 0, key
    assert figures["a_blocking"] == 0  # the lattice redraw is publishable
    assert figures["a_buildings_moved"] > 0 and figures["c_buildings_moved"] > 0
    assert figures["b_drafts"] == figures["communities"] >= 2
    assert figures["publish_requests_rehomed"] > 0
    assert figures["undo_requests_rehomed"] == figures["publish_requests_rehomed"]
    assert set(figures["targets_met"]) == {"a", "b", "c", "publish"}
    assert "(a) full redraw: validation + impact:" in stdout
    text = results.read_text(encoding="utf-8")
    assert "## redraw bench (quick)" in text and '"mismatches": 0' in text
