"""The circles bench: a quick run end to end (slow), its checks and its figures."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from shapely.geometry import LineString

from bench.circles_bench import nx_graph
from geo.walk import build_walk_graph


def test_nx_graph_keeps_the_shortest_parallel_edge_and_drops_self_loops() -> None:
    geoms = np.array(
        [
            LineString([(0, 0), (10, 0)]),
            LineString([(0, 0), (5, 5), (10, 0)]),
            LineString([(10, 0), (10, 0)]),
            LineString([(10, 0), (10, 20)]),
        ],
        dtype=object,
    )
    g = build_walk_graph(np.array([1, 1, 2, 2]), np.array([2, 2, 2, 3]), geoms)
    h = nx_graph(g)
    assert h.number_of_edges() == 2
    assert h[0][1]["weight"] == pytest.approx(10.0)
    assert nx.shortest_path_length(h, 0, 2, weight="weight") == pytest.approx(30.0)


@pytest.mark.slow
def test_quick_circles_bench_checks_pass(run_quick_bench) -> None:
    figures, results, _stdout = run_quick_bench("circles_bench", timeout=600)
    assert figures["bench"] == "circles" and figures["mode"] == "quick"
    assert figures["checks_pass"] and all(figures["checks"].values())
    for name in ("demo", "synthetic"):
        reach, poly = figures[name]["reach"], figures[name]["polygons"]
        # reached node sets and distances equal networkx's, none beyond the budget
        assert reach["venues"] > 0 and reach["nodes_reached_total"] > 0
        assert reach["reach_mismatches_vs_networkx"] == 0
        assert reach["max_distance_diff_m"] < 1e-6
        assert reach["nodes_beyond_budget"] == 0
        assert reach["pgrouting_mismatches_vs_networkx"] == 0
        assert reach["ours_per_venue_s"] > 0 and reach["networkx_s"] > 0
        assert reach["pgrouting_s"] > 0
        # every polygon covers its pieces and stays within width + 5 m of them
        assert poly["circles"] == reach["venues"]
        assert poly["pieces_not_covered"] == 0 and poly["polygons_invalid"] == 0
        assert poly["vertex_max_distance_m"] <= poly["width_m"] + 5.0
        assert poly["outside_naive_plus_5m"] == 0 and poly["nondeterministic"] == 0
        assert 0.95 <= poly["area_vs_naive_min"] <= poly["area_vs_naive_max"] <= 1.05
        assert poly["ours_ms_mean"] > 0 and poly["naive_ms_mean"] > 0
    # venues sit on nodes in the synthetic network: pgRouting returns exactly our rows
    assert figures["synthetic"]["reach"]["pgrouting_rows_equal_ours"] is True
    api = figures["nearest"]
    assert api["http_errors"] == 0 and api["mean_venues_per_answer"] == 5
    assert api["cold_ms"] > 0 and 0 < api["p50_ms"] <= api["p99_ms"]
    text = results.read_text(encoding="utf-8")
    assert "## circles bench (quick)" in text and '"checks_pass": true' in text
