"""One event writer: only ``layers/requests/events.py`` writes ``request_events`` rows or
``requests.status`` (issue 13; DESIGN §3: every action is one row of one table, performed
by one runner, recorded by one writer).

The scan reads every module of the product (geo, layers, web, data, bench; not the tests,
not the migrations) with ``ast``: SQL in string literals (implicitly concatenated pieces,
f-strings and ``+`` chains are joined first; docstrings are prose and skipped) and the ORM
calls that write the event log or a request's status. PostgreSQL refuses an illegal
transition anyway (migration 0007); this keeps every legal one in one place.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layers.config import PROJECT_ROOT

ROOTS = ("geo", "layers", "web", "data", "bench")
SKIPPED = ("layers/migrations",)
WRITER = "layers/requests/events.py"

_I = re.IGNORECASE
# SQL that writes the event log (any statement: it is append-only, so any write is a new row)
EVENT_SQL = {
    "INSERT INTO request_events": re.compile(
        r"\bINSERT\s+INTO\s+(?:\w+\.)?\"?request_events\b", _I
    ),
    "COPY request_events FROM": re.compile(
        r"\bCOPY\s+(?:\w+\.)?\"?request_events\b[^;]*?\bFROM\b", _I
    ),
    "MERGE INTO request_events": re.compile(r"\bMERGE\s+INTO\s+(?:\w+\.)?\"?request_events\b", _I),
    "UPDATE request_events": re.compile(
        r"\bUPDATE\s+(?:ONLY\s+)?(?:\w+\.)?\"?request_events\b", _I
    ),
}
_UPDATE_REQUESTS = re.compile(
    r"\bUPDATE\s+(?:ONLY\s+)?(?:\w+\.)?\"?requests\"?(?:\s+(?:AS\s+)?(?!SET\b)\w+)?\s+SET\b", _I
)
_INTO_REQUESTS = re.compile(r"\b(?:INSERT\s+INTO|COPY)\s+(?:\w+\.)?\"?requests\"?(?!\w)", _I)
_SET_END = re.compile(r"(WHERE|FROM|RETURNING)\b", _I)
_TARGET = re.compile(r"\s*(\(([^()]*)\)|\"?(\w+)\"?)\s*=", _I)
_STATUS = re.compile(r"\bstatus\b", _I)
# a request object's status set in Python (drafts and others have a status of their own)
_REQUEST_NAME = re.compile(r"^(?:\w+_)?(?:req|request)$")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.excerpt}"


# -- SQL in strings --------------------------------------------------------------------------
def _set_clause(sql: str, start: int) -> str:
    """The SET list of an UPDATE from ``start``: up to its top-level WHERE / FROM /
    RETURNING, a semicolon, or a closing parenthesis of an enclosing statement."""
    depth, i = 0, start
    while i < len(sql):
        c = sql[i]
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0:
            word_start = i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")
            if c == ";" or (word_start and _SET_END.match(sql, i)):
                break
        i += 1
    return sql[start:i]


def _assigns_status(set_clause: str) -> bool:
    """Whether a SET list assigns ``status`` (``status = …`` or ``(…, status, …) = …``)."""
    depth, piece, pieces = 0, [], []
    for c in set_clause:
        if c == "," and depth == 0:
            pieces.append("".join(piece))
            piece = []
            continue
        depth += (c == "(") - (c == ")")
        piece.append(c)
    pieces.append("".join(piece))
    for p in pieces:
        m = _TARGET.match(p)
        if m is None:
            continue
        if m.group(3) is not None and m.group(3).lower() == "status":
            return True
        if m.group(2) is not None and _STATUS.search(m.group(2)):
            return True
    return False


def sql_findings(sql: str) -> Iterator[tuple[str, str]]:
    """(rule, excerpt) for each write of the event log or of requests.status in ``sql``."""
    for rule, pattern in EVENT_SQL.items():
        for m in pattern.finditer(sql):
            yield rule, sql[m.start() : m.start() + 60]
    for m in _UPDATE_REQUESTS.finditer(sql):
        if _assigns_status(_set_clause(sql, m.end())):
            yield "UPDATE requests SET status", sql[m.start() : m.start() + 60]
    for m in _INTO_REQUESTS.finditer(sql):
        rest = sql[m.end() :]
        columns = re.match(r"\s*\(([^()]*)\)", rest)
        # a column list naming status, one we cannot read ({…}), or none (every column)
        if columns is None or _STATUS.search(columns.group(1)) or "{" in columns.group(1):
            yield "INSERT INTO requests (… status …)", sql[m.start() : m.start() + 60]


def _joined(node: ast.AST) -> str | None:
    """The text of a string expression (f-string values as ``{…}``), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{…}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _joined(node.left), _joined(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and _joined(body[0].value) is not None:
                out.add(id(body[0].value))
    return out


# -- Python ---------------------------------------------------------------------------------
def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_request_status(node: ast.AST) -> bool:
    """``Request.status`` or ``<a request>.status``."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "status"
        and isinstance(node.value, ast.Name)
        and (node.value.id == "Request" or bool(_REQUEST_NAME.match(node.value.id)))
    )


def _names_status(node: ast.AST) -> bool:
    """A dict (or list of dicts) of values that sets status: ``{"status": …}`` or
    ``{Request.status: …}``."""
    if isinstance(node, ast.Dict):
        return any(
            (isinstance(k, ast.Constant) and k.value == "status") or _is_request_status(k)
            for k in node.keys
            if k is not None
        )
    if isinstance(node, ast.List | ast.Tuple):
        return any(_names_status(e) for e in node.elts)
    return False


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def python_findings(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    """(line, rule, excerpt) for each ORM write of an event or of a request's status."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if _is_request_status(sub):
                        yield node.lineno, "<request>.status =", ast.unparse(sub)
        if not isinstance(node, ast.Call):
            continue
        func = _name(node.func)
        args = [*node.args, *(k.value for k in node.keywords)]
        if func == "RequestEvent":
            yield node.lineno, "RequestEvent(", ast.unparse(node)[:60]
        if func in ("insert", "bulk_insert_mappings", "bulk_save_objects") and any(
            _mentions(a, "RequestEvent") for a in node.args
        ):
            yield node.lineno, f"{func}(RequestEvent)", ast.unparse(node)[:60]
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "insert"
            and _mentions(node.func.value, "RequestEvent")
        ):
            yield node.lineno, "RequestEvent.__table__.insert()", ast.unparse(node)[:60]
        if func == "setattr" and len(node.args) >= 2:
            target, attr = node.args[0], node.args[1]
            if (
                isinstance(attr, ast.Constant)
                and attr.value == "status"
                and isinstance(target, ast.Name)
                and _REQUEST_NAME.match(target.id)
            ):
                yield node.lineno, 'setattr(<request>, "status")', ast.unparse(node)[:60]
        if (
            func == "Request"
            and isinstance(node.func, ast.Name)
            and any(k.arg == "status" for k in node.keywords)
        ):
            yield node.lineno, "Request(status=…)", ast.unparse(node)[:60]
        if func in ("values", "update", "execute") and isinstance(node.func, ast.Attribute):
            # update(Request).values(status=…) / query(Request).update({"status": …}) /
            # session.execute(update(Request), [{"id": …, "status": …}])
            chain = node.func.value if func != "execute" else node
            on_requests = any(
                isinstance(n, ast.Call)
                and _name(n.func) in ("update", "query", "insert")
                and any(isinstance(a, ast.Name) and a.id == "Request" for a in n.args)
                for n in ast.walk(chain)
            )
            sets_status = any(k.arg == "status" for k in node.keywords) or any(
                _names_status(a) for a in args
            )
            if on_requests and sets_status:
                yield (
                    node.lineno,
                    f"update(Request) setting status ({func})",
                    ast.unparse(node)[:60],
                )


def scan_source(source: str, path: str = "<planted>") -> list[Finding]:
    tree = ast.parse(source)
    found: set[Finding] = set()
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        sql = _joined(node)
        if sql is None:
            continue
        for rule, excerpt in sql_findings(sql):
            found.add(Finding(path, node.lineno, rule, " ".join(excerpt.split())))
    for line, rule, excerpt in python_findings(tree):
        found.add(Finding(path, line, rule, excerpt))
    return sorted(found, key=lambda f: (f.path, f.line, f.rule))


def product_modules() -> Iterator[Path]:
    for root in ROOTS:
        for p in sorted((PROJECT_ROOT / root).rglob("*.py")):
            rel = p.relative_to(PROJECT_ROOT).as_posix()
            if "__pycache__" in p.parts or rel.startswith(SKIPPED):
                continue
            yield p


def scan_product() -> tuple[list[Finding], list[Finding]]:
    """(findings outside the writer, findings in the writer)."""
    outside, inside = [], []
    for p in product_modules():
        rel = p.relative_to(PROJECT_ROOT).as_posix()
        found = scan_source(p.read_text(encoding="utf-8"), rel)
        (inside if rel == WRITER else outside).extend(found)
    return outside, inside


# -- the product ----------------------------------------------------------------------------
def test_only_the_event_writer_writes_events_or_request_status() -> None:
    outside, _ = scan_product()
    assert not outside, (
        "write request_events / requests.status only through layers.requests.events:\n"
        + "\n".join(map(str, outside))
    )


def test_the_scan_sees_the_writers_own_writes() -> None:
    """The writer's statements are found where they are (so the scan reads what it must)."""
    _, inside = scan_product()
    rules = {f.rule for f in inside}
    assert {
        "RequestEvent(",
        "<request>.status =",
        "INSERT INTO request_events",
        "INSERT INTO requests (… status …)",
    } <= rules, inside


def test_the_scan_covers_the_product() -> None:
    scanned = {p.relative_to(PROJECT_ROOT).as_posix() for p in product_modules()}
    assert WRITER in scanned
    assert "layers/drafts/service.py" in scanned and "layers/importers/requests_bulk.py" in scanned
    assert not any(s.startswith(("tests/", "layers/migrations/")) for s in scanned)
    assert {s.split("/")[0] for s in scanned} == set(ROOTS)


# -- the scanner itself ---------------------------------------------------------------------
PLANTED = {
    "INSERT INTO request_events": [
        "text(\"INSERT INTO request_events (request_id, action) VALUES (1, 'x')\")",
        'q = ("WITH e AS (INSERT INTO"\n     " request_events (request_id) SELECT 1) SELECT 1")',
        'q = f"INSERT  INTO public.request_events ({COLUMNS}) SELECT {x}"',
        'q = "insert into " + "request_events (id) values (1)"',
        'SQL = """\nWITH ins AS (\n  INSERT INTO request_events\n  SELECT * FROM x)\n"""',
    ],
    "COPY request_events FROM": ['cur.copy("COPY request_events (a, b) FROM STDIN")'],
    "MERGE INTO request_events": ['text("MERGE INTO request_events e USING x ON true")'],
    "UPDATE request_events": ['text("UPDATE request_events SET note = 1")'],
    "UPDATE requests SET status": [
        'text("UPDATE requests SET status = :s WHERE id = :i")',
        "text(\"update requests r set grid_id = 1, status = 'closed' where r.id = 1\")",
        'text("UPDATE requests AS r SET (owner_level, status) = (:o, :s) WHERE r.id = :i")',
        'text("UPDATE requests SET x = (SELECT 1 FROM y WHERE z), status = :s WHERE id = 1")',
        'f"UPDATE requests SET status = {new} FROM m WHERE requests.id = m.id"',
    ],
    "INSERT INTO requests (… status …)": [
        'text("INSERT INTO requests (number, status, geom) VALUES (:n, :s, :g)")',
        'text("INSERT INTO requests SELECT * FROM staged")',
        'f"INSERT INTO requests ({REQUEST_COLUMNS}) SELECT {cols} FROM s"',
        'text("COPY requests (number, status) FROM STDIN")',
    ],
    "RequestEvent(": [
        "session.add(RequestEvent(request_id=1, action='claim'))",
        "e = models.RequestEvent(request_id=req.id)",
    ],
    "insert(RequestEvent)": ["session.execute(insert(RequestEvent).values(action='x'))"],
    "bulk_insert_mappings(RequestEvent)": ["s.bulk_insert_mappings(RequestEvent, rows)"],
    "RequestEvent.__table__.insert()": ["conn.execute(RequestEvent.__table__.insert(), rows)"],
    "<request>.status =": [
        "req.status = 'closed'",
        "request.status = Status.CLOSED",
        "original_request.status = 'duplicate'",
        "dup_req.status: str = 'duplicate'",
        "req.status, x = 'closed', 1",
    ],
    'setattr(<request>, "status")': ["setattr(req, 'status', 'closed')"],
    "Request(status=…)": ["session.add(Request(number='1', status='assigned'))"],
    "update(Request) setting status (values)": [
        "session.execute(update(Request).where(Request.id == 1).values(status='closed'))",
        "session.execute(sa.update(Request).values({Request.status: 'closed'}))",
        'stmt = update(Request).values({"status": "closed", "note": 1})',
    ],
    "update(Request) setting status (update)": [
        "session.query(Request).filter_by(id=1).update({'status': 'closed'})",
    ],
    "update(Request) setting status (execute)": [
        "session.execute(update(Request), [{'id': 1, 'status': 'closed'}])",
    ],
}


@pytest.mark.parametrize(
    ("rule", "snippet"), [(rule, s) for rule, snippets in PLANTED.items() for s in snippets]
)
def test_the_scanner_flags_a_planted_write(rule: str, snippet: str) -> None:
    found = scan_source(snippet)
    assert rule in {f.rule for f in found}, (snippet, found)


NOT_WRITES = [
    # other tables' status columns, reads, comparisons
    'draft.status = "published"',
    "job.status = 'done'",
    "row.status = 'open'",
    "if req.status == 'closed': pass",
    "x = req.status",
    "text(\"SELECT status FROM requests WHERE status = 'closed'\")",
    "text(\"UPDATE requests r SET grid_id = m.new_id FROM m WHERE r.id = m.id AND r.status = 'assigned'\")",
    'text("UPDATE requests SET updated_at = now() WHERE status = ANY(:open) RETURNING status")',
    'text("UPDATE request_offers SET status = 1")',
    "text(\"UPDATE grid_drafts SET status = 'published' WHERE id = 1\")",
    'text("INSERT INTO requests_archive (status) VALUES (1)")',
    'text("INSERT INTO request_offers (request_id, rank) VALUES (1, 1)")',
    'text("INSERT INTO requests (number, text) VALUES (:n, :t)")',
    "text(\"SELECT * FROM request_events e WHERE e.action = 'claim'\")",
    'text("COPY (SELECT * FROM request_events) TO STDOUT")',
    'text("COPY request_events TO STDOUT")',
    "select(RequestEvent).where(RequestEvent.request_id == 1)",
    "urllib.request.Request(url, data=b'', method='POST')",
    "session.execute(update(Draft).values(status='published'))",
    "session.execute(update(Request).values(grid_id=1))",
    "d = {'status': 'ok'}",
    '"""Docstrings are prose: INSERT INTO request_events, UPDATE requests SET status = x."""',
    "# a comment: req.status = 'closed'; INSERT INTO request_events",
]


@pytest.mark.parametrize("snippet", NOT_WRITES)
def test_the_scanner_leaves_other_code_alone(snippet: str) -> None:
    assert scan_source(snippet) == []
