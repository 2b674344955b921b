"""What every importer shares: the layer names, reports with reasons, the one transaction,
the progress bar, file checks and column helpers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import psycopg
import shapely
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from tqdm import tqdm

from geo.crs import utm_epsg_for_lonlat
from geo.households import parse_osm_number
from layers.errors import BadRequest, Unprocessable
from layers.importers.files import (
    CHINA,
    ReferenceBox,
    find_column,
    text_value,
)
from layers.importers.osm_read import ImportSummary

logger = logging.getLogger(__name__)

LAYERS = ("areas", "grids", "buildings", "venues", "volunteers", "network")
DEFAULT_NESTING_TOLERANCE_M = 5.0
DEFAULT_SNAP_M = 0.5
_MAX_EXAMPLES = 5

#: layer -> (geometry kind, single part)
_GEOMETRY: dict[str, tuple[str, bool]] = {
    "areas": ("polygon", False),
    "grids": ("polygon", False),
    "buildings": ("polygon", True),
    "venues": ("point", True),
    "volunteers": ("point", True),
    "network": ("line", False),
}
_PARENT_LEVEL = {"street": "district", "community": "street"}
_LEVEL_BY_LENGTH = {6: "district", 9: "street", 12: "community"}
_LEVEL_NAMES = {
    "district": "district",
    "区": "district",
    "县": "district",
    "区县": "district",
    "street": "street",
    "街道": "street",
    "镇": "street",
    "乡": "street",
    "乡镇": "street",
    "community": "community",
    "社区": "community",
    "村": "community",
    "居委会": "community",
}


# --------------------------------------------------------------------------- reports


@dataclass
class LayerReport:
    """What one layer received: rows accepted, written (inserted / updated), repaired, rejected."""

    imported: int = 0
    inserted: int = 0
    updated: int = 0
    repaired: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return max(self.imported - self.inserted - self.updated, 0)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def total_repaired(self) -> int:
        return sum(self.repaired.values())

    def reject(self, reason: str, example: str | None = None, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n
        if example is not None:
            bucket = self.examples.setdefault(reason, [])
            if len(bucket) < _MAX_EXAMPLES:
                bucket.append(example)

    def repair(self, reason: str, n: int = 1) -> None:
        self.repaired[reason] = self.repaired.get(reason, 0) + n

    def merge(self, summary: ImportSummary, frame: str) -> None:
        """Add the repairs and rejections a reader counted under ``frame``."""
        for reason, n in summary.repaired.get(frame, {}).items():
            self.repair(reason, n)
        for reason, n in summary.rejected.get(frame, {}).items():
            self.reject(reason, n=n)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "repaired": dict(self.repaired),
            "rejected": dict(self.rejected),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "stats": dict(self.stats),
        }


def _reasons(counts: dict[str, int], examples: dict[str, list[str]] | None = None) -> str:
    parts = []
    for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        ex = (examples or {}).get(reason)
        parts.append(f"{reason} {n}" + (f" (e.g. {', '.join(ex)})" if ex else ""))
    return "; ".join(parts)


@dataclass
class ImportReport:
    """The closing summary of one import; ``str(report)`` prints it."""

    source: str
    kind: str
    layers: dict[str, LayerReport] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def layer(self, name: str) -> LayerReport:
        return self.layers.setdefault(name, LayerReport())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "layers": {k: v.as_dict() for k, v in self.layers.items()},
            "stats": dict(self.stats),
            "duration_s": round(self.duration_s, 3),
        }

    def format(self) -> str:
        lines = [f"imported {self.source} ({self.kind}) in {self.duration_s:.1f} s"]
        for key, value in self.stats.items():
            lines.append(f"  {key}: {value}")
        for name, rep in self.layers.items():
            lines.append(
                f"  {name}: {rep.imported} imported ({rep.inserted} inserted, "
                f"{rep.updated} updated, {rep.unchanged} unchanged), "
                f"{rep.total_repaired} repaired, {rep.total_rejected} rejected"
            )
            if rep.repaired:
                lines.append(f"    repaired: {_reasons(rep.repaired)}")
            if rep.rejected:
                lines.append(f"    rejected: {_reasons(rep.rejected, rep.examples)}")
            for key, value in rep.stats.items():
                lines.append(f"    {key}: {value}")
        return "\n".join(lines)

    __str__ = format


# --------------------------------------------------------------------------- plumbing


def _bar(total: int, desc: str, progress: bool | None) -> tqdm:
    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr)


def _step(bar: tqdm, what: str) -> None:
    bar.set_postfix_str(what)
    bar.update(1)


def _db_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0][:300] if lines else type(orig).__name__


@contextmanager
def _transaction(session: Session) -> Iterator[None]:
    """Commit what the block wrote, or roll all of it back (database errors become
    ``import_failed``)."""
    try:
        yield
        session.commit()
    except (DBAPIError, psycopg.Error) as exc:
        session.rollback()
        logger.warning("import rolled back: %s", _db_reason(exc))
        raise Unprocessable("import_failed", reason=_db_reason(exc)) from exc
    except BaseException:
        session.rollback()
        raise


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise BadRequest("import_not_found", path=str(path))
    if path.stat().st_size == 0:
        raise BadRequest("import_empty", path=path.name, reason="the file is empty (0 bytes)")


def reference_boxes(session: Session) -> list[ReferenceBox]:
    """Where imported data is expected: each district's extent (widened by a quarter of its size,
    at least 0.1°), and China."""
    rows = session.execute(
        text(
            "SELECT code, name, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) "
            "FROM (SELECT code, name, Box2D(geom) AS b FROM areas WHERE level = 'district') q "
            "ORDER BY code"
        )
    ).all()
    boxes = []
    for code, name, x0, y0, x1, y1 in rows:
        mx = max(0.1, 0.25 * (x1 - x0))
        my = max(0.1, 0.25 * (y1 - y0))
        boxes.append(ReferenceBox(f"district {code} {name}", (x0 - mx, y0 - my, x1 + mx, y1 + my)))
    return [*boxes, CHINA]


@dataclass
class _Options:
    path: Path
    code_col: str | None
    name_col: str | None
    tolerance_m: float
    snap_m: float
    bar: tqdm


def _column(
    frame: gpd.GeoDataFrame,
    given: str | None,
    candidates: Sequence[str],
    *,
    layer: str,
    required: bool = False,
) -> str | None:
    """The column to read: the one given (must exist) or the first matching candidate."""
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if given is not None:
        if given not in columns:
            raise BadRequest(
                "missing_columns", layer=layer, columns=given, available=", ".join(columns)
            )
        return given
    return _find_column(columns, candidates, layer=layer, required=required)


def _find_column(
    columns: Sequence[str], candidates: Sequence[str], *, layer: str, required: bool
) -> str | None:
    """The first of ``columns`` matching a candidate; 400 ``missing_columns`` when required."""
    found = find_column(columns, candidates)
    if found is None and required:
        raise BadRequest(
            "missing_columns",
            layer=layer,
            columns=" | ".join(candidates[:3]),
            available=", ".join(map(str, columns)) or "(none)",
        )
    return found


def _values(frame: gpd.GeoDataFrame, column: str | None) -> list[str | None]:
    if column is None:
        return [None] * len(frame)
    return [text_value(v) for v in frame[column].to_numpy(dtype=object)]


def _clip(value: str | None, length: int, rep: LayerReport) -> str | None:
    if value is not None and len(value) > length:
        rep.repair("text_truncated")
        return value[:length]
    return value


def _positive_int(value: str | None) -> int | None:
    number = parse_osm_number(value)
    if not np.isfinite(number) or number <= 0:
        return None
    return int(np.floor(number + 0.5))


def _nothing_valid(path: Path, layer: str, rep: LayerReport) -> Unprocessable:
    return Unprocessable(
        "import_nothing_valid",
        path=path.name,
        layer=layer,
        reasons=_reasons(rep.rejected, rep.examples) or "no rows",
    )


def _utm_srid(geoms: np.ndarray) -> int:
    xy = shapely.get_coordinates(shapely.centroid(geoms))
    return utm_epsg_for_lonlat(xy[:, 0], xy[:, 1])


def _upsert_counts(rows: Sequence[Any]) -> tuple[int, int]:
    inserted = sum(1 for r in rows if r.inserted)
    return inserted, len(rows) - inserted
