"""geo.edits: split, merge, move a shared boundary, draw — areas conserved, no slivers."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from geo.edits import EditError, draw_grid, extend_line, merge_grids, move_boundary, split_grid
from geo.validation import polygonal_part

A = box(0, 0, 100, 100)
B = box(100, 0, 200, 100)
C = box(0, 100, 200, 200)  # the northern neighbour of both
COMMUNITY = box(0, 0, 200, 200)


def tiles_exactly(geoms, outline, tol_m2=1e-6) -> bool:
    """The geometries cover ``outline`` with no overlap and no gap (up to ``tol_m2``)."""
    union = shapely.union_all(geoms)
    overlap = sum(g.area for g in geoms) - union.area
    return overlap < tol_m2 and union.symmetric_difference(outline).area < tol_m2


def test_split_along_a_line_conserves_area_and_orders_north_west_first():
    grid = box(0, 0, 200, 100)
    pieces = split_grid(grid, LineString([(50, -5), (50, 105)]))
    assert [round(p.area) for p in pieces] == [5000, 15000]
    assert pieces[0].bounds[0] == 0  # west piece first in the same row
    assert tiles_exactly(pieces, grid)


def test_split_line_stopping_short_of_the_outline_still_cuts():
    grid = box(0, 0, 200, 100)
    pieces = split_grid(grid, LineString([(50, 0.4), (50, 99.6)]), snap_m=1.0)
    assert len(pieces) == 2 and tiles_exactly(pieces, grid)
    with pytest.raises(EditError) as err:
        split_grid(grid, LineString([(50, 5), (50, 95)]), snap_m=1.0)
    assert err.value.code == "line_does_not_split"


def test_split_never_leaves_a_sliver_piece():
    grid = box(0, 0, 200, 100)
    # the line clips a 0.2 m² corner triangle besides the real cut
    line = LineString([(-1, 99.6), (1, 101), (100, -5)])
    pieces = split_grid(grid, line, min_area_m2=1.0)
    assert len(pieces) == 2 and min(p.area for p in pieces) > 1.0
    assert tiles_exactly(pieces, grid)


def test_split_with_a_zigzag_gives_several_pieces_and_bad_lines_are_refused():
    grid = box(0, 0, 300, 100)
    pieces = split_grid(grid, LineString([(100, -1), (100, 101), (200, 101), (200, -1)]))
    assert len(pieces) == 3 and tiles_exactly(pieces, grid)
    with pytest.raises(EditError) as err:
        split_grid(grid, LineString([(10, 10)] * 2))
    assert err.value.code == "invalid_line"


def test_merge_adjacent_grids_and_refuse_apart_or_corner_touching_ones():
    merged = merge_grids([A, B])
    assert isinstance(merged, MultiPolygon) and len(merged.geoms) == 1
    assert merged.area == pytest.approx(20000)
    with pytest.raises(EditError) as err:
        merge_grids([A, box(150, 0, 250, 100)])
    assert err.value.code == "not_adjacent"
    with pytest.raises(EditError) as err:
        merge_grids([A, box(100, 100, 200, 200)])  # touch at one corner only
    assert err.value.code == "not_adjacent"


def test_merge_closes_a_hairline_gap_between_the_grids():
    merged = merge_grids([A, box(100.2, 0, 200, 100)], snap_m=0.5)
    assert len(merged.geoms) == 1 and not list(merged.geoms[0].interiors)
    assert merged.area == pytest.approx(20000, abs=1.0)


def test_move_boundary_changes_both_neighbours_together_and_no_one_else():
    new_a, new_b = move_boundary(A, B, LineString([(130, -0.5), (130, 100.5)]))
    assert new_a.area == pytest.approx(13000) and new_b.area == pytest.approx(7000)
    assert tiles_exactly([new_a, new_b, C], COMMUNITY)  # C untouched, no gap, no sliver


def test_move_boundary_far_into_the_neighbour_keeps_the_right_owner():
    new_a, new_b = move_boundary(A, B, LineString([(190, -1), (190, 101)]))
    assert new_a.area == pytest.approx(19000) and new_b.area == pytest.approx(1000)
    assert new_b.bounds[0] == pytest.approx(190)


def test_move_boundary_with_a_bent_line_and_ends_short_of_the_outline():
    line = LineString([(100, 0.3), (120, 50), (100, 99.7)])
    new_a, new_b = move_boundary(A, B, line, snap_m=1.0)
    assert tiles_exactly([new_a, new_b], A.union(B))
    assert new_a.area == pytest.approx(10000 + 0.5 * 20 * 100, rel=1e-3)
    for g in (new_a, new_b):
        assert len(polygonal_part(g).geoms) == 1


def test_move_boundary_refuses_non_neighbours_and_lines_that_do_not_cross():
    with pytest.raises(EditError) as err:
        move_boundary(A, box(300, 0, 400, 100), LineString([(0, 0), (1, 1)]))
    assert err.value.code == "not_adjacent"
    with pytest.raises(EditError) as err:
        move_boundary(A, B, LineString([(130, 20), (130, 80)]))
    assert err.value.code == "line_does_not_split"


def test_draw_clipped_against_neighbours_closes_hairline_gaps():
    # drawn 0.3 m short of A's edge and overlapping nothing else
    new, after = draw_grid(box(100.3, 0, 200, 100), [A, C], COMMUNITY, snap_m=1.0)
    assert after[0].equals(polygonal_part(A)) and after[1].equals(polygonal_part(C))
    assert tiles_exactly([*after, new], COMMUNITY, tol_m2=1e-3)


def test_draw_overlapping_a_neighbour_is_clipped_to_the_free_space_and_the_community():
    new, _ = draw_grid(box(80, 0, 260, 100), [A, C], COMMUNITY, snap_m=0.5)
    assert new.area == pytest.approx(10000)  # 100..200 x 0..100
    assert new.bounds == pytest.approx((100, 0, 200, 100))
    with pytest.raises(EditError) as err:
        draw_grid(box(10, 10, 50, 50), [A], COMMUNITY)
    assert err.value.code == "empty_after_clip"


def test_draw_carve_takes_area_from_neighbours_without_slivers():
    new, after = draw_grid(box(80, 0, 100.5, 99.8), [A, B], COMMUNITY, mode="carve")
    assert after[0].area == pytest.approx(8000 + 20 * 0.2)
    assert tiles_exactly([new, *after], A.union(B), tol_m2=1e-6)


def test_draw_a_self_intersecting_polygon_is_refused_with_the_repair():
    bowtie = Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    with pytest.raises(EditError) as err:
        draw_grid(bowtie, [], COMMUNITY)
    assert err.value.code == "invalid_geometry"
    assert "Self-intersection" in err.value.params["reason"]
    assert err.value.params["repair"].is_valid
    assert err.value.params["repair"].area == pytest.approx(5000)


def test_extend_line_prolongs_both_ends():
    line = extend_line(LineString([(0, 0), (10, 0)]), 2.0)
    assert list(line.coords) == [(-2.0, 0.0), (12.0, 0.0)]
