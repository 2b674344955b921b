"""The import bench: its point mix (fast), and a quick run end to end (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from bench.import_bench import bench_points
from data.synthetic import shared_vertices, synthetic_grids


def test_point_mix_has_border_and_outside_points() -> None:
    geoms, _ = synthetic_grids(12, seed=3)
    lon, lat, kind = bench_points(geoms, 20_000, seed=3)
    assert len(lon) == len(lat) == len(kind) == 20_000
    assert (kind == 1).sum() == 200 and (kind == 2).sum() == 400
    union = shapely.union_all(geoms)
    # outside points are outside every grid
    assert not shapely.intersects_xy(union, lon[kind == 2], lat[kind == 2]).any()
    # border points are exact vertices shared by two grids, hence on both boundaries
    shared = {tuple(v) for v in shared_vertices(geoms)}
    border = np.column_stack([lon[kind == 1], lat[kind == 1]])
    assert all(tuple(p) in shared for p in border)
    on_two = [sum(shapely.intersects_xy(g, x, y) for g in geoms) >= 2 for x, y in border[:50]]
    assert all(on_two)
    # the rest lies in the grids' box
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    box = kind == 0
    assert (lon[box] >= x0).all() and (lon[box] <= x1).all()
    assert (lat[box] >= y0).all() and (lat[box] <= y1).all()


@pytest.mark.slow
def test_quick_bench_agrees_with_postgis(run_quick_bench) -> None:
    figures, results, _stdout = run_quick_bench("import_bench", timeout=300)
    assert figures["bench"] == "import" and figures["mode"] == "quick"
    assert figures["mismatches"] == 0
    assert figures["vectorised_pts_per_s"] > 0 and figures["postgis_pts_per_s"] > 0
    assert figures["osm_import_s"] > 0 and figures["osm_buildings"] > 0
    assert figures["border_points_assigned"] == figures["border_points"] > 0
    assert figures["outside_points_assigned"] == 0
    text = results.read_text(encoding="utf-8")
    assert "## import bench (quick)" in text and '"mismatches": 0' in text
