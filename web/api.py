"""REST + GeoJSON API under /api/v1 (DESIGN §7). Routes parse, call one service, serialise."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request, url_for

from layers.auth.login import log_in
from layers.auth.permissions import grant_for
from layers.auth.sessions import sign_out_everywhere
from layers.bbox import parse_bbox
from layers.contacts.service import (
    my_public_contact,
    publish_public_contact,
    withdraw_public_contact,
)
from layers.display_crs import parse_display_crs
from layers.errors import BadRequest
from layers.features import LAYERS, layer_spec, read_features
from web.auth import (
    client_info,
    current_principal,
    current_session_id,
    end_browser_session,
    issue_token,
    login_policy,
    policy,
    require,
)
from web.db import db_session

logger = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")


def parse_limit(raw: str | None) -> int:
    settings = current_app.config["MINQING"]
    if raw is None or raw == "":
        return settings.api_default_limit
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("invalid_limit", max=settings.api_max_limit) from None
    if not 1 <= value <= settings.api_max_limit:
        raise BadRequest("invalid_limit", max=settings.api_max_limit)
    return value


def parse_zoom(raw: str | None) -> int | None:
    """The map's zoom (``?zoom=``) that outlines are simplified for; absent: full detail."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest("invalid_field", field="zoom", reason="an integer 0–24") from None


def json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("invalid_json")
    return data


@bp.get("/layers")
@policy("layers.read_public")
def layers_index():
    return jsonify(
        {
            "layers": [
                {
                    "name": name,
                    "personal": spec.personal,
                    "href": url_for("api.layer_features", layer=name, _external=False),
                }
                for name, spec in LAYERS.items()
            ]
        }
    )


@bp.get("/layers/<layer>")
@policy("layers.read_public")
def layer_features(layer: str):
    """RFC 7946 FeatureCollection of ``layer`` in ``bbox``, paged by ``cursor``."""
    spec = layer_spec(layer)
    grant = require("layers.read_personal") if spec.personal else g.grant
    # whose names and phones the caller may see (a public layer's leaders: their streets)
    pii_grant = grant_for("layers.read_personal", current_principal())
    settings = current_app.config["MINQING"]
    bbox = parse_bbox(request.args.get("bbox"), max_deg=settings.bbox_max_deg)
    limit = parse_limit(request.args.get("limit"))
    page = read_features(
        session=db_session(),
        layer=layer,
        grant=grant,
        bbox=bbox,
        limit=limit,
        cursor=request.args.get("cursor"),
        display_crs=parse_display_crs(request.args.get("crs")),
        zoom=parse_zoom(request.args.get("zoom")),
        pii_grant=pii_grant,
    )
    next_url = None
    if page.next_cursor:
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        next_url = url_for("api.layer_features", layer=layer, cursor=page.next_cursor, **args)
    return jsonify(
        {
            "type": "FeatureCollection",
            "features": page.features,
            "numberReturned": len(page.features),
            "links": {"next": next_url},
        }
    )


@bp.post("/auth/token")
@policy("auth.login")
def auth_token():
    """Exchange username + password for a bearer token."""
    body = json_body()
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadRequest("validation_failed", reason="username and password are required")
    user = log_in(
        session=db_session(),
        username=username,
        password=password,
        client=client_info(),
        channel="token",
        policy=login_policy(),
    )
    settings = current_app.config["MINQING"]
    return jsonify(
        {
            "token": issue_token(user.id, user.token_version),
            "token_type": "Bearer",
            "expires_in": settings.token_max_age_s,
        }
    )


@bp.post("/auth/sessions/revoke")
@policy("auth.sessions_revoke")
def revoke_sessions():
    """Sign out everywhere: every session and every bearer token of the caller's account
    ends, this one included."""
    bearer = request.headers.get("Authorization", "").startswith("Bearer ")
    ended = sign_out_everywhere(
        session=db_session(),
        user_id=current_principal().user_id,
        client=client_info(),
        channel="token" if bearer else "account",
    )
    if not bearer and current_session_id() is not None:
        end_browser_session()
    return jsonify({"sessions_ended": ended, "tokens_revoked": True})


@bp.get("/auth/whoami")
@policy("auth.whoami")
def whoami():
    p = current_principal()
    return jsonify(
        {
            "username": p.username,
            "roles": [
                {"role": b.role, "area_id": b.area_id, "grid_code": b.grid_code} for b in p.bindings
            ],
        }
    )


@bp.get("/me/public-contact")
@policy("contacts.publish")
def public_contact():
    """The caller's published contact (or null) and the grids and buildings they lead."""
    return jsonify(my_public_contact(session=db_session(), user_id=current_principal().user_id))


@bp.put("/me/public-contact")
@policy("contacts.publish")
def public_contact_publish():
    """Publish the caller's public contact: ``display_name``, ``work_phone`` and
    ``consent: true`` (recorded with its time); grid and building leaders only."""
    contact = publish_public_contact(
        session=db_session(), user_id=current_principal().user_id, body=json_body()
    )
    return jsonify({"contact": contact.as_dict()})


@bp.delete("/me/public-contact")
@policy("contacts.publish")
def public_contact_withdraw():
    """Withdraw the caller's public contact (204 whether or not there was one)."""
    withdraw_public_contact(session=db_session(), user_id=current_principal().user_id)
    return "", 204
