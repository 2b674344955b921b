"""The per-response script nonce of the Content-Security-Policy, and putting it on a page's
``<script>`` elements (web/security_headers.py sends the policy)."""

from __future__ import annotations

import logging
import re
import secrets
from html.parser import HTMLParser

from flask import g

logger = logging.getLogger(__name__)


def csp_nonce() -> str:
    """This response's script nonce (made on first use, one per request)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


class _ScriptTags(HTMLParser):
    """Where each ``<script>`` start tag without a nonce ends its name, as string offsets.

    HTMLParser reads a script's content as text up to ``</script``, so ``<script`` inside a
    script (a JSON string, say) is not taken for a tag.
    """

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=False)
        # getpos() counts lines by "\n" alone (str.splitlines would also split at U+2028 & co.)
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", html))]
        self.insert_at: list[int] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and not any(name == "nonce" for name, _ in attrs):
            line, col = self.getpos()
            self.insert_at.append(self._line_starts[line - 1] + col + len("<script"))


def nonce_scripts(html: str, nonce: str) -> str:
    """``html`` with ``nonce`` on every ``<script>`` element that has none."""
    attr = f' nonce="{nonce}"'
    parts, last = [], 0
    for at in _ScriptTags(html).insert_at:
        parts += [html[last:at], attr]
        last = at
    parts.append(html[last:])
    return "".join(parts)
