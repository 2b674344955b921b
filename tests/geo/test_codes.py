"""Grid codes and the north-west-first sequence of DESIGN §2."""

import numpy as np
import pytest

from geo.codes import grid_code, grid_sequence, is_valid_grid_code, parse_grid_code


def test_sequence_rows_from_the_north_then_west_first():
    ymax = 1000.0
    points = np.array(
        [
            [500.0, 950.0],  # row 0, x 500
            [100.0, 720.0],  # row 0 (depth 280 m), x 100
            [50.0, 690.0],  # row 1 (depth 310 m), x 50
            [900.0, 990.0],  # row 0, x 900
            [10.0, 100.0],  # row 2
        ]
    )
    assert grid_sequence(points, ymax).tolist() == [2, 1, 4, 3, 5]


def test_sequence_row_height_and_ties_are_deterministic():
    points = np.array([[0.0, 90.0], [0.0, 99.0], [5.0, 98.0]])
    # one row of 300 m: west first, tie on x → north first
    assert grid_sequence(points, 100.0).tolist() == [2, 1, 3]
    # rows of 5 m: (0, 99) and (5, 98) in row 0, (0, 90) in row 2
    assert grid_sequence(points, 100.0, row_height_m=5.0).tolist() == [3, 1, 2]
    same = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert grid_sequence(same, 10.0).tolist() == [1, 2]


def test_sequence_is_a_permutation_of_1_to_n():
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 2000, size=(60, 2))
    seq = grid_sequence(points, 2000.0)
    assert sorted(seq.tolist()) == list(range(1, 61))
    # north rows always precede south rows
    rows = np.floor((2000.0 - points[:, 1]) / 300.0)
    order = np.argsort(seq)
    assert (np.diff(rows[order]) >= 0).all()


def test_sequence_rejects_bad_input():
    assert grid_sequence(np.zeros((0, 2)), 0.0).tolist() == []
    with pytest.raises(ValueError):
        grid_sequence(np.array([[0.0, 10.0]]), 5.0)  # north of ymax
    with pytest.raises(ValueError):
        grid_sequence(np.zeros((3, 3)), 5.0)
    with pytest.raises(ValueError):
        grid_sequence(np.zeros((1000, 2)), 5.0)


def test_grid_code_roundtrip():
    code = grid_code("990000", "001", "012", 7)
    assert code == "990000001012007"
    assert len(code) == 15
    parsed = parse_grid_code(code)
    assert parsed == {
        "district": "990000",
        "street": "001",
        "community": "012",
        "sequence": 7,
        "street_code": "990000001",
        "community_code": "990000001012",
    }
    assert is_valid_grid_code(code)


@pytest.mark.parametrize(
    "args",
    [
        ("99000", "001", "001", 1),
        ("990000", "1", "001", 1),
        ("990000", "001", "0a1", 1),
        ("990000", "000", "001", 1),
        ("990000", "001", "001", 0),
        ("990000", "001", "001", 1000),
        ("990000", "001", "001", "1"),
    ],
)
def test_grid_code_rejects_bad_components(args):
    with pytest.raises(ValueError):
        grid_code(*args)


@pytest.mark.parametrize(
    "code",
    [
        "99000000101200",
        "9900000010120071",
        "99000000101200a",
        "990000001012000",
        990000001012007,
        "９９0000001012007",
        None,
    ],
)
def test_invalid_codes(code):
    assert not is_valid_grid_code(code)
    with pytest.raises(ValueError):
        parse_grid_code(code)
