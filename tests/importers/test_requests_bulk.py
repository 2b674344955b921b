"""`minqing import requests`: historical requests with their events into the demo district.

Small files into the test database: counts, grids checked against PostGIS, event chains legal
by the transition table with the request's status as the last event's to_status, a re-run
that changes nothing, CRS handling, and bad files refused with nothing written.
"""

from __future__ import annotations

import itertools
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from geo.crs import from_wgs84
from layers.errors import BadRequest, Unprocessable
from layers.importers.requests_bulk import import_requests
from layers.requests.rules import deadline_hours
from layers.requests.workflow import next_status
from web.cli import main

logger = logging.getLogger(__name__)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# event action -> workflow action (the deadline job records auto_close as "auto_closed")
EVENT_ACTION = {"auto_closed": "auto_close"}


def grid_points(session, n: int) -> list[tuple[float, float, str]]:
    """``n`` points inside live grids (lon, lat, grid code), spread over the grids."""
    rows = session.execute(
        text(
            "SELECT ST_X(p), ST_Y(p), code FROM (SELECT code, "
            "ST_PointOnSurface(geom) AS p FROM grids WHERE generation_high IS NULL "
            "ORDER BY code) q"
        )
    ).all()
    assert rows, "the demo district has live grids"
    return [(float(r[0]), float(r[1]), r[2]) for r in (rows * n)[:n]]


def triage_point(session) -> tuple[float, float] | None:
    """A point inside a community but in no live grid, if the demo district has one."""
    row = session.execute(
        text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Difference(c.geom, "
            "coalesce((SELECT ST_Union(g.geom) FROM grids g WHERE g.community_id = c.id "
            "AND g.generation_high IS NULL), 'GEOMETRYCOLLECTION EMPTY'::geometry))) AS p "
            "FROM areas c WHERE c.level = 'community') q "
            "WHERE NOT ST_IsEmpty(p) AND ST_Area(ST_Buffer(p, 0.0003)) > 0 "
            "AND NOT EXISTS (SELECT 1 FROM grids g WHERE g.generation_high IS NULL "
            "AND ST_DWithin(g.geom, p, 0.0001)) LIMIT 1"
        )
    ).first()
    return (float(row[0]), float(row[1])) if row else None


def gap_point(session) -> tuple[float, float]:
    """Take one grid out of a new generation (as a publish removing it would) and return a
    point inside it: in a community, in no live grid (rolled back with the test)."""
    gid, x, y = session.execute(
        text(
            "SELECT id, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grids "
            "WHERE generation_high IS NULL ORDER BY code DESC LIMIT 1"
        )
    ).one()
    gen = session.scalar(text("SELECT coalesce(max(id), 0) + 1 FROM generations"))
    session.execute(text("INSERT INTO generations (id) VALUES (:g)"), {"g": gen})
    session.execute(
        text("UPDATE grids SET generation_high = :g WHERE id = :i"), {"g": gen, "i": gid}
    )
    return float(x), float(y)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def sample_rows(session) -> list[dict[str, Any]]:
    """One row of every outcome the importer knows, at grid points (and triage if any)."""
    pts = grid_points(session, 8)
    t = [(NOW - timedelta(days=30 - i)).isoformat() for i in range(8)]
    rows = [
        {"status": "", "rating": "", "closed_at": ""},
        {"status": "closed", "rating": "5", "closed_at": (NOW - timedelta(days=20)).isoformat()},
        {"status": "closed", "rating": "", "closed_at": (NOW - timedelta(days=20)).isoformat()},
        {"status": "resolved", "rating": "", "closed_at": ""},
        {"status": "rejected", "rating": "", "closed_at": ""},
        {"status": "withdrawn", "rating": "", "closed_at": (NOW - timedelta(days=22)).isoformat()},
        {"status": "open", "rating": "", "closed_at": ""},
        {"status": "已关闭", "rating": "2", "closed_at": (NOW - timedelta(days=19)).isoformat()},
    ]
    out = []
    for (lon, lat, _), created, extra, i in zip(pts, t, rows, range(8), strict=True):
        out.append(
            {
                "lon": lon,
                "lat": lat,
                "category": ["housing", "elderly_care", "养老服务", "Healthcare"][i % 4],
                "text": ['楼道灯坏了\t"急"', "<script>alert(1)</script>", "a\\b\nc", "屋顶漏水"][
                    i % 4
                ],
                "created_at": created,
                "resolved_at": "",
                **extra,
            }
        )
    tri = triage_point(session)
    logger.info("community triage point in the demo district: %s", tri)
    if tri is None:
        tri = gap_point(session)
    if tri is not None:
        for status in ("", "closed"):
            out.append(
                {
                    "lon": tri[0],
                    "lat": tri[1],
                    "category": "housing",
                    "text": "网格空白处",
                    "created_at": (NOW - timedelta(days=40)).isoformat(),
                    "resolved_at": "",
                    "status": status,
                    "rating": "",
                    "closed_at": "",
                }
            )
    return out


def table_counts(session) -> tuple[int, int]:
    return (
        session.scalar(text("SELECT count(*) FROM requests")),
        session.scalar(text("SELECT count(*) FROM request_events")),
    )


def imported(session) -> list[Any]:
    return session.execute(text("SELECT * FROM requests WHERE source = 'import' ORDER BY id")).all()


def events_of(session, request_id: int) -> list[Any]:
    return session.execute(
        text("SELECT * FROM request_events WHERE request_id = :r ORDER BY at, id"),
        {"r": request_id},
    ).all()


# --------------------------------------------------------------------------- good files


def test_csv_rows_become_requests_with_legal_event_chains(session, tmp_path: Path) -> None:
    rows = sample_rows(session)
    path = write_csv(tmp_path / "history.csv", rows)
    before = table_counts(session)
    report = import_requests(session=session, path=path, now=NOW)
    rep = report.layers["requests"]
    assert rep.inserted == len(rows) and rep.total_rejected == 0
    # row triggers are back on for the rest of the transaction
    assert session.scalar(text("SHOW session_replication_role")) == "origin"
    got = imported(session)
    assert len(got) == len(rows)
    n_events = 0
    for req in got:
        chain = events_of(session, req.id)
        n_events += len(chain)
        assert chain[0].action == "submit" and chain[0].from_status is None
        assert chain[1].action in ("assign", "triage")
        # every step legal by the transition table, each starting where the last one ended
        for prev, ev in itertools.pairwise(chain):
            assert ev.from_status == prev.to_status
            assert next_status(ev.from_status, EVENT_ACTION.get(ev.action, ev.action)) == (
                ev.to_status
            ), (ev.action, ev.from_status)
            assert ev.at >= prev.at
        assert req.status == chain[-1].to_status
        assert req.updated_at == chain[-1].at
        # grid: the lowest-code live grid covering the point, as PostGIS says
        expect = session.execute(
            text(
                "SELECT g.id, g.community_id FROM grids g WHERE g.generation_high IS NULL "
                "AND ST_Covers(g.geom, :p) ORDER BY g.code LIMIT 1"
            ),
            {"p": req.geom},
        ).first()
        if expect is None:
            assert req.grid_id is None and req.owner_level == "community"
            assert chain[1].action == "triage"
        else:
            assert (req.grid_id, req.community_id) == tuple(expect)
            assert req.owner_level == "grid"
        hours = deadline_hours(req.category, "grid")
        assert req.first_deadline_at == req.created_at + timedelta(hours=hours)
        assert req.ticket_hash == f"imported:{req.number}"
        assert req.number.startswith("H") and len(req.number) == 20
    assert rep.stats["events"] == n_events
    assert table_counts(session) == (before[0] + len(rows), before[1] + n_events)

    by_text = {r.text: r for r in got}
    assert '楼道灯坏了\t"急"' in by_text and "<script>alert(1)</script>" in by_text
    assert "a\\b\nc" in by_text  # stored verbatim, escapes and newlines included
    grid_statuses = ["assigned", "closed", "closed", "resolved", "rejected", "withdrawn"]
    expected = [*grid_statuses, "assigned", "closed", "triage", "closed"]
    assert sorted(r.status for r in got) == sorted(expected)
    assert sum(r.grid_id is None for r in got) == 2
    rated = [r for r in got if r.rating is not None]
    assert sorted(r.rating for r in rated) == [2, 5]
    for r in rated:
        actions = [e.action for e in events_of(session, r.id)]
        assert actions[-2:] == ["rate", "close"]
    unrated_closed = [r for r in got if r.status == "closed" and r.rating is None]
    assert all(events_of(session, r.id)[-1].action == "auto_closed" for r in unrated_closed)
    assert all(r.resolved_at is not None for r in got if r.status in ("resolved", "closed"))


def test_rerun_of_the_same_file_changes_nothing(session, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "history.csv", sample_rows(session))
    first = import_requests(session=session, path=path, now=NOW)
    after_first = table_counts(session)
    snapshot = [tuple(r) for r in imported(session)]
    second = import_requests(session=session, path=path, now=NOW)
    assert second.layers["requests"].inserted == 0
    assert second.layers["requests"].stats["already_imported"] == first.layers["requests"].inserted
    assert second.layers["requests"].stats["events"] == 0
    assert table_counts(session) == after_first
    assert [tuple(r) for r in imported(session)] == snapshot


def test_identical_rows_are_two_requests_and_an_overlapping_file_adds_only_new_ones(
    session, tmp_path: Path
) -> None:
    lon, lat, _ = grid_points(session, 1)[0]
    row = {"lon": lon, "lat": lat, "category": "housing", "text": "同一件事"}
    row["created_at"] = (NOW - timedelta(days=3)).isoformat()
    first = write_csv(tmp_path / "a.csv", [row, row])
    assert import_requests(session=session, path=first, now=NOW).layers["requests"].inserted == 2
    other = dict(row, text="另一件事")
    second = write_csv(tmp_path / "b.csv", [row, row, row, other])
    rep = import_requests(session=session, path=second, now=NOW).layers["requests"]
    assert rep.inserted == 2 and rep.stats["already_imported"] == 2
    assert sorted(r.text for r in imported(session)) == sorted(["同一件事"] * 3 + ["另一件事"])


def test_geojson_in_gcj02_and_naive_times_in_the_configured_zone(session, tmp_path: Path) -> None:
    pts = grid_points(session, 3)
    lon = np.array([p[0] for p in pts])
    lat = np.array([p[1] for p in pts])
    g_lon, g_lat = from_wgs84(lon, lat, "gcj02")
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
            "properties": {
                "category": "housing",
                "text": f"第{i}件",
                "created_at": "2026-05-01 08:00:00",
                "rating": None,
            },
        }
        for i, (x, y) in enumerate(zip(g_lon, g_lat, strict=True))
    ]
    path = tmp_path / "amap.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), "utf-8")
    report = import_requests(session=session, path=path, crs="gcj02", now=NOW)
    assert report.layers["requests"].inserted == 3
    got = session.execute(
        text(
            "SELECT ST_X(geom), ST_Y(geom), created_at FROM requests WHERE source = 'import' "
            "ORDER BY text"
        )
    ).all()
    # GCJ-02 → WGS84 back within a few centimetres of the original points
    for (x, y, created), ox, oy in zip(got, lon, lat, strict=True):
        assert abs(x - ox) < 1e-6 and abs(y - oy) < 1e-6
        assert created == datetime(2026, 5, 1, 0, 0, tzinfo=UTC)  # 08:00 Asia/Shanghai


# --------------------------------------------------------------------------- bad files


def bad_files(session, tmp: Path) -> dict[str, tuple[Path, dict[str, Any], type, str]]:
    """case -> (file, extra options, exception, error code)."""
    pts = grid_points(session, 12)
    good = [
        {"lon": x, "lat": y, "category": "housing", "text": "t", "created_at": "2026-05-01"}
        for x, y, _ in pts
    ]
    no_category = [{k: v for k, v in r.items() if k != "category"} for r in good]
    swapped = [dict(r, lon=r["lat"], lat=r["lon"]) for r in good]
    outside = [dict(r, lon=r["lon"] + 3.0) for r in good]
    one_bad = [*good[:-1], dict(good[-1], category="no_such_category")]
    future = [dict(r, created_at="2030-01-01") for r in good]
    (tmp / "empty.csv").write_bytes(b"")
    (tmp / "lines.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "LineString", "coordinates": [[104, 30], [104.1, 30]]},
                        "properties": {"category": "housing"},
                    }
                ],
            }
        )
    )
    return {
        "missing": (tmp / "missing.csv", {}, BadRequest, "import_not_found"),
        "empty": (tmp / "empty.csv", {}, BadRequest, "import_empty"),
        "no_category": (
            write_csv(tmp / "nocat.csv", no_category),
            {},
            BadRequest,
            "missing_columns",
        ),
        "swapped": (write_csv(tmp / "swapped.csv", swapped), {}, Unprocessable, "latlon_swapped"),
        "outside": (
            write_csv(tmp / "outside.csv", outside),
            {},
            Unprocessable,
            "import_nothing_valid",
        ),
        "future": (
            write_csv(tmp / "future.csv", future),
            {},
            Unprocessable,
            "import_nothing_valid",
        ),
        "strict_one_bad": (
            write_csv(tmp / "onebad.csv", one_bad),
            {"strict": True},
            Unprocessable,
            "validation_failed",
        ),
        "unknown_crs": (
            write_csv(tmp / "good.csv", good),
            {"crs": "EPSG:999999"},
            BadRequest,
            "unknown_crs",
        ),
        "lines": (tmp / "lines.geojson", {}, Unprocessable, "wrong_geometry_type"),
    }


def test_bad_files_are_refused_with_nothing_written(session, tmp_path: Path) -> None:
    before = table_counts(session)
    for case, (path, options, exc, code) in bad_files(session, tmp_path).items():
        with pytest.raises(exc) as info:
            import_requests(session=session, path=path, now=NOW, **options)
        assert info.value.code == code, case
        assert table_counts(session) == before, case


def test_bad_rows_are_rejected_with_reasons_and_the_rest_imported(session, tmp_path: Path) -> None:
    pts = grid_points(session, 6)
    rows = [
        {"lon": x, "lat": y, "category": "housing", "text": "ok", "created_at": "2026-05-01"}
        for x, y, _ in pts
    ]
    rows[1]["category"] = "nonsense"
    rows[2]["created_at"] = "yesterday"
    rows[3]["status"] = "in_progress"
    rows[4]["text"] = "x" * 2001
    rows[5]["lon"] = "abc"
    rows.append(dict(rows[0], text="fine too"))
    report = import_requests(session=session, path=write_csv(tmp_path / "mixed.csv", rows), now=NOW)
    rep = report.layers["requests"]
    assert rep.inserted == 2
    assert rep.rejected == {
        "unknown_category": 1,
        "invalid_time": 1,
        "unsupported_status": 1,
        "text_too_long": 1,
        "invalid_coordinates": 1,
    }
    assert rep.examples["unknown_category"] == ["row 3"]  # line 3 of the file (header is 1)


def test_cli_imports_and_refuses_with_a_clear_message(committed_db, tmp_path: Path) -> None:
    url = committed_db.url  # type: ignore[attr-defined]
    with committed_db.session() as s:
        rows = sample_rows(s)
        bad = bad_files(s, tmp_path)
        before = table_counts(s)
    good = write_csv(tmp_path / "history.csv", rows)
    runner = CliRunner()
    result = runner.invoke(
        main, ["import", "requests", str(good), "--json"], env={"DATABASE_URL": url}
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert doc["layers"]["requests"]["inserted"] == len(rows)
    with committed_db.session() as s:
        after = table_counts(s)
    assert after[0] == before[0] + len(rows)
    for case in ("swapped", "no_category", "strict_one_bad"):
        path, options, _, _ = bad[case]
        args = ["import", "requests", str(path)] + (["--strict"] if options.get("strict") else [])
        result = runner.invoke(main, args, env={"DATABASE_URL": url})
        assert result.exit_code != 0, case
        expected = {"swapped": "swapped", "no_category": "category", "strict_one_bad": "row 13"}
        assert "Error" in result.output and expected[case] in result.output, result.output
        with committed_db.session() as s:
            assert table_counts(s) == after, case
    # and the re-run of the good file changes nothing
    result = runner.invoke(main, ["import", "requests", str(good)], env={"DATABASE_URL": url})
    assert result.exit_code == 0 and "0 inserted" in result.output
    with committed_db.session() as s:
        assert table_counts(s) == after


def test_as_the_app_role_the_foreign_keys_are_checked_row_by_row(session, tmp_path: Path) -> None:
    # the import runs as the app's role (issue 16), which may not skip triggers
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(text("SET LOCAL session_replication_role = replica"))
    rows = sample_rows(session)
    report = import_requests(session=session, path=write_csv(tmp_path / "h.csv", rows), now=NOW)
    rep = report.layers["requests"]
    assert rep.inserted == len(rows) and rep.stats["fk_checks"] == "per row"
    assert session.scalar(text("SHOW session_replication_role")) == "origin"
    orphans = session.scalar(
        text(
            "SELECT count(*) FROM request_events e LEFT JOIN requests r ON r.id = e.request_id "
            "WHERE r.id IS NULL"
        )
    )
    assert orphans == 0
