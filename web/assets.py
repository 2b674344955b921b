"""Static files: our own (web/static) and third-party ones installed by npm (node_modules).

Nothing is fetched from a CDN; only the npm packages named in package.json are exposed.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

from web.auth import policy

logger = logging.getLogger(__name__)
bp = Blueprint("assets", __name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
ONE_DAY_S = 24 * 3600


@cache
def _npm_packages(root: Path) -> frozenset[str]:
    manifest = json.loads((root / "package.json").read_text())
    return frozenset(manifest.get("dependencies", {}))


def node_modules_dir() -> Path:
    return current_app.config["MINQING"].project_root / "node_modules"


@bp.get("/static/<path:filename>")
@policy("assets.read")
def static(filename: str):
    return send_from_directory(STATIC_DIR, filename, max_age=300)


@bp.get("/favicon.ico")
@policy("assets.read")
def favicon():
    """Browsers ask for it on every page; an answer keeps their consoles clean."""
    return send_from_directory(
        STATIC_DIR / "img", "favicon.svg", mimetype="image/svg+xml", max_age=ONE_DAY_S
    )


@bp.get("/vendor/<path:filename>")
@policy("assets.read")
def vendor(filename: str):
    root = current_app.config["MINQING"].project_root
    package = (
        "/".join(filename.split("/")[:2]) if filename.startswith("@") else filename.split("/")[0]
    )
    if package not in _npm_packages(root):
        abort(404)
    return send_from_directory(node_modules_dir(), filename, max_age=ONE_DAY_S)
