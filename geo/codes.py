"""Grid codes (DESIGN §2).

A grid code is 15 digits: 6-digit district (GB/T 2260; the demo uses 990000) + 3-digit street
+ 3-digit community + 3-digit sequence. Inside a community the sequence follows each grid's
representative point in the local UTM zone: row = floor((ymax − y) / 300 m) ascending (north
first), then x ascending (west first), numbered from 001.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

GRID_CODE_LENGTH = 15
ROW_HEIGHT_M = 300.0
MAX_SEQUENCE = 999

# (name, start, end) of each component inside the 15-digit code.
_COMPONENTS = (("district", 0, 6), ("street", 6, 9), ("community", 9, 12), ("sequence", 12, 15))


def grid_sequence(
    rep_points_xy_utm: np.ndarray,
    community_ymax_m: float,
    row_height_m: float = ROW_HEIGHT_M,
) -> np.ndarray:
    """1-based sequence numbers of a community's grids from their representative points.

    ``rep_points_xy_utm`` is an (n, 2) array of UTM metres; ``community_ymax_m`` the
    community's maximum y. Rows of ``row_height_m`` are counted from the north; inside a row
    west comes first. Exact ties (same row and x) fall back to north first, then input order,
    so the result is deterministic. Returns an int array aligned with the input.
    """
    if row_height_m <= 0:
        raise ValueError("row_height_m must be positive")
    xy = np.asarray(rep_points_xy_utm, dtype=float)
    if xy.size == 0:
        return np.zeros(0, dtype=np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError("rep_points_xy_utm must be an (n, 2) array")
    if not np.isfinite(xy).all():
        raise ValueError("rep_points_xy_utm must be finite")
    n = xy.shape[0]
    if n > MAX_SEQUENCE:
        raise ValueError(f"a community holds at most {MAX_SEQUENCE} grids, got {n}")
    depth_m = community_ymax_m - xy[:, 1]
    if (depth_m < -1e-6).any():
        raise ValueError("a representative point lies north of community_ymax_m")
    rows = np.floor(np.clip(depth_m, 0.0, None) / row_height_m).astype(np.int64)
    # np.lexsort sorts by the last key first: row, then x, then north first, then input order.
    order = np.lexsort((np.arange(n), -xy[:, 1], xy[:, 0], rows))
    sequence = np.empty(n, dtype=np.int64)
    sequence[order] = np.arange(1, n + 1)
    return sequence


def _digits(value: Any, width: int, name: str) -> str:
    text = str(value)
    if len(text) != width or not text.isascii() or not text.isdigit():
        raise ValueError(f"{name} must be {width} ASCII digits, got {value!r}")
    if int(text) == 0:
        raise ValueError(f"{name} must not be all zeros")
    return text


def grid_code(district: str, street: str, community: str, seq: int) -> str:
    """15-digit grid code from its components (district 6, street 3, community 3 digits)."""
    district = _digits(district, 6, "district")
    street = _digits(street, 3, "street")
    community = _digits(community, 3, "community")
    if isinstance(seq, bool) or not isinstance(seq, int | np.integer):
        raise ValueError(f"seq must be an int, got {seq!r}")
    if not 1 <= int(seq) <= MAX_SEQUENCE:
        raise ValueError(f"seq must be in 1..{MAX_SEQUENCE}, got {seq}")
    return f"{district}{street}{community}{int(seq):03d}"


def parse_grid_code(code: str) -> dict[str, Any]:
    """Components of a grid code.

    Returns ``district``, ``street``, ``community`` (digit strings), ``sequence`` (int) and the
    hierarchical prefixes ``street_code`` (9 digits) and ``community_code`` (12 digits).
    Raises ValueError for an invalid code.
    """
    if not isinstance(code, str):
        raise ValueError(f"grid code must be a string, got {type(code).__name__}")
    if len(code) != GRID_CODE_LENGTH or not code.isascii() or not code.isdigit():
        raise ValueError(f"grid code must be {GRID_CODE_LENGTH} ASCII digits, got {code!r}")
    parts = {name: code[start:end] for name, start, end in _COMPONENTS}
    for name, value in parts.items():
        if int(value) == 0:
            raise ValueError(f"grid code {code!r} has an all-zero {name}")
    return {
        "district": parts["district"],
        "street": parts["street"],
        "community": parts["community"],
        "sequence": int(parts["sequence"]),
        "street_code": code[:9],
        "community_code": code[:12],
    }


def is_valid_grid_code(code: Any) -> bool:
    """Whether ``code`` is a well-formed 15-digit grid code with no all-zero component."""
    try:
        parse_grid_code(code)
    except ValueError:
        return False
    return True
