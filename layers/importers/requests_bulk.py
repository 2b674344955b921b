"""Bulk import of historical requests (民情诉求) with their events: ``minqing import requests``.

A CSV (lon / lat, category, text, created_at, optional status, resolved_at, closed_at, rating)
or a GeoJSON of points with the same properties is loaded into the real, indexed ``requests``
and ``request_events`` tables, on top of what is there, in ONE transaction:

1. the file is read and validated column-wise (``layers.importers.requests_bulk_read``; pandas / numpy, no per-row Python work in the
   hot path); coordinates go through the same CRS handling as the other importers
   (``--crs wgs84 | gcj02 | bd09 | EPSG:xxxx``, swapped lat/lon refused);
2. each point gets its grid from ``geo.assign.GridIndex`` over the live grids (lowest code on a
   shared border, exactly like ``ST_Covers``); a point in no grid but inside a community is a
   community triage request; a point outside every community is rejected
   (``outside_jurisdiction``);
3. the rows are COPYed into a temporary table (numbers in binary COPY built by numpy, texts as
   text COPY), and two set-based statements write the requests and their event chains.

Event chains are paths through the action table of ``layers.requests.workflow``
(``_history_chain``; the statuses and the SQL come from ``layers.requests.events.history_sql``,
so every step is legal): ``submit`` → ``assign`` (or ``triage``); resolved / closed ones go on
with ``assign`` (triage only), ``claim``, ``resolve`` and either ``rate`` + ``close`` (a rating
is given) or ``auto_closed``; rejected / withdrawn ones end with ``reject`` / ``withdraw``.
The request's status is its last event's ``to_status``. Claimant and staff of historical work are unknown,
so those events are the system's and carry ``{"imported": true}``; no offers or notifications
are written for history.

Idempotent: every row's request number is ``H`` + the 7-character geohash of its point
(~150 m) + 12 hex digits of an MD5 over its content (WGS84 lon / lat, category, text,
created_at, and its occurrence among identical rows), so re-importing a file, or an
overlapping one, skips the rows already there. (Two different rows could only share a number
with the same 48-bit hash in the same ~150 m cell: ~1e-7 for 10,000 rows in one cell.) Rows
are inserted in number order, i.e. spatially clustered: the unique number and ticket indexes
then fill leaf pages in order and the GiST index is touched locally, which cut WAL full-page
images ~4x and the insert time ~3x against file order. Imported requests have no resident
ticket: their ``ticket_hash`` is ``imported:<number>``, which no SHA-256 hex digest can equal.

Rows that cannot be imported are rejected with reasons (like the other importers) — or, with
``strict``, the whole file is refused; nothing is written when the file as a whole is bad.
Foreign keys: the rows reference grids and areas locked ``FOR KEY SHARE`` in the transaction
and requests inserted by the same statement, so when the role may set
``session_replication_role`` (a superuser, or a role granted SET on it) the per-row FK
triggers are skipped (``session_replication_role = replica`` for this transaction only);
otherwise PostgreSQL checks them row by row (slower, same result). The import runs as the
app's role (``DATABASE_URL``, issue 16), which may not: its foreign keys are checked per row.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import Unprocessable
from layers.importers.common import (
    ImportReport,
    LayerReport,
    _check_file,
    _reasons,
    _transaction,
)
from layers.importers.files import (
    CRS_LONLAT,
    normalise_crs,
)
from layers.importers.requests_bulk_read import (
    CLOSED,
    DEFAULT_TZ,
    LAYER,
    OPEN,
    REJECTED,
    RESOLVED,
    SOURCE,
    WITHDRAWN,
    HistoryRows,
    category_deadline_hours,
    read_history,
    validate_history,
)
from layers.importers.store import temp_table
from layers.requests.events import history_sql

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- writing

_NUM_DTYPE = np.dtype(
    [
        ("nf", ">i2"),
        *[
            item
            for name, t in (
                ("row", ">i8"),
                ("lon", ">f8"),
                ("lat", ">f8"),
                ("created", ">i8"),
                ("resolved", ">i8"),
                ("closed", ">i8"),
                ("kind", ">i2"),
                ("rating", ">i2"),
                ("grid_id", ">i8"),
                ("community_id", ">i8"),
                ("occ", ">i4"),
            )
            for item in ((f"len_{name}", ">i4"), (name, t))
        ],
    ]
)
_NUM_COLUMNS = (
    "row",
    "lon",
    "lat",
    "created",
    "resolved",
    "closed",
    "kind",
    "rating",
    "grid_id",
    "community_id",
    "occ",
)


def _binary_copy_payload(rows: HistoryRows) -> bytes:
    """PostgreSQL binary COPY of the numeric columns, built as one numpy record array.

    Timestamps travel as ``bigint`` Unix microseconds (−1 = none); they become timestamptz
    in SQL."""
    arr = np.zeros(len(rows.row), dtype=_NUM_DTYPE)
    arr["nf"] = len(_NUM_COLUMNS)
    values = {
        "row": rows.row,
        "lon": rows.lon,
        "lat": rows.lat,
        "created": rows.created_us,
        "resolved": rows.resolved_us,
        "closed": rows.closed_us,
        "kind": rows.kind,
        "rating": rows.rating,
        "grid_id": rows.grid_id,
        "community_id": rows.community_id,
        "occ": rows.occurrence,
    }
    for name in _NUM_COLUMNS:
        arr[f"len_{name}"] = arr.dtype[name].itemsize
        arr[name] = values[name]
    header = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    return header + arr.tobytes() + struct.pack(">h", -1)


def _text_copy_payload(rows: HistoryRows) -> str:
    """Text COPY of (row, category, text); tabs, newlines and backslashes escaped."""
    texts = rows.text
    joined = "\x00".join(texts)
    if any(ch in joined for ch in ("\\", "\t", "\n", "\r")):
        texts = [
            t.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            for t in texts
        ]
    return "".join(
        f"{r}\t{c}\t{t}\n" for r, c, t in zip(rows.row.tolist(), rows.category, texts, strict=True)
    )


def _stage(session: Session, rows: HistoryRows) -> None:
    temp_table(
        session,
        "stage_req_num",
        "row bigint, lon float8, lat float8, created bigint, resolved bigint, closed bigint, "
        "kind smallint, rating smallint, grid_id bigint, community_id bigint, occ int",
    )
    temp_table(session, "stage_req_text", "row bigint, category text, text text")
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(
            f"COPY stage_req_num ({', '.join(_NUM_COLUMNS)}) FROM STDIN WITH (FORMAT binary)"
        ) as cp:
            cp.write(_binary_copy_payload(rows))
        with cur.copy("COPY stage_req_text (row, category, text) FROM STDIN") as cp:
            cp.write(_text_copy_payload(rows))


def _fk_triggers_skippable(session: Session) -> bool:
    """Whether this role may set ``session_replication_role`` (PostgreSQL 15+)."""
    return bool(
        session.scalar(text("SELECT has_parameter_privilege('session_replication_role', 'SET')"))
    )


_TS = "(timestamptz 'epoch' + {0} * interval '1 microsecond')"


def _history_chain(kind: int, triaged: bool, rated: bool) -> list[str]:
    """The actions a historical request of outcome ``kind`` went through (each legal in the
    action table): submitted, then assigned (or triaged, and assigned if work followed)."""
    chain = ["submit", "triage" if triaged else "assign"]
    if kind in (RESOLVED, CLOSED):
        chain += ["assign", "claim", "resolve"] if triaged else ["claim", "resolve"]
    if kind == CLOSED:
        chain += ["rate", "close"] if rated else ["auto_close"]
    elif kind == REJECTED:
        chain.append("reject")
    elif kind == WITHDRAWN:
        chain.append("withdraw")
    return chain


# When each event of a history happened and who acted (by event name; the system otherwise).
_EVENT_AT = {
    "submit": "ins.created_at",
    "triage": "ins.created_at",
    "assign": "ins.created_at",
    "claim": "ins.created_at",
    "resolve": "ins.resolved_at",
    "rate": "ins.closed_at",
    "close": "ins.closed_at",
    "auto_closed": "ins.closed_at",
    "reject": "ins.closed_at",
    "withdraw": "ins.closed_at",
}
_EVENT_ACTOR = {"submit": "resident", "rate": "resident", "withdraw": "resident"}


# The request columns of a new row of CTE ``fresh`` (its status comes from its chain).
_REQUEST_COLUMNS = {
    "number": "number",
    "ticket_hash": "'imported:' || number",
    "category": "category",
    "text": "text",
    "owner_level": "CASE WHEN grid_id > 0 THEN 'grid' ELSE 'community' END",
    "grid_id": "nullif(grid_id, 0)",
    "community_id": "community_id",
    "deadline_at": "created_at + hours * interval '1 hour'",
    "first_deadline_at": "created_at + hours * interval '1 hour'",
    "resolved_at": "resolved_at",
    "closed_at": "closed_at",
    "rating": "nullif(rating, 0)",
    "source": ":source",
    "geom": "ST_SetSRID(ST_MakePoint(lon, lat), 4326)",
    "created_at": "created_at",
    "updated_at": (
        "greatest(created_at, coalesce(resolved_at, created_at), coalesce(closed_at, created_at))"
    ),
}


@functools.cache
def _history_sql() -> str:
    """The ``ins`` and ``ev`` CTEs writing the new rows of ``fresh`` and their events."""
    chains = {
        (kind, triaged, rated): _history_chain(kind, triaged, rated)
        for kind in (OPEN, RESOLVED, CLOSED, REJECTED, WITHDRAWN)
        for triaged in (False, True)
        for rated in (False, True)
    }
    return history_sql(
        chains,
        source="fresh",
        columns=_REQUEST_COLUMNS,
        order_by="number",
        source_key=("kind", "grid_id = 0", "rating > 0"),
        at_sql=_EVENT_AT,
        actor_kind=_EVENT_ACTOR,
    )


_INSERT_SQL = """
WITH src AS (
  SELECT s.*, t.category, t.text,
         'H' || ST_GeoHash(ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326), 7)
             || left(md5(concat_ws('|', s.lon::text, s.lat::text, t.category, t.text,
                                   s.created::text, s.occ::text)), 12) AS number,
         {created} AS created_at,
         CASE WHEN s.resolved >= 0 THEN {resolved} END AS resolved_at,
         CASE WHEN s.closed >= 0 THEN {closed} END AS closed_at
  FROM stage_req_num s JOIN stage_req_text t USING (row)
), fresh AS (
  SELECT src.*, d.hours FROM src JOIN (VALUES {deadlines}) d(category, hours) USING (category)
  WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.number = src.number)
), {history}
SELECT (SELECT count(*) FROM ins) AS requests, (SELECT count(*) FROM ev) AS events
"""


def _write(session: Session, rows: HistoryRows, rep: LayerReport, path: Path) -> dict[str, float]:
    """Stage and insert; fills ``rep`` (inserted, events) and returns phase seconds."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    _stage(session, rows)
    session.execute(text("ANALYZE stage_req_num"))
    session.execute(text("ANALYZE stage_req_text"))
    t["stage_s"] = time.perf_counter() - t0
    # the rows we reference stay put for the transaction (what the FK triggers would ensure)
    session.execute(
        text(
            "SELECT 1 FROM grids WHERE id IN (SELECT DISTINCT grid_id FROM stage_req_num) "
            "FOR KEY SHARE"
        )
    )
    session.execute(
        text(
            "SELECT 1 FROM areas WHERE id IN (SELECT DISTINCT community_id FROM stage_req_num) "
            "FOR KEY SHARE"
        )
    )
    skip_fk = _fk_triggers_skippable(session)
    if skip_fk:
        session.execute(text("SET LOCAL session_replication_role = replica"))
    deadlines = ", ".join(
        f"('{code}', {hours})" for code, hours in category_deadline_hours().items()
    )
    sql = _INSERT_SQL.format(
        created=_TS.format("s.created"),
        resolved=_TS.format("s.resolved"),
        closed=_TS.format("s.closed"),
        deadlines=deadlines,
        history=_history_sql(),
    )
    t0 = time.perf_counter()
    # the number hashes float8 text: pin its format (shortest exact) for this transaction
    session.execute(text("SET LOCAL extra_float_digits = 1"))
    session.execute(text("SET LOCAL work_mem = '256MB'"))
    inserted, events = session.execute(
        text(sql), {"source": SOURCE, "data": '{"imported": true}'}
    ).one()
    if skip_fk:
        session.execute(text("SET LOCAL session_replication_role = origin"))
    t["insert_s"] = time.perf_counter() - t0
    rep.inserted = int(inserted)
    rep.stats["already_imported"] = len(rows.row) - rep.inserted
    rep.stats["events"] = int(events)
    rep.stats["fk_checks"] = (
        "guaranteed by the load (row triggers skipped)" if skip_fk else "per row"
    )
    return t


# --------------------------------------------------------------------------- the service


def import_requests(
    *,
    session: Session,
    path: str | Path,
    crs: str | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    tz: str = DEFAULT_TZ,
    strict: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Bulk-load historical requests and their events from a CSV / GeoJSON file (one
    transaction; re-running the same file changes nothing). See the module docstring."""
    started = time.perf_counter()
    path = Path(path)
    _check_file(path)
    now = now or datetime.now(UTC)
    crs_name = normalise_crs(crs) if crs is not None else None
    report = ImportReport(source=str(path), kind="requests")
    rep = report.layer(LAYER)
    frame, fmt, file_crs, not_point = read_history(path, lon_col, lat_col)
    t_read = time.perf_counter() - started
    if crs_name is None:
        if file_crs is None or file_crs.equals(CRS_LONLAT, ignore_axis_order=True):
            crs_name = "wgs84"
        else:
            crs_name = "file"
    with _transaction(session):
        t0 = time.perf_counter()
        rows = validate_history(
            session,
            frame,
            not_point,
            path=path,
            crs_name=crs_name,
            file_crs=file_crs,
            tz=tz,
            now=now,
            rep=rep,
            row_offset=2 if fmt == "CSV" else 1,
        )
        t_validate = time.perf_counter() - t0
        rep.imported = len(rows.row)
        if not len(rows.row):
            raise Unprocessable(
                "import_nothing_valid",
                path=path.name,
                layer=LAYER,
                reasons=_reasons(rep.rejected, rep.examples) or "no rows",
            )
        if strict and rep.rejected:
            raise Unprocessable(
                "validation_failed",
                reason=f"{path.name}: {rep.total_rejected} rows cannot be imported "
                f"({_reasons(rep.rejected, rep.examples)}); nothing was written",
            )
        phases = _write(session, rows, rep, path)
    report.duration_s = time.perf_counter() - started
    report.stats.update(
        {
            "format": fmt,
            "source_crs": crs_name if crs_name != "file" else f"{file_crs} (file)",
            "rows_read": len(frame),
            "triage": int((rows.grid_id == 0).sum()),
            "read_s": round(t_read, 2),
            "validate_assign_s": round(t_validate, 2),
            **{k: round(v, 2) for k, v in phases.items()},
            "rows_per_s": round(len(frame) / report.duration_s) if report.duration_s else 0,
        }
    )
    logger.info("%s", report)
    return report
