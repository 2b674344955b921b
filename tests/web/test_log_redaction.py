"""Tickets never reach a log in clear (issue 16, item 2): gunicorn's access and error logs,
werkzeug's request log and the CLI's handlers write <ticket:xxxxxxxx> in their place."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from werkzeug.serving import make_server

from layers.embedded import free_port
from web.log_redaction import (
    RedactingGunicornLogger,
    TicketFilter,
    redact_root_handlers,
    redact_tickets,
)

MINQING = Path(sys.executable).with_name("minqing")
TICKET = "4711-0123456789abcdef0123456789abcdef"
MARK = f"<ticket:{hashlib.sha256(TICKET.encode()).hexdigest()[:8]}>"


def test_tickets_in_paths_queries_and_referers_are_replaced():
    for text, expected in [
        (f"GET /t/{TICKET} HTTP/1.1", f"GET /t/{MARK} HTTP/1.1"),
        (f"/t/{TICKET}?lang=en", f"/t/{MARK}?lang=en"),
        (f"POST /api/v1/tickets/{TICKET}/rate", f"POST /api/v1/tickets/{MARK}/rate"),
        (f"http://h/x?t={TICKET}&a=1", f"http://h/x?t={MARK}&a=1"),
        (
            f"Location: http://h/api/v1/tickets/{TICKET}",
            f"Location: http://h/api/v1/tickets/{MARK}",
        ),
        ("GET /static/js/layers.js HTTP/1.1", "GET /static/js/layers.js HTTP/1.1"),
        ("GET /api/v1/requests/4711 HTTP/1.1", "GET /api/v1/requests/4711 HTTP/1.1"),
    ]:
        assert redact_tickets(text) == expected
    # a malformed ticket after a ticket route may be a typo of a real one: hidden too
    assert "abc" not in redact_tickets("GET /t/4711-abc HTTP/1.1")
    assert TICKET not in redact_tickets(f"/x?t={TICKET.replace('-', '%2D')}")


def _fake_request(path: str, referer: str = "-") -> tuple:
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": path,
        "PATH_INFO": path.split("?")[0],
        "QUERY_STRING": path.partition("?")[2],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": referer,
        "HTTP_USER_AGENT": "test",
    }
    resp = SimpleNamespace(status="404 NOT FOUND", sent=10, headers=[("Location", path)])
    req = SimpleNamespace(headers=[("REFERER", referer)])
    return resp, req, environ


def test_gunicorn_access_and_error_logs_redact_tickets(tmp_path):
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    cfg = Config()
    cfg.set("accesslog", str(access))
    cfg.set("errorlog", str(error))
    # the default format plus what else could carry a ticket: the path, the query, a header
    cfg.set(
        "access_log_format", cfg.access_log_format + ' %(U)s %(q)s "{location}o" %({raw_uri}e)s'
    )
    log = RedactingGunicornLogger(cfg)
    log.access(
        *_fake_request(f"/t/{TICKET}?x=1", referer=f"http://h/t/{TICKET}"), timedelta(0, 0, 1)
    )
    log.access(*_fake_request(f"/api/v1/tickets/{TICKET}/withdraw"), timedelta(0, 0, 1))
    log.error("Error handling request %s", f"/t/{TICKET}")
    log.exception("Error handling request %s", f"/api/v1/tickets/{TICKET}")
    for handler in (*log.access_log.handlers, *log.error_log.handlers):
        handler.flush()
    lines = access.read_text().splitlines()
    assert len(lines) == 2
    assert TICKET not in access.read_text() and TICKET[5:] not in access.read_text()
    assert lines[0].count(MARK) >= 4 and "/t/<ticket:" in lines[0]
    assert f"/api/v1/tickets/{MARK}/withdraw" in lines[1]
    errors = error.read_text()
    assert TICKET not in errors and errors.count(MARK) == 2


def test_the_werkzeug_request_log_redacts_tickets(app, caplog):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            for path in (f"/t/{TICKET}", f"/api/v1/tickets/{TICKET}"):
                with pytest.raises(urllib.error.HTTPError):  # no such ticket: 404
                    urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}")
            deadline = time.monotonic() + 5
            while len([r for r in caplog.records if r.name == "werkzeug"]) < 2:
                assert time.monotonic() < deadline, "werkzeug logged no requests"
                time.sleep(0.05)
    finally:
        server.shutdown()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "werkzeug")
    assert TICKET not in logged and logged.count(MARK) == 2, logged


def test_what_the_app_logs_about_a_ticket_path_is_redacted_by_the_cli_handlers():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]  # as after the CLI's logging.basicConfig
    try:
        redact_root_handlers()
        redact_root_handlers()  # once is enough: no second filter
        assert sum(isinstance(f, TicketFilter) for f in handler.filters) == 1
        logging.getLogger("web.errors").error("unhandled error on %s", f"/t/{TICKET}")
    finally:
        root.handlers[:] = saved
    assert stream.getvalue().strip() == f"unhandled error on /t/{MARK}"


def test_a_record_through_two_filters_keeps_the_first_mark():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s", (f"/t/{TICKET}",), None)
    TicketFilter().filter(record)
    TicketFilter().filter(record)
    assert record.getMessage() == f"GET /t/{MARK}"


@pytest.mark.slow
def test_minqing_serve_logs_no_ticket(test_db_url: str) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": test_db_url}
    server = subprocess.Popen(
        [str(MINQING), "serve", "--port", str(port), "--workers", "1", "--escalate-every", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "minqing serve did not come up"
                time.sleep(0.3)
        for path in (f"/t/{TICKET}", f"/api/v1/tickets/{TICKET}", f"/r?t={TICKET}"):
            req = urllib.request.Request(base + path, headers={"Referer": f"{base}/t/{TICKET}"})
            with contextlib.suppress(urllib.error.HTTPError):  # 404: no such ticket
                urllib.request.urlopen(req, timeout=10)
        time.sleep(0.5)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "GET /health" in output, output[-2000:]
    assert TICKET not in output and TICKET[5:] not in output
    assert output.count(f"/t/{MARK}") >= 1 and output.count(f"/api/v1/tickets/{MARK}") == 1
