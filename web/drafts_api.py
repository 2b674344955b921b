"""Planner API: drafts of a community's grids, validation, impact, publish, generations.

Thin: parse → one service call (layers.drafts) → serialise. Drafts are private to the planner
who opened them; every route needs a drafts.* permission (planners and admins).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from layers.drafts import edits, publish, service
from layers.drafts import impact as impact_service
from layers.errors import BadRequest, PayloadTooLarge
from web.api import json_body, parse_limit
from web.auth import current_principal, policy
from web.db import db_session
from web.i18n import negotiate_locale

logger = logging.getLogger(__name__)
bp = Blueprint("drafts_api", __name__, url_prefix="/api/v1")

DEFAULT_UPLOAD_MAX_BYTES = 20 * 1024 * 1024
UPLOAD_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip")


def upload_limit_bytes() -> int:
    """``DRAFT_UPLOAD_MAX_BYTES`` from the app config, else settings.extra, else 20 MiB."""
    if "DRAFT_UPLOAD_MAX_BYTES" in current_app.config:
        return int(current_app.config["DRAFT_UPLOAD_MAX_BYTES"])
    extra = current_app.config["MINQING"].extra
    return int(extra.get("draft_upload_max_bytes", DEFAULT_UPLOAD_MAX_BYTES))


def _user_id() -> int:
    uid = current_principal().user_id
    assert uid is not None  # every drafts.* route needs an account
    return uid


def _document(draft_id: int, extra: dict | None = None, status: int = 200):
    session = db_session()
    state = service.draft_state(session=session, draft_id=draft_id, user_id=_user_id())
    doc = service.draft_document(
        state, negotiate_locale(), stale=service.is_stale(session, state.draft)
    )
    if extra is not None:
        doc["edit"] = extra
    return jsonify(doc), status


@bp.post("/drafts")
@policy("drafts.create")
def create_draft():
    body = json_body()
    code = body.get("community_code")
    if not isinstance(code, str) or not code:
        raise BadRequest("missing_field", field="community_code")
    draft_id = service.create_draft(
        session=db_session(),
        community_code=code,
        user_id=_user_id(),
        households_min=body.get("households_min"),
        households_max=body.get("households_max"),
    )
    return _document(draft_id, status=201)


@bp.get("/drafts")
@policy("drafts.read")
def list_drafts():
    return jsonify({"drafts": service.list_drafts(session=db_session(), user_id=_user_id())})


@bp.get("/drafts/<int:draft_id>")
@policy("drafts.read")
def get_draft(draft_id: int):
    return _document(draft_id)


@bp.delete("/drafts/<int:draft_id>")
@policy("drafts.edit")
def discard_draft(draft_id: int):
    service.discard_draft(session=db_session(), draft_id=draft_id, user_id=_user_id())
    return jsonify({"id": draft_id, "status": "discarded"})


@bp.post("/drafts/<int:draft_id>/edits")
@policy("drafts.edit")
def edit_draft(draft_id: int):
    summary = edits.apply_edit(
        session=db_session(), draft_id=draft_id, user_id=_user_id(), body=json_body()
    )
    return _document(draft_id, summary)


@bp.post("/drafts/<int:draft_id>/upload")
@policy("drafts.edit")
def upload_draft(draft_id: int):
    """Replace the draft's grids by a GeoJSON / GeoPackage / zipped Shapefile (field ``file``;
    form fields ``crs``, ``code_field``, ``name_field``). Over the limit: 413 with the limit."""
    limit = upload_limit_bytes()
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge("payload_too_large", limit_bytes=limit)
    request.max_content_length = limit
    try:
        upload = request.files.get("file")
        form = request.form
    except RequestEntityTooLarge:
        raise PayloadTooLarge("payload_too_large", limit_bytes=limit) from None
    if upload is None or not upload.filename:
        raise BadRequest("missing_field", field="file")
    suffix = Path(upload.filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise BadRequest(
            "import_format",
            path=upload.filename,
            suffix=suffix or "(none)",
            supported=", ".join(UPLOAD_SUFFIXES),
        )
    with tempfile.TemporaryDirectory(prefix="minqing-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        upload.save(path)
        summary = edits.replace_from_file(
            session=db_session(),
            draft_id=draft_id,
            user_id=_user_id(),
            path=path,
            crs=form.get("crs") or None,
            code_field=form.get("code_field") or None,
            name_field=form.get("name_field") or None,
        )
    return _document(draft_id, summary)


@bp.get("/drafts/<int:draft_id>/validation")
@policy("drafts.read")
def validate_draft(draft_id: int):
    state = service.draft_state(session=db_session(), draft_id=draft_id, user_id=_user_id())
    return jsonify(
        {"draft_id": draft_id, **service.validation_document(state.findings, negotiate_locale())}
    )


@bp.get("/drafts/<int:draft_id>/impact")
@policy("drafts.read")
def draft_impact(draft_id: int):
    return jsonify(
        impact_service.draft_impact(session=db_session(), draft_id=draft_id, user_id=_user_id())
    )


@bp.post("/drafts/<int:draft_id>/publish")
@policy("drafts.publish")
def publish_draft(draft_id: int):
    result = publish.publish_draft(session=db_session(), draft_id=draft_id, user_id=_user_id())
    return jsonify(result), 201


@bp.get("/generations")
@policy("drafts.history")
def generations():
    limit = parse_limit(request.args.get("limit"))
    return jsonify({"generations": publish.list_generations(session=db_session(), limit=limit)})


@bp.post("/generations/<int:generation>/restore")
@policy("drafts.publish")
def restore_generation(generation: int):
    body = request.get_json(silent=True) or {}
    code = body.get("community_code") if isinstance(body, dict) else None
    result = publish.restore_generation(
        session=db_session(), generation=generation, user_id=_user_id(), community_code=code
    )
    return jsonify(result), 201
