"""Synthetic people and requests: volunteer names and phones, and the historical requests
(where, what, when, how they ended), COPYed straight into PostGIS for ``data.synthetic``."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from data.demo import AVAILABILITY_PATTERNS as DEMO_AVAILABILITY
from data.synthetic_layout import (
    SyntheticBuildings,
    SyntheticLayout,
    _transformers,
    shared_vertices,
)
from geo.assign import GridIndex
from layers.catalogues import request_categories
from layers.importers.store import ewkb_hex

logger = logging.getLogger(__name__)

OPEN_SHARE = 0.05  # share of historical requests still open
ON_VERTEX_SHARE = 0.002  # share of requests exactly on a shared grid vertex
SOURCE = "synthetic"

OPEN_STATUSES = np.array(["assigned", "claimed", "in_progress"])
SURNAMES = np.array(list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"))
GIVEN = np.array(list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰海燕"))
# the same weekly windows as the demo ("HH:MM-HH:MM", read in Asia/Shanghai)
AVAILABILITY_PATTERNS = DEMO_AVAILABILITY
REQUEST_TEXTS = {
    "hardship_relief": ["独居老人家中断粮，需要帮助采购", "低保户冬季取暖困难"],
    "employment": ["下岗职工想参加技能培训", "大学毕业生咨询创业补贴"],
    "culture_science": ["希望社区组织防诈骗讲座", "孩子暑期想参加科普活动"],
    "housing": ["楼道灯坏了好几天", "屋顶漏水需要维修", "单元门门禁损坏", "下水道堵塞有异味"],
    "healthcare": ["行动不便老人需要上门测血压", "咨询家庭医生签约"],
    "elderly_care": ["高龄老人需要助餐服务", "老人想找人陪同就医", "独居老人需要定期探访"],
    "errand_agency": ["帮忙代办社保认证", "代缴水电燃气费"],
    "petition_agency": ["反映小区物业收费问题", "咨询拆迁补偿政策"],
    "dispute_mediation": ["楼上装修噪音扰民", "邻里因停车位发生纠纷"],
    "micro_wish": ["孩子想要一套课外书", "希望有人教用智能手机"],
    "other": ["建议增设健身器材", "小区绿化需要修剪"],
}
CATEGORY_WEIGHTS = {
    "hardship_relief": 6,
    "employment": 3,
    "culture_science": 2,
    "housing": 14,
    "healthcare": 6,
    "elderly_care": 10,
    "errand_agency": 8,
    "petition_agency": 2,
    "dispute_mediation": 5,
    "micro_wish": 3,
}


def _copy_frames(session: Session, table: str, frames: Iterable[pd.DataFrame]) -> int:
    """COPY frames as CSV (far faster than row by row for 10⁵–10⁶ rows); NA / None → NULL.

    All frames must have the same columns; they are produced lazily, so memory stays bounded
    by one chunk.
    """
    raw = session.connection().connection.driver_connection
    n = 0
    with raw.cursor() as cur:
        cp_cm = None
        for frame in frames:
            if cp_cm is None:
                cols = ", ".join(frame.columns)
                cp_cm = cur.copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)")
                cp = cp_cm.__enter__()
            buf = io.StringIO()
            frame.to_csv(buf, header=False, index=False)
            cp.write(buf.getvalue())
            n += len(frame)
        if cp_cm is not None:
            cp_cm.__exit__(None, None, None)
    return n


@contextmanager
def _indexes_deferred(session: Session, table: str, incoming_rows: int) -> Iterator[None]:
    """Drop ``table``'s plain indexes for a bulk load and rebuild them after it (same
    transaction), when the load is larger than the table; constraint indexes stay."""
    existing = session.scalar(
        text(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = CAST(:t AS regclass)"
        ),
        {"t": table},
    )
    if incoming_rows < 50_000 or incoming_rows < 2 * (existing or 0):
        yield
        return
    rows = session.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = CAST(:t AS regclass) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        ),
        {"t": table},
    ).all()
    for name, _ in rows:
        session.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, ddl in rows:
        session.execute(text(ddl))
    logger.debug("rebuilt %d indexes of %s after the bulk load", len(rows), table)


def _lookup(values: np.ndarray, idx: np.ndarray) -> pd.Series:
    """``values[idx]`` as a nullable integer column, NULL where ``idx`` is −1."""
    return pd.Series(values[np.maximum(idx, 0)], dtype="Int64").where(idx >= 0)


def _people(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    names = np.char.add(
        SURNAMES[rng.integers(len(SURNAMES), size=n)], GIVEN[rng.integers(len(GIVEN), size=n)]
    )
    second = rng.random(n) < 0.6
    names[second] = np.char.add(names[second], GIVEN[rng.integers(len(GIVEN), size=second.sum())])
    prefix = rng.choice(np.array(["13", "15", "17", "18", "19"]), size=n)
    tail = rng.integers(0, 10**9, size=n)
    phones = [f"{p}{t:09d}" for p, t in zip(prefix, tail, strict=True)]
    return names, phones


def _write_requests(
    session: Session,
    layout: SyntheticLayout,
    blds: SyntheticBuildings,
    b_codes: np.ndarray,
    index: GridIndex,
    live_id: np.ndarray,
    live_comm: np.ndarray,
    weights: np.ndarray,
    *,
    n: int,
    seed: int,
    now: datetime,
) -> int:
    """COPY ``n`` historical requests; returns how many are still open."""
    rng = np.random.default_rng([seed, 4])
    _, to_lonlat = _transformers(layout.utm_crs)
    # where: exactly on shared grid vertices, anywhere in the district, else in a building
    n_vertex = round(n * ON_VERTEX_SHARE)
    n_free = round(n * 0.15) if len(blds) else n - n_vertex
    n_building = n - n_vertex - n_free
    shared = shared_vertices(layout.grid_lonlat)
    if len(shared) == 0:
        n_free += n_vertex
        n_vertex = 0
    on_vertex = shared[rng.integers(len(shared), size=n_vertex)] if n_vertex else np.zeros((0, 2))
    xmin, ymin, xmax, ymax = layout.district_utm.bounds
    free: list[np.ndarray] = []
    got = 0
    while got < n_free:
        xy = rng.uniform((xmin, ymin), (xmax, ymax), size=(max(2 * (n_free - got), 16), 2))
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        pts = np.column_stack([lon, lat])[index.assign(lon, lat) >= 0]
        free.append(pts[: n_free - got])
        got += len(free[-1])
    b_idx = rng.choice(len(blds), size=n_building, p=weights) if n_building else np.zeros(0, int)
    if n_building:
        xy = blds.points_inside(b_idx, rng)
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        in_building = np.column_stack([lon, lat])
    else:
        in_building = np.zeros((0, 2))
    lonlat = np.concatenate([in_building, *free, on_vertex])
    building_code = np.concatenate([b_codes[b_idx], np.full(n - n_building, None, dtype=object)])
    shuffle = rng.permutation(n)
    lonlat, building_code = lonlat[shuffle], building_code[shuffle]
    hit = index.assign(lonlat[:, 0], lonlat[:, 1])

    cats = list(CATEGORY_WEIGHTS)
    cw = np.array([CATEGORY_WEIGHTS[c] for c in cats], dtype=float)
    cat_idx = rng.choice(len(cats), size=n, p=cw / cw.sum())
    deadline_h = {c.code: c.deadline_hours for c in request_categories()}
    deadline_s = np.array([deadline_h[c] * 3600 for c in cats])[cat_idx]
    texts = np.empty(n, dtype=object)
    pick = rng.random(n)
    for k, c in enumerate(cats):
        choices = np.array(REQUEST_TEXTS[c], dtype=object)
        mask = cat_idx == k
        texts[mask] = choices[(pick[mask] * len(choices)).astype(int)]

    day = 86_400
    is_open = rng.random(n) < OPEN_SHARE
    age_s = np.where(
        is_open, rng.uniform(600, 15 * day, size=n), rng.uniform(15 * day, 365 * day, size=n)
    ).astype(np.int64)
    now_s = np.datetime64(now.replace(tzinfo=None), "s")
    created = now_s - age_s.astype("timedelta64[s]")
    deadline = created + deadline_s.astype("timedelta64[s]")
    terminal = rng.choice(
        np.array(["closed", "rejected", "duplicate", "withdrawn"]),
        size=n,
        p=[0.92, 0.02, 0.03, 0.03],
    )
    status = np.where(is_open, OPEN_STATUSES[rng.integers(3, size=n)], terminal)
    escalated = is_open & (rng.random(n) < 0.1)
    owner = np.where(escalated, "community", "grid")
    deadline_now = np.where(
        escalated, deadline + (deadline_s * 2).astype("timedelta64[s]"), deadline
    )
    closed = status == "closed"
    resolve_s = np.minimum(rng.lognormal(np.log(deadline_s * 0.4), 0.8), 7 * day).astype(np.int64)
    resolved_at = created + resolve_s.astype("timedelta64[s]")
    closed_at = resolved_at + rng.uniform(600, 7 * day, size=n).astype("timedelta64[s]")
    ended = ~is_open
    end_at = np.where(
        closed, closed_at, created + rng.uniform(600, 3 * day, size=n).astype("timedelta64[s]")
    )
    rated = closed & (rng.random(n) < 0.7)
    rating = rng.choice(np.arange(1, 6), size=n, p=[0.02, 0.03, 0.10, 0.35, 0.50])

    def ts(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        out = np.char.add(np.datetime_as_string(values, unit="s"), "Z").astype(object)
        if mask is not None:
            out[~mask] = None
        return out

    updated = np.where(ended, end_at, created)
    district = layout.district_code

    def chunks(size: int = 100_000) -> Iterator[pd.DataFrame]:
        for a in range(0, n, size):
            b = min(a + size, n)
            ids = range(a + 1, b + 1)
            yield pd.DataFrame(
                {
                    "number": [f"SYN{district}{i:08d}" for i in ids],
                    "ticket_hash": [
                        hashlib.sha256(
                            f"minqing-synthetic:{seed}:{district}:{i}".encode()
                        ).hexdigest()
                        for i in ids
                    ],
                    "category": np.array(cats, dtype=object)[cat_idx[a:b]],
                    "text": texts[a:b],
                    "status": status[a:b],
                    "owner_level": owner[a:b],
                    "grid_id": _lookup(live_id, hit[a:b]),
                    "community_id": _lookup(live_comm, hit[a:b]),
                    "building_code": building_code[a:b],
                    "deadline_at": ts(deadline_now[a:b]),
                    "first_deadline_at": ts(deadline[a:b]),
                    "resolved_at": ts(resolved_at[a:b], closed[a:b]),
                    "closed_at": ts(end_at[a:b], ended[a:b]),
                    "rating": pd.Series(rating[a:b], dtype="Int64").where(rated[a:b]),
                    "source": SOURCE,
                    "geom": ewkb_hex(shapely.points(lonlat[a:b])),
                    "created_at": ts(created[a:b]),
                    "updated_at": ts(updated[a:b]),
                }
            )

    with _indexes_deferred(session, "requests", n):
        _copy_frames(session, "requests", chunks())
    return int(is_open.sum())
