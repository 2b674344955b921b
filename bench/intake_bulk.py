"""The intake bench's bulk part: a CSV of historical requests in the district, timed through
``layers.importers.requests_bulk.import_requests`` on top of the existing rows, then
re-imported (which must insert nothing). Target: ≥ ``TARGET_BULK_ROWS_PER_S`` rows/s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text

from bench.common import Timer, figure, open_database
from layers.catalogues import request_categories
from layers.db import Database

TARGET_BULK_ROWS_PER_S = 100_000
TEXTS = ["楼道灯坏了好几天", "屋顶漏水需要维修", "独居老人需要定期探访", "<b>门禁</b>坏了 & 急"]


def write_bulk_csv(district: dict[str, Any], n: int, seed: int, path: Path) -> None:
    """``n`` historical requests in the district: closed / open / rejected / withdrawn /
    resolved, 70 % of the closed ones rated, times over the past year (+08:00)."""
    rng = np.random.default_rng([seed, 21])
    x0, y0, x1, y1 = shapely.total_bounds(district["grid_geoms"])
    union = shapely.union_all(district["community_geoms"])
    shapely.prepare(union)
    pts: list[np.ndarray] = []
    got = 0
    while got < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(n - got + 1000, 2))
        xy = xy[shapely.contains_xy(union, xy[:, 0], xy[:, 1])][: n - got]
        pts.append(xy)
        got += len(xy)
    xy = np.concatenate(pts)
    cats = np.array([c.code for c in request_categories()])
    now = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "s")
    created = now - rng.integers(16 * 86400, 365 * 86400, n).astype("timedelta64[s]")
    status = rng.choice(
        np.array(["closed", "open", "rejected", "withdrawn", "resolved"]),
        size=n,
        p=[0.85, 0.07, 0.03, 0.03, 0.02],
    )
    resolved = created + rng.integers(3600, 5 * 86400, n).astype("timedelta64[s]")
    closed = resolved + rng.integers(600, 7 * 86400, n).astype("timedelta64[s]")
    local = np.timedelta64(8 * 3600, "s")

    def stamp(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        s = np.char.add(np.datetime_as_string(values + local, unit="s"), "+08:00")
        return np.where(mask, s, "")

    done = np.isin(status, ["closed", "resolved"])
    ended = np.isin(status, ["closed", "rejected", "withdrawn"])
    rated = (status == "closed") & (rng.random(n) < 0.7)
    frame = pd.DataFrame(
        {
            "lon": xy[:, 0],
            "lat": xy[:, 1],
            "category": rng.choice(cats, size=n),
            "text": np.array(TEXTS, dtype=object)[rng.integers(len(TEXTS), size=n)],
            "created_at": stamp(created, np.ones(n, dtype=bool)),
            "status": status,
            "resolved_at": stamp(resolved, done),
            "closed_at": stamp(np.where(status == "closed", closed, resolved), ended),
            "rating": np.where(rated, rng.integers(1, 6, size=n).astype(str), ""),
        }
    )
    frame.to_csv(path, index=False)


def _request_counts(database: Database) -> tuple[int, int]:
    """(requests, request events) now in the database."""
    with database.session() as s:
        row = s.execute(
            text("SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM request_events)")
        ).one()
    return int(row[0]), int(row[1])


def bulk_bench(
    url: str, district: dict[str, Any], rows: int, seed: int, tmp: Path
) -> dict[str, Any]:
    """Time ``import requests`` of a ``rows``-row CSV on top of the existing requests, then its
    re-run (which must insert nothing)."""
    from layers.importers.requests_bulk import import_requests

    path = tmp / "historical_requests.csv"
    with Timer() as t_write:
        write_bulk_csv(district, rows, seed, path)
    with open_database(url) as database:
        existing, events_before = _request_counts(database)
        with database.session() as s, Timer() as t1:
            first = import_requests(session=s, path=path)
        with database.session() as s, Timer() as t2:
            second = import_requests(session=s, path=path)
        after, events_after = _request_counts(database)
    layer1, layer2 = first.layers["requests"], second.layers["requests"]
    return {
        "bulk_rows": rows,
        "bulk_existing_requests": existing,
        "bulk_csv_write_s": round(t_write.s, 1),
        "bulk_import_s": round(t1.s, 2),
        "bulk_rows_per_s": round(rows / t1.s),
        "bulk_inserted": layer1.inserted,
        "bulk_rejected": layer1.total_rejected,
        "bulk_events": events_after - events_before,
        "bulk_phases_s": {
            k: v for k, v in first.stats.items() if k.endswith("_s") and k != "rows_per_s"
        },
        "bulk_fk_checks": layer1.stats.get("fk_checks"),
        "bulk_rerun_s": round(t2.s, 2),
        "bulk_rerun_inserted": layer2.inserted,
        "bulk_requests_added": after - existing,
    }


def bulk_report(figures: dict[str, Any]) -> tuple[str, int]:
    """Print the bulk figures, set ``bulk_target_met``; (results line, errors: 1 if the re-run
    inserted anything)."""
    figure("bulk import", figures["bulk_rows_per_s"], "rows/s")
    figure("bulk import time", figures["bulk_import_s"], "s")
    figure("bulk events written", figures["bulk_events"])
    figure("bulk re-run inserted", figures["bulk_rerun_inserted"])
    figures["bulk_target_met"] = figures["bulk_rows_per_s"] >= TARGET_BULK_ROWS_PER_S
    line = (
        f"- bulk `import requests`: {figures['bulk_rows']:,} rows on top of "
        f"{figures['bulk_existing_requests']:,} requests in {figures['bulk_import_s']} s = "
        f"{figures['bulk_rows_per_s']:,} rows/s ({figures['bulk_inserted']:,} inserted, "
        f"{figures['bulk_events']:,} events; phases {figures['bulk_phases_s']}; FK "
        f"{figures['bulk_fk_checks']}); re-run {figures['bulk_rerun_s']} s inserted "
        f"{figures['bulk_rerun_inserted']}; target ≥ {TARGET_BULK_ROWS_PER_S:,} rows/s "
        f"{'met' if figures['bulk_target_met'] else 'NOT met'}"
    )
    return line, 1 if figures["bulk_rerun_inserted"] else 0
