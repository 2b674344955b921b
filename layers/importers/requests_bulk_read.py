"""Reading and validating a file of historical requests for ``minqing import requests``:
columns found by their usual names (zh and en), times parsed in the configured zone,
coordinates through the importers' CRS handling, rows rejected with reasons, every point
placed in its live grid or community — column-wise, no per-row Python in the hot path.
The writing is ``layers.importers.requests_bulk``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.assign import GridIndex
from geo.crs import to_wgs84
from layers.catalogues import request_categories
from layers.errors import BadRequest, Unprocessable
from layers.grids.repo import live_sql
from layers.importers.common import (
    LayerReport,
    _find_column,
    reference_boxes,
)
from layers.importers.files import (
    _LAT_NAMES,
    _LON_NAMES,
    CRS_LONLAT,
    check_lonlat,
    find_column,
    is_geographic,
    read_source,
    text_value,
)
from layers.requests.schemas import MAX_TEXT_CHARS

logger = logging.getLogger(__name__)

LAYER = "requests"
DEFAULT_TZ = "Asia/Shanghai"
SOURCE = "import"

CATEGORY_NAMES = ("category", "category_code", "类别", "诉求类别")
TEXT_NAMES = ("text", "content", "description", "内容", "诉求内容")
CREATED_NAMES = ("created_at", "created", "submitted_at", "time", "提交时间", "时间")
STATUS_NAMES = ("status", "状态")
RESOLVED_NAMES = ("resolved_at", "resolved", "办结时间")
CLOSED_NAMES = ("closed_at", "closed", "关闭时间")
RATING_NAMES = ("rating", "评价", "满意度")

# Outcome kinds of a historical request (which event chain it gets).
OPEN, RESOLVED, CLOSED, REJECTED, WITHDRAWN = 0, 1, 2, 3, 4
_STATUS_KIND = {
    "": OPEN,
    "open": OPEN,
    "submitted": OPEN,
    "assigned": OPEN,
    "triage": OPEN,
    "待处理": OPEN,
    "resolved": RESOLVED,
    "已办结": RESOLVED,
    "closed": CLOSED,
    "rated": CLOSED,
    "已关闭": CLOSED,
    "已结案": CLOSED,
    "rejected": REJECTED,
    "已驳回": REJECTED,
    "withdrawn": WITHDRAWN,
    "已撤回": WITHDRAWN,
}
# Statuses that need facts a file does not carry (an assignee, a duplicate link).
_UNSUPPORTED = {"claimed", "in_progress", "duplicate"}
_ZONE_RE = r"[T ]\d.*(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"
_NAT = np.iinfo(np.int64).min
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds


@dataclass
class HistoryRows:
    """The valid rows, column-wise (times in Unix microseconds, UTC; -1 = none)."""

    row: np.ndarray  # index in the file (0-based)
    lon: np.ndarray
    lat: np.ndarray
    category: np.ndarray  # codes (object)
    text: np.ndarray  # object
    created_us: np.ndarray
    resolved_us: np.ndarray
    closed_us: np.ndarray
    kind: np.ndarray  # int16
    rating: np.ndarray  # int16, 0 = none
    grid_id: np.ndarray  # int64, 0 = none
    community_id: np.ndarray  # int64
    occurrence: np.ndarray  # int32


# --------------------------------------------------------------------------- reading


def _read_csv(path: Path, lon_col: str | None, lat_col: str | None) -> tuple[pd.DataFrame, str]:
    """The CSV with every column as text except lon / lat (float64, NaN where not a number)."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            head = pd.read_csv(path, nrows=0, encoding=encoding)
            columns = [str(c) for c in head.columns]
            lon_name = lon_col or find_column(columns, _LON_NAMES)
            lat_name = lat_col or find_column(columns, _LAT_NAMES)
            for given in (lon_col, lat_col):
                if given is not None and given not in columns:
                    raise BadRequest(
                        "csv_no_lonlat", path=path.name, reason=f"no column {given!r}",
                        columns=columns,
                    )  # fmt: skip
            if lon_name is None or lat_name is None:
                raise BadRequest(
                    "csv_no_lonlat",
                    path=path.name,
                    reason="no longitude / latitude columns found (give --lon-col and --lat-col)",
                    columns=columns,
                )
            dtypes: dict[str, Any] = {c: str for c in columns}
            try:
                frame = pd.read_csv(
                    path,
                    encoding=encoding,
                    dtype={**dtypes, lon_name: "float64", lat_name: "float64"},
                    keep_default_na=False,
                    na_values={lon_name: [""], lat_name: [""]},
                )
            except ValueError as exc:
                if isinstance(exc, UnicodeDecodeError):
                    raise
                frame = pd.read_csv(path, encoding=encoding, dtype=dtypes, keep_default_na=False)
                for name in (lon_name, lat_name):
                    frame[name] = pd.to_numeric(frame[name].str.strip(), errors="coerce")
            frame = frame.rename(columns={lon_name: "__lon", lat_name: "__lat"})
            return frame, "CSV"
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError as exc:
            raise BadRequest("import_empty", path=path.name, reason="no rows") from exc
        except pd.errors.ParserError as exc:
            raise BadRequest("import_corrupt", path=path.name, reason=str(exc)[:300]) from exc
    raise BadRequest("import_corrupt", path=path.name, reason="neither UTF-8 nor GB18030 text")


def read_history(
    path: Path, lon_col: str | None, lat_col: str | None
) -> tuple[pd.DataFrame, str, pyproj.CRS | None, np.ndarray]:
    """(frame with ``__lon`` / ``__lat``, format, file CRS, rows that are not points)."""
    if path.suffix.lower() == ".csv":
        frame, fmt = _read_csv(path, lon_col, lat_col)
        if frame.empty:
            raise BadRequest("import_empty", path=path.name, reason="no rows")
        return frame, fmt, None, np.zeros(len(frame), dtype=bool)
    gdf, fmt = read_source(path, lon_col=lon_col, lat_col=lat_col)
    geoms = shapely.force_2d(gdf.geometry.to_numpy())
    is_point = shapely.get_type_id(geoms) == 0
    is_point &= ~shapely.is_empty(geoms)
    if not is_point.any():
        found = sorted({g.geom_type for g in geoms if g is not None})
        raise Unprocessable(
            "wrong_geometry_type", path=path.name, layer=LAYER, expected="point",
            found=", ".join(found) or "none",
        )  # fmt: skip
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    for c in frame.columns:
        frame[c] = frame[c].map(lambda v: text_value(v) or "").astype(object)
    lon = np.full(len(frame), np.nan)
    lat = np.full(len(frame), np.nan)
    lon[is_point] = shapely.get_x(geoms[is_point])
    lat[is_point] = shapely.get_y(geoms[is_point])
    frame["__lon"], frame["__lat"] = lon, lat
    return frame, fmt, gdf.crs, ~is_point


def _column(frame: pd.DataFrame, candidates: tuple[str, ...], *, required: bool) -> str | None:
    columns = [c for c in frame.columns if not str(c).startswith("__")]
    return _find_column(columns, candidates, layer=LAYER, required=required)


def _texts(frame: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    return frame[column].fillna("").astype(str)


def _map_distinct(values: pd.Series, fn: Any) -> np.ndarray:
    """``fn`` applied to each distinct value once (categories, statuses, ratings repeat a lot);
    an object array aligned with ``values``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    mapped = np.array([fn(u) for u in uniques] + [None], dtype=object)
    return mapped[codes]


def _parse_times(values: pd.Series, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(Unix microseconds UTC with -1 where absent, bad mask). Naive times are read in ``tz``."""
    s = values
    present = (s != "").to_numpy()
    out = np.full(len(s), -1, dtype=np.int64)
    bad = np.zeros(len(s), dtype=bool)
    if not present.any():
        return out, bad
    fast = _parse_times_homogeneous(s, present, tz)
    if fast is not None:
        return fast
    s = s.str.strip()
    aware = s.str.contains(_ZONE_RE, regex=True).to_numpy() & present
    naive = present & ~aware
    for mask, zoned in ((aware, True), (naive, False)):
        if not mask.any():
            continue
        part = s[mask]
        if zoned:
            parsed = pd.to_datetime(part, format="ISO8601", errors="coerce", utc=True)
        else:
            parsed = pd.to_datetime(part, format="ISO8601", errors="coerce")
            parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        us = parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]").array.asi8
        ok = us != _NAT
        idx = np.flatnonzero(mask)
        out[idx[ok]] = us[ok]
        bad[idx[~ok]] = True
    return out, bad


def _parse_times_homogeneous(
    s: pd.Series, present: np.ndarray, tz: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The fast path of ``_parse_times``: every present value parses in one go and all of
    them carry a zone, or none does; None otherwise (mixed or bad values)."""
    part = s[present]
    try:
        parsed = pd.to_datetime(part, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return None
    if parsed.dtype.kind != "M":  # e.g. mixed offsets come back as objects
        return None
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    us = parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]").array.asi8
    if (us == _NAT).any():
        return None
    out = np.full(len(s), -1, dtype=np.int64)
    out[present] = us
    return out, np.zeros(len(s), dtype=bool)


# --------------------------------------------------------------------------- validation


class _Rejects:
    """Row rejections with reasons and example rows (1-based line numbers of the file)."""

    def __init__(self, n: int, rep: LayerReport, offset: int) -> None:
        self.ok = np.ones(n, dtype=bool)
        self.rep = rep
        self.offset = offset  # file line of row 0

    def reject(self, mask: np.ndarray, reason: str) -> None:
        new = mask & self.ok
        count = int(new.sum())
        if not count:
            return
        for i in np.flatnonzero(new)[:5]:
            self.rep.reject(reason, f"row {int(i) + self.offset}", n=0)
        self.rep.rejected[reason] = self.rep.rejected.get(reason, 0) + count
        self.ok &= ~mask


def _vertices(lon: np.ndarray, lat: np.ndarray) -> Any:
    """All the points as the vertices of one geometry (``check_lonlat`` reads vertices only;
    one line is ~100x cheaper to build than a million points)."""
    xy = np.column_stack([lon, lat])
    if len(xy) == 1:
        xy = np.vstack([xy, xy])
    return shapely.linestrings(xy)


def _category_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for c in request_categories():
        for name in (c.code, c.name_zh, c.name_en):
            lookup[name.strip().lower()] = c.code
    return lookup


def category_deadline_hours() -> dict[str, int]:
    return {c.code: c.deadline_hours for c in request_categories()}


def _lonlat_to_wgs84(
    lon: np.ndarray, lat: np.ndarray, crs_name: str, file_crs: pyproj.CRS | None
) -> tuple[np.ndarray, np.ndarray]:
    if crs_name == "wgs84":
        return lon, lat
    if crs_name == "file":
        tr = pyproj.Transformer.from_crs(file_crs, CRS_LONLAT, always_xy=True)
        x, y = tr.transform(lon, lat)
        return np.asarray(x, float), np.asarray(y, float)
    x, y = to_wgs84(lon, lat, crs_name)
    return np.asarray(x, float), np.asarray(y, float)


def _occurrence(*columns: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have the same content (0 for the first)."""
    n = len(columns[0])
    h = np.zeros(n, dtype=np.uint64)
    for col in columns:
        h = h * np.uint64(1_000_003) ^ pd.util.hash_array(np.asarray(col))
    order = np.argsort(h, kind="stable")
    hs = h[order]
    starts = np.r_[True, hs[1:] != hs[:-1]]
    if starts.all():
        return np.zeros(n, dtype=np.int32)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    occ = np.empty(n, dtype=np.int32)
    occ[order] = np.arange(n) - group_start
    return occ


def validate_history(
    session: Session,
    frame: pd.DataFrame,
    not_point: np.ndarray,
    *,
    path: Path,
    crs_name: str,
    file_crs: pyproj.CRS | None,
    tz: str,
    now: datetime,
    rep: LayerReport,
    row_offset: int,
) -> HistoryRows:
    n = len(frame)
    rj = _Rejects(n, rep, row_offset)
    rj.reject(not_point, "not_a_point")
    cat_c = _column(frame, CATEGORY_NAMES, required=True)
    text_c = _column(frame, TEXT_NAMES, required=True)
    created_c = _column(frame, CREATED_NAMES, required=True)
    status_c = _column(frame, STATUS_NAMES, required=False)
    resolved_c = _column(frame, RESOLVED_NAMES, required=False)
    closed_c = _column(frame, CLOSED_NAMES, required=False)
    rating_c = _column(frame, RATING_NAMES, required=False)

    # coordinates: finite, right order and range, then WGS84
    lon = frame["__lon"].to_numpy(dtype=np.float64)
    lat = frame["__lat"].to_numpy(dtype=np.float64)
    rj.reject(~(np.isfinite(lon) & np.isfinite(lat)), "invalid_coordinates")
    if is_geographic(crs_name, file_crs):
        # the file-level diagnosis (swapped order, projected coordinates without --crs) as
        # the other importers make it, then the odd out-of-range row rejected on its own
        idx = np.flatnonzero(rj.ok)
        check_lonlat(
            np.array([_vertices(lon[idx], lat[idx])]),
            references=reference_boxes(session),
            path=path.name,
        )
        in_range = (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        rj.reject(~in_range, "coordinates_out_of_range")
    idx = np.flatnonzero(rj.ok)
    lon_w = np.full(n, np.nan)
    lat_w = np.full(n, np.nan)
    lon_w[idx], lat_w[idx] = _lonlat_to_wgs84(lon[idx], lat[idx], crs_name, file_crs)
    rj.reject(~(np.isfinite(lon_w) & np.isfinite(lat_w)), "not_convertible")

    # category, text
    lookup = _category_lookup()
    cats = _map_distinct(_texts(frame, cat_c), lambda v: lookup.get(str(v).strip().lower()))
    rj.reject(pd.isna(cats), "unknown_category")
    texts = _texts(frame, text_c)
    lengths = texts.str.len().to_numpy()
    rj.reject((lengths == 0) | texts.str.isspace().to_numpy(), "missing_text")
    rj.reject(lengths > MAX_TEXT_CHARS, "text_too_long")

    # times
    now_us = int(now.timestamp() * 1_000_000)
    created, bad_created = _parse_times(_texts(frame, created_c), tz)
    rj.reject((created < 0) & ~bad_created, "missing_created_at")
    rj.reject(bad_created, "invalid_time")
    rj.reject(created > now_us, "time_in_future")
    resolved, bad_res = _parse_times(_texts(frame, resolved_c), tz)
    closed, bad_clo = _parse_times(_texts(frame, closed_c), tz)
    rj.reject(bad_res | bad_clo, "invalid_time")
    rj.reject((resolved > now_us) | (closed > now_us), "time_in_future")

    # status and rating
    status = _map_distinct(_texts(frame, status_c), lambda v: str(v).strip().lower())
    rj.reject(np.isin(status, list(_UNSUPPORTED)), "unsupported_status")
    kind_o = _map_distinct(pd.Series(status), _STATUS_KIND.get)
    rj.reject(pd.isna(kind_o), "unknown_status")
    kind = np.where(pd.isna(kind_o), OPEN, kind_o).astype(np.int16)
    rating_txt = _map_distinct(_texts(frame, rating_c), lambda v: str(v).strip())
    rating_num = pd.to_numeric(pd.Series(rating_txt), errors="coerce").to_numpy(np.float64)
    has_rating = rating_txt != ""
    valid_rating = np.isin(rating_num, [1, 2, 3, 4, 5])
    rj.reject(has_rating & ~valid_rating, "invalid_rating")
    rj.reject(has_rating & (kind != CLOSED), "rating_without_close")
    rj.reject((status == "rated") & ~has_rating, "invalid_rating")
    rating = np.where(has_rating & valid_rating, rating_num, 0).astype(np.int16)

    # fill the times each outcome needs, then check their order
    done = (kind == RESOLVED) | (kind == CLOSED)
    ended = (kind == CLOSED) | (kind == REJECTED) | (kind == WITHDRAWN)
    resolved = np.where(done & (resolved < 0), np.where(closed >= 0, closed, created), resolved)
    resolved = np.where(done, resolved, -1)
    closed = np.where(ended & (closed < 0), np.where(done, resolved, created), closed)
    closed = np.where(ended, closed, -1)
    unordered = (done & (resolved < created)) | (ended & (closed < np.maximum(created, resolved)))
    rj.reject(unordered, "times_out_of_order")

    # location: grid, else community triage, else outside
    idx = np.flatnonzero(rj.ok)
    grid_id = np.zeros(n, dtype=np.int64)
    community_id = np.zeros(n, dtype=np.int64)
    if len(idx):
        gid, cid = _assign(session, lon_w[idx], lat_w[idx])
        grid_id[idx], community_id[idx] = gid, cid
        outside = np.zeros(n, dtype=bool)
        outside[idx] = cid == 0
        rj.reject(outside, "outside_jurisdiction")

    keep = np.flatnonzero(rj.ok)
    cat_arr = cats[keep]
    text_arr = texts.to_numpy(dtype=object)[keep]
    return HistoryRows(
        row=keep,
        lon=lon_w[keep],
        lat=lat_w[keep],
        category=cat_arr,
        text=text_arr,
        created_us=created[keep],
        resolved_us=resolved[keep],
        closed_us=closed[keep],
        kind=kind[keep],
        rating=rating[keep],
        grid_id=grid_id[keep],
        community_id=community_id[keep],
        occurrence=_occurrence(lon_w[keep], lat_w[keep], cat_arr, text_arr, created[keep]),
    )


def _assign(session: Session, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(grid id or 0, community id or 0) per point: the live grid covering it (lowest code),
    else the community covering it (lowest code)."""
    rows = session.execute(
        text(
            "SELECT id, code, community_id, ST_AsBinary(geom) FROM grids "
            f"WHERE {live_sql('')} ORDER BY code, id"
        )
    ).all()
    grid_id = np.zeros(len(lon), dtype=np.int64)
    community_id = np.zeros(len(lon), dtype=np.int64)
    if rows:
        index = GridIndex(
            shapely.from_wkb([bytes(r[3]) for r in rows]), np.array([r[1] for r in rows])
        )
        hit = index.assign(lon, lat)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        comm = np.array([r[2] for r in rows], dtype=np.int64)
        grid_id = np.where(hit >= 0, ids[np.maximum(hit, 0)], 0)
        community_id = np.where(hit >= 0, comm[np.maximum(hit, 0)], 0)
    rest = np.flatnonzero(grid_id == 0)
    if len(rest):
        areas = session.execute(
            text(
                "SELECT id, code, ST_AsBinary(geom) FROM areas WHERE level = 'community' "
                "ORDER BY code"
            )
        ).all()
        if areas:
            index = GridIndex(
                shapely.from_wkb([bytes(a[2]) for a in areas]), np.array([a[1] for a in areas])
            )
            hit = index.assign(lon[rest], lat[rest])
            ids = np.array([a[0] for a in areas], dtype=np.int64)
            community_id[rest] = np.where(hit >= 0, ids[np.maximum(hit, 0)], 0)
    return grid_id, community_id
