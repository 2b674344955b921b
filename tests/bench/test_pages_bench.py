"""The pages bench: its report helpers (fast), and a quick run end to end in Chromium (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pages_bench import (
    CHROMIUM,
    TARGET_BYTES,
    TARGET_IDLE_MS,
    VIEWPORTS,
    Measurement,
    median_measurement,
    table,
    verdict,
)


def _m(idle_ms: float | None, bytes_: int, *, idle: bool = True) -> Measurement:
    return Measurement(
        page="p", viewport="desktop", url="/", idle_ms=idle_ms, idle=idle, bytes=bytes_
    )


def test_verdict_names_each_missed_target() -> None:
    assert verdict(_m(TARGET_IDLE_MS, TARGET_BYTES)) == "ok"
    assert verdict(_m(TARGET_IDLE_MS + 1, 10)) == "MISS idle"
    assert verdict(_m(10, TARGET_BYTES + 1)) == "MISS bytes"
    assert verdict(_m(None, 10, idle=False)) == "MISS idle"
    assert verdict(_m(TARGET_IDLE_MS * 2, TARGET_BYTES * 2)) == "MISS idle+bytes"


def test_median_keeps_one_run_and_merges_errors() -> None:
    runs = [_m(900, 1), _m(300, 2), _m(600, 3)]
    runs[0].console_errors = ["boom"]
    pick = median_measurement(runs)
    assert (pick.idle_ms, pick.bytes) == (600, 3)
    assert pick.console_errors == ["boom"]
    runs = [_m(300, 1), _m(None, 2, idle=False), _m(500, 3)]
    assert median_measurement(runs).idle is False  # one run never idle: the cell is not idle


def test_table_has_one_row_per_measurement() -> None:
    rows = table([_m(1500, 1_500_000), _m(2500, 500_000)])
    assert len(rows) == 4
    assert rows[2].endswith("| ok |") and "1,500 ms" in rows[2] and "1.50 MB" in rows[2]
    assert rows[3].endswith("| MISS idle |")


@pytest.mark.slow
def test_quick_bench_reaches_idle_on_every_page(run_quick_bench) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: ./run.sh installs Debian's chromium")
    figures, results, _stdout = run_quick_bench("pages_bench", timeout=400)
    assert figures["bench"] == "pages" and figures["mode"] == "quick"
    assert figures["counts"]["buildings"] == figures["buildings"] == 5_000
    cells = {(p["page"], p["viewport"]): p for p in figures["pages"]}
    names = {page for page, _ in cells}
    expected = {"district", "resident", "resident_grid", "service_card", "ticket", "leader"}
    expected |= {"volunteer", "staff_inbox", "staff_dashboard", "baseline_inlined"}
    assert expected <= names
    assert {vp for _, vp in cells} == set(VIEWPORTS)
    assert len(cells) == len(names) * len(VIEWPORTS)
    for (page, viewport), cell in cells.items():
        where = f"{page} @ {viewport}"
        assert cell["status"] == 200, where
        assert cell["idle"] and cell["idle_ms"] > 0, where
        assert cell["first_render_ms"] is not None and cell["first_render_ms"] > 0, where
        assert cell["bytes"] > 0 and cell["requests"] >= 1, where
        assert cell["foreign_requests"] == [], where
        assert cell["console_errors"] == [], where
        assert not [f for f in cell["failed_requests"] if "(HTTP " in f], where
    # the map pages loaded their layers: grids by bbox, buildings as vector tiles
    district = cells[("district", "desktop")]["layers"]
    assert district["grids"]["count"] > 0 and district["buildings"]["tiles"] > 0
    # the baseline carries every building in its HTML
    assert figures["baseline_buildings"] == 5_000
    baseline = cells[("baseline_inlined", "desktop")]
    assert baseline["bytes_by_kind"]["document"] >= figures["baseline_html_bytes"]
    assert figures["all_idle"] and figures["foreign_requests"] == 0
    assert figures["console_errors"] == 0 and figures["http_errors"] == 0
    text = results.read_text(encoding="utf-8")
    assert "## pages bench (quick)" in text and "| district | desktop |" in text
