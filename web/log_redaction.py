"""Resident tickets never reach a log in clear (issue 16, item 2).

A ticket (``<id>-<32 hex>``, layers/requests/schemas.py) is the only thing that lets a resident
read or withdraw their request, and it travels in URLs: ``/t/<ticket>`` and
``/api/v1/tickets/<ticket>``. Every log line those URLs could appear in (gunicorn's access and
error logs, werkzeug's request log, the CLI's handlers) passes :class:`TicketFilter`, which puts
``<ticket:xxxxxxxx>`` (the first 8 hex of the ticket's SHA-256, enough to follow one ticket
through a log, useless to act on it) in its place.
"""

from __future__ import annotations

import hashlib
import logging
import re

from gunicorn.glogging import Logger as GunicornLogger

logger = logging.getLogger(__name__)

# the path segment after a ticket route's prefix, whatever it holds (a malformed ticket may be
# one mistyped character away from a real one); not a mark already put there: a record may pass
# more than one handler's filter
_TICKET_SEGMENT = re.compile(r"(/t/|/api/v1/tickets/)([^/?#\s\"<]+)")
# a ticket's shape anywhere else (a query string, a Referer, a Location), "-" maybe %-encoded
_TICKET_SHAPE = re.compile(r"\d{1,18}(?:-|%2[dD])[0-9a-fA-F]{32}(?![0-9a-fA-F])")


def _mark(ticket: str) -> str:
    return f"<ticket:{hashlib.sha256(ticket.encode()).hexdigest()[:8]}>"


def redact_tickets(text: str) -> str:
    """``text`` with every ticket in it replaced by ``<ticket:xxxxxxxx>``."""
    text = _TICKET_SEGMENT.sub(lambda m: m.group(1) + _mark(m.group(2)), text)
    return _TICKET_SHAPE.sub(lambda m: _mark(m.group(0)), text)


class TicketFilter(logging.Filter):
    """Rewrites a record's message with its tickets redacted (the record is formatted here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tickets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def add_ticket_filter(target: logging.Logger | logging.Handler) -> None:
    """Put one :class:`TicketFilter` on ``target`` (a second call adds none)."""
    if not any(isinstance(f, TicketFilter) for f in target.filters):
        target.addFilter(TicketFilter())


def redact_root_handlers() -> None:
    """Every handler of the root logger redacts tickets (what the app's modules log about a
    request, e.g. web/errors.py's "unhandled error on <path>", propagates there)."""
    for handler in logging.getLogger().handlers:
        add_ticket_filter(handler)


def redact_werkzeug() -> None:
    """werkzeug's request log (the development and test servers) redacts tickets."""
    add_ticket_filter(logging.getLogger("werkzeug"))


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger class (``logger_class``): the access log and the error log (which
    names the request URI on a worker's error) redact tickets."""

    def setup(self, cfg: object) -> None:
        super().setup(cfg)
        add_ticket_filter(self.access_log)
        add_ticket_filter(self.error_log)
