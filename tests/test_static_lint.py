"""No script from data (issue 16): page scripts hand text to the DOM as text nodes.

Leaflet's ``bindTooltip`` / ``bindPopup`` / ``setContent`` insert a string as HTML (an element
as itself), and so do ``innerHTML``, ``outerHTML``, ``insertAdjacentHTML`` and
``document.write``. This rule scans web/static/js and fails on any of those given something
that is not known to be an element: a string literal, a concatenation, a variable or a call
the rule cannot follow to ``Minqing.el`` / ``document.createElement``. The rule is tested on
small snippets below, so a reintroduced ``layer.bindTooltip(name)`` fails.

The templates get the same rule: no ``|safe`` and no autoescape switched off; ``Markup`` in
web/ only where the markup is our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from layers.config import PROJECT_ROOT

JS_DIR = PROJECT_ROOT / "web" / "static" / "js"
TEMPLATES = PROJECT_ROOT / "web" / "templates"

# a call whose first argument becomes HTML when it is a string
CALL_SINKS = ("bindTooltip", "bindPopup", "setContent", "setPopupContent", "setTooltipContent")
# a call that always parses HTML, whatever it is given
HTML_CALLS = ("insertAdjacentHTML", "write", "writeln")  # write(ln): document.write
# a property that parses HTML when assigned
HTML_PROPERTIES = ("innerHTML", "outerHTML")
# calls that return an element (Minqing.el in web/static/js/dom.js builds with textContent)
ELEMENT_FACTORIES = (
    "el",
    "Minqing.el",
    "document.createElement",
    "document.createTextNode",
    "document.createDocumentFragment",
    "L.DomUtil.create",
)

IDENT = r"[A-Za-z_$][\w$]*"
_REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}
_WORD = re.compile(r"[\w$]+")
_REGEX_KEYWORDS = {"return", "typeof", "case", "do", "else", "in", "of", "void", "delete"}


@dataclass(frozen=True)
class Finding:
    line: int
    sink: str
    argument: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.sink}({self.argument})"


def mask(source: str) -> str:
    """``source`` with comments blanked and the contents of strings, template literals and
    regular expressions replaced by ``_`` (quotes kept, offsets and newlines unchanged): what
    is left is code only."""
    out = list(source)
    i, n = 0, len(source)
    last = ""  # the last significant character or word before i

    def blank(a: int, b: int, keep_ends: bool) -> None:
        for k in range(a + (1 if keep_ends else 0), b - (1 if keep_ends else 0)):
            if out[k] != "\n":
                out[k] = " " if not keep_ends else "_"

    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            blank(i, j, keep_ends=False)
            i = j
            continue
        if source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j, keep_ends=False)
            i = j
            continue
        if c in "\"'`" or (c == "/" and (last in _REGEX_BEFORE or last in _REGEX_KEYWORDS)):
            j = i + 1
            in_class = False
            while j < n:
                if source[j] == "\\":
                    j += 2
                    continue
                if c == "/" and source[j] == "[":
                    in_class = True
                elif c == "/" and source[j] == "]":
                    in_class = False
                elif source[j] == c and not in_class:
                    break
                elif source[j] == "\n" and c != "`":
                    break  # unterminated: stop at the line's end
                j += 1
            j = min(j + 1, n)
            blank(i, j, keep_ends=True)
            i = j
            last = "string"
            continue
        if c.isspace():
            i += 1
            continue
        word = _WORD.match(source, i)
        if word:
            last = word.group(0)
            i += len(last)
            continue
        last = c
        i += 1
    return "".join(out)


def _close(code: str, start: int) -> int:
    """The offset just past the bracket that closes the one at ``start``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[code[start]]]
    i = start + 1
    while i < len(code) and stack:
        c = code[i]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack[-1]:
                raise ValueError(f"unbalanced {c!r} at {i}")
            stack.pop()
        i += 1
    if stack:
        raise ValueError(f"unclosed bracket at {start}")
    return i


@dataclass(frozen=True)
class Function:
    start: int  # the "function" keyword
    name: str | None
    params: tuple[str, ...]
    body: tuple[int, int]  # inside the braces


class Script:
    """One masked script, and what in it is known to be an element: a call to one of
    ``ELEMENT_FACTORIES``; a call to a named function whose every ``return`` gives one; a
    function expression likewise; a variable whose declaration, in the nearest function that
    declares it, gives one and that is never assigned anything else. A parameter, a global or
    anything else is not known to be an element."""

    def __init__(self, source: str) -> None:
        self.code = code = mask(source)
        self.functions: list[Function] = []
        for m in re.finditer(rf"\bfunction\b\s*({IDENT})?\s*\(", code):
            params_end = _close(code, m.end() - 1)
            brace = code.index("{", params_end)
            params = tuple(
                p.strip() for p in code[m.end() : params_end - 1].split(",") if p.strip()
            )
            self.functions.append(
                Function(m.start(), m.group(1), params, (brace + 1, _close(code, brace) - 1))
            )
        self.top = Function(-1, None, (), (0, len(code)))
        self._done: dict[object, bool] = {}
        self._busy: set[object] = set()

    # -- structure
    def enclosing(self, at: int) -> list[Function]:
        """The functions whose body holds ``at``, innermost first, then the script itself."""
        around = [f for f in self.functions if f.body[0] <= at < f.body[1]]
        return [*sorted(around, key=lambda f: -f.body[0]), self.top]

    def owner(self, at: int) -> Function:
        return self.enclosing(at)[0]

    def expression_end(self, start: int) -> int:
        """Where the expression starting at ``start`` ends: the ``,`` or ``;`` or closing
        bracket after it at its own depth."""
        depth, i = 0, start
        while i < len(self.code):
            c = self.code[i]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif c in ",;" and depth == 0:
                break
            i += 1
        return i

    def returns(self, fn: Function) -> list[tuple[int, int]]:
        """The spans of what ``fn``'s own ``return`` statements give (nested functions left
        out); an empty span for a bare ``return``."""
        found = []
        lo, hi = fn.body
        for m in re.finditer(r"\breturn\b", self.code[lo:hi]):
            at = lo + m.start()
            if self.owner(at) is not fn:
                continue
            start = lo + m.end()
            line_end = self.code.find("\n", start)
            end = self.expression_end(start)
            if line_end >= 0 and not self.code[start:line_end].strip():
                end = start  # "return" alone on its line
            found.append((start, end))
        return found

    def declarations(self, fn: Function, name: str) -> list[tuple[int, int] | None]:
        """What ``var/let/const name`` directly in ``fn`` is initialised with (None: nothing)."""
        found: list[tuple[int, int] | None] = []
        lo, hi = fn.body
        for m in re.finditer(r"\b(?:var|let|const)\s+", self.code[lo:hi]):
            at = lo + m.end()
            if self.owner(at) is not fn:
                continue
            while True:  # var a = 1, b = el("b"), c;
                d = re.compile(rf"({IDENT})\s*(=(?!=))?").match(self.code, at)
                if not d:
                    break
                end = self.expression_end(d.end()) if d.group(2) else d.end()
                if d.group(1) == name:
                    found.append((d.end(), end) if d.group(2) else None)
                if self.code[end : end + 1] != ",":
                    break
                at = end + 1
                while self.code[at : at + 1].isspace():
                    at += 1
        return found

    def assignments(self, name: str) -> list[tuple[int, int] | None]:
        """What ``name = ...`` gives anywhere in the script, outside declarations; None for a
        compound assignment (``+=``), which never gives an element."""
        found: list[tuple[int, int] | None] = []
        pattern = (
            rf"(?<![\w$.])(?<!var )(?<!let )(?<!const ){re.escape(name)}"
            r"\s*(\|\||&&|\?\?|[-+*/%|&^])?=(?![=>])"
        )
        for m in re.finditer(pattern, self.code):
            found.append(None if m.group(1) else (m.end(), self.expression_end(m.end())))
        return found

    # -- the question
    def is_element(self, start: int, end: int) -> bool:
        while start < end and self.code[start].isspace():
            start += 1
        while end > start and self.code[end - 1].isspace():
            end -= 1
        expr = self.code[start:end]
        if not expr:
            return False
        if expr[0] == "(" and _close(self.code, start) == end:
            return self.is_element(start + 1, end - 1)
        for fn in self.functions:
            if fn.start == start:  # a function expression: what it returns
                if fn.body[1] + 1 != end:
                    return False
                return self._memo(("fn", fn.start), lambda fn=fn: self._gives_elements(fn))
        m = re.match(rf"({IDENT}(?:\s*\.\s*{IDENT})*)\s*\(", expr)
        if m and _close(self.code, start + m.end() - 1) == end:
            callee = re.sub(r"\s+", "", m.group(1))
            if callee in ELEMENT_FACTORIES:
                return True
            named = [f for f in self.functions if f.name == callee]
            return bool(named) and all(
                self._memo(("fn", f.start), lambda f=f: self._gives_elements(f)) for f in named
            )
        if re.fullmatch(IDENT, expr):
            return self._memo(("name", expr, start), lambda: self._holds_element(expr, start))
        return False

    def _memo(self, key: object, compute) -> bool:
        if key in self._done:
            return self._done[key]
        if key in self._busy:
            return False  # a cycle: not known
        self._busy.add(key)
        try:
            self._done[key] = result = compute()
        finally:
            self._busy.discard(key)
        return result

    def _gives_elements(self, fn: Function) -> bool:
        spans = self.returns(fn)
        return bool(spans) and all(self.is_element(*span) for span in spans)

    def _holds_element(self, name: str, at: int) -> bool:
        for fn in self.enclosing(at):
            if name in fn.params:
                return False
            declared = self.declarations(fn, name)
            if declared:
                assigned = self.assignments(name)
                if None in assigned:
                    return False  # a compound assignment (+=)
                values = [v for v in declared if v is not None] + assigned
                return bool(values) and all(self.is_element(*v) for v in values)
        return False


def check(source: str) -> list[Finding]:
    """Where ``source`` gives a sink something that is not known to be an element."""
    script = Script(source)
    code = script.code
    findings = []

    def line_of(offset: int) -> int:
        return code.count("\n", 0, offset) + 1

    for m in re.finditer(r"\.\s*(" + "|".join(CALL_SINKS + HTML_CALLS) + r")\s*\(", code):
        sink = m.group(1)
        if sink in ("write", "writeln") and not re.search(
            r"\bdocument\s*$", code[max(0, m.start() - 40) : m.start()]
        ):
            continue  # a stream's write, not document.write
        args_end = _close(code, m.end() - 1) - 1
        first_end = script.expression_end(m.end())
        if sink in CALL_SINKS and script.is_element(m.end(), min(first_end, args_end)):
            continue
        findings.append(
            Finding(line_of(m.start()), sink, " ".join(code[m.end() : args_end].split())[:80])
        )
    for m in re.finditer(r"\.\s*(" + "|".join(HTML_PROPERTIES) + r")\s*(\+?=)(?!=)", code):
        value = code[m.end() : script.expression_end(m.end())]
        findings.append(
            Finding(line_of(m.start()), m.group(1) + " " + m.group(2), value.strip()[:80])
        )
    return findings


# ---------------------------------------------------------------------------------- the rule


def scripts() -> list[Path]:
    return sorted(JS_DIR.glob("*.js"))


def test_the_page_scripts_are_there() -> None:
    names = {p.name for p in scripts()}
    assert {"dom.js", "layers.js", "planner.js", "resident.js", "staff.js", "work.js"} <= names


@pytest.mark.parametrize("path", scripts(), ids=lambda p: p.name)
def test_no_string_reaches_an_html_sink(path: Path) -> None:
    findings = check(path.read_text(encoding="utf-8"))
    assert not findings, f"{path.name}: give an element (Minqing.el), not a string: " + "; ".join(
        map(str, findings)
    )


def test_templates_do_not_mark_data_safe() -> None:
    bad = []
    for path in sorted(TEMPLATES.glob("*.html")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\|\s*safe\b|autoescape\s+false|\|\s*tojson\b", line):
                bad.append(f"{path.name}:{n}: {line.strip()}")
    assert not bad, bad


# Markup() in web/: only our own markup (the QR code's SVG segno draws from our URL)
MARKUP_ALLOWED = {("resident.py", "Markup(qr.svg_inline(scale=4, border=2, omitsize=True))")}


def test_markup_only_wraps_our_own_markup() -> None:
    found = set()
    for path in sorted((PROJECT_ROOT / "web").glob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for m in re.finditer(r"\bMarkup\((.*)\)", line):
                found.add((path.name, m.group(0)))
    assert found <= MARKUP_ALLOWED, found - MARKUP_ALLOWED


# ------------------------------------------------------------------------ the rule, on snippets

BAD = {
    "a name as a tooltip": "layer.bindTooltip(name);",
    "a property as a tooltip": "layer.bindTooltip(feature.properties.name, { sticky: true });",
    "a String() call": "layer.bindTooltip(String(feature.properties[spec.label]));",
    "a literal": 'marker.bindPopup("<b>hi</b>");',
    "a concatenation": 'm.bindPopup("<b>" + v.name + "</b>", {});',
    "an element then a string": 'm.bindTooltip(el("b", {}, "x") + name);',
    "a markup property": 'm.bindPopup(el("div").outerHTML);',
    "a variable holding a string": "var label = v.name;\nm.bindTooltip(label);",
    "a variable once an element, then a string": (
        'var box = el("div");\nbox = v.name;\nm.bindPopup(box);'
    ),
    "a parameter shadowing an element": (
        'var box = el("div");\nfunction show(box) { m.bindPopup(box); }'
    ),
    "a string in the nearest scope": (
        'var t = el("b");\nfunction f(v) { var t = v.name; m.bindTooltip(t); }'
    ),
    "a global": "m.bindTooltip(label);",
    "a function giving a string": "m.bindTooltip(function () { return f.properties.name; });",
    "a function giving an element or a string": (
        'm.bindTooltip(function (l) { if (l.x) return el("b"); return l.name; });'
    ),
    "a named function giving a string": (
        "function label(v) { return v.name; }\nm.bindTooltip(label(v));"
    ),
    "an unknown function": "m.bindPopup(render(v));",
    "a ternary": 'm.bindTooltip(x ? el("b") : name);',
    "setContent": "L.popup().setLatLng(p).setContent(v.name).openOn(map);",
    "setPopupContent": "m.setPopupContent('<i>' + t + '</i>');",
    "setTooltipContent": "m.setTooltipContent(name);",
    "innerHTML": "div.innerHTML = v.name;",
    "innerHTML, even empty": 'list.innerHTML = "";',
    "innerHTML +=": "div.innerHTML += row;",
    "outerHTML": "div.outerHTML = html;",
    "insertAdjacentHTML": 'list.insertAdjacentHTML("beforeend", "<li>" + x + "</li>");',
    "document.write": "document.write(html);",
    "document.writeln": "document . writeln(html);",
    "split across lines": (
        "layer\n  .bindTooltip(\n    name,\n    { sticky: true })\n  .addTo(map);"
    ),
}

GOOD = {
    "Minqing.el": 'layer.bindTooltip(el("span", {}, name), { sticky: true });',
    "Minqing.el in full": 'layer.bindTooltip(Minqing.el("span", {}, v.name));',
    "createElement": 'm.bindPopup(document.createElement("div"));',
    "a variable holding an element": (
        'var box = el("div", { class: "mq-detail" });\nmarker.bindPopup(box, { maxWidth: 340 });'
    ),
    "a variable built by createElement": (
        'var label = document.createElement("span");\nlabel.textContent = name;\n'
        "layer.bindTooltip(label);"
    ),
    "a function expression giving an element": (
        'layer.bindTooltip(function () { return el("span", {}, f.properties.name); });'
    ),
    "a named function giving an element": (
        'function popupFor(p) {\n  var dl = document.createElement("dl");\n'
        "  [1].forEach(function (x) { return x + 1; });\n  return dl;\n}\n"
        "layer.bindPopup(function () { return popupFor(feature.properties); });\n"
        "L.popup().setContent(popupFor(e.layer.properties)).openOn(map);"
    ),
    "an element in the nearest scope": (
        'function f(v) { var t = el("b", {}, v.name); m.bindTooltip(t); }\n'
        "function g(v) { var t = v.name; return t; }"
    ),
    "in a comment": "// layer.bindTooltip(name) inserts HTML\n/* div.innerHTML = x; */",
    "in a string": 'var hint = "never layer.bindTooltip(name) or x.innerHTML = y";',
    "in a regular expression": "var re = /bindTooltip\\(name\\)/;",
    "reading innerHTML": "var before = div.innerHTML;\nif (div.innerHTML === before) done();",
    "textContent": "div.textContent = v.name;",
    "a stream's write": "stream.write(chunk);",
}


@pytest.mark.parametrize("snippet", BAD.values(), ids=BAD.keys())
def test_the_rule_finds(snippet: str) -> None:
    assert check(snippet), snippet


@pytest.mark.parametrize("snippet", GOOD.values(), ids=GOOD.keys())
def test_the_rule_lets_through(snippet: str) -> None:
    assert check(snippet) == [], snippet


def test_the_rule_names_the_line() -> None:
    source = 'var a = el("b");\n\n  layer.bindTooltip(v.name || "", {});\n'
    (finding,) = check(source)
    assert finding.line == 3 and finding.sink == "bindTooltip"


def test_the_rule_would_have_caught_issue_16() -> None:
    """resident.js as it stood when issue 16 was filed: the venue name as a tooltip."""
    before = (
        'L.circleMarker([v.lat, v.lon], { radius: 7, color: "#1f6feb", fillOpacity: 0.9 })\n'
        '  .bindTooltip(v.name || "", {}).addTo(overlay);'
    )
    assert [f.sink for f in check(before)] == ["bindTooltip"]
