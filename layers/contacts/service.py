"""Public contacts (issue 16, item 6): a leader publishes, with consent, the contact residents
see unmasked — or withdraws it. Keyword-only functions; each owns its transaction.

Personal names and phones stay masked by role everywhere; a grid leader (a ``grid_leader``
binding, or ``grids.leader_user_id``) or a building leader (``buildings.leader_user_id``) may
publish a display name and a work phone, which the service card, ``/r`` and the buildings
layer then show as they are. Each publish records the time of consent (a new publish is a new
consent); a publish and a withdrawal each leave an entry in the append-only audit log.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.errors import Forbidden, NotFound, Unprocessable
from layers.grids.repo import LIVE_GRIDS

logger = logging.getLogger(__name__)

NAME_MAX = 100


def public_contact_join(user_id_sql: str) -> str:
    """``LEFT JOIN`` of ``pc`` (display_name, work_phone): the public contact of the active
    account ``user_id_sql`` — what a card, a tile or a layer may show unmasked."""
    return (
        "LEFT JOIN (public_contacts pc JOIN users pcu ON pcu.id = pc.user_id AND pcu.active)"
        f" ON pc.user_id = {user_id_sql}"
    )


#: what the database's check accepts too (``ck_public_contacts_work_phone_format``)
PHONE_RE = re.compile(r"^[0-9+() -]{3,32}$")


@dataclass(frozen=True)
class PublicContactView:
    display_name: str
    work_phone: str
    consented_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "display_name": self.display_name,
            "work_phone": self.work_phone,
            "consented_at": self.consented_at.isoformat(),
        }


@dataclass(frozen=True)
class Leads:
    """What an account leads: the live grids and the buildings a public contact serves."""

    grids: tuple[str, ...]
    buildings: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.grids or self.buildings)

    def as_dict(self) -> dict[str, list[str]]:
        return {"grids": list(self.grids), "buildings": list(self.buildings)}


def leads_of(session: Session, user_id: int) -> Leads:
    """The grids (bound as grid leader, or named leader of the live row) and the buildings
    ``user_id`` leads."""
    grids = session.scalars(
        text(
            "SELECT b.grid_code FROM role_bindings b WHERE b.user_id = :u"
            " AND b.role_code = 'grid_leader' AND b.grid_code IS NOT NULL"
            f" UNION SELECT g.code FROM grids g WHERE g.leader_user_id = :u AND {LIVE_GRIDS}"
            " ORDER BY 1"
        ),
        {"u": user_id},
    ).all()
    buildings = session.scalars(
        text("SELECT code FROM buildings WHERE leader_user_id = :u ORDER BY code"),
        {"u": user_id},
    ).all()
    return Leads(grids=tuple(grids), buildings=tuple(buildings))


def _contact(session: Session, user_id: int) -> PublicContactView | None:
    row = session.execute(
        text(
            "SELECT display_name, work_phone, consented_at FROM public_contacts WHERE user_id = :u"
        ),
        {"u": user_id},
    ).first()
    return PublicContactView(*row) if row else None


def my_public_contact(*, session: Session, user_id: int) -> dict[str, Any]:
    """The caller's published contact (or None) and what they lead (nothing: they may not
    publish)."""
    contact = _contact(session, user_id)
    leads = leads_of(session, user_id)
    session.commit()
    return {"contact": contact.as_dict() if contact else None, "leads": leads.as_dict()}


def _text(body: dict[str, Any], field: str, max_chars: int) -> str:
    value = body.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise Unprocessable("missing_field", field=field)
    if not isinstance(value, str):
        raise Unprocessable("invalid_field", field=field, reason="a string")
    value = value.strip()
    if len(value) > max_chars:
        raise Unprocessable("text_too_long", field=field, length=len(value), max_chars=max_chars)
    return value


def parse_public_contact(body: dict[str, Any]) -> tuple[str, str]:
    """(display name, work phone) from ``body``; its ``consent`` must be literally true."""
    if body.get("consent") is not True:
        raise Unprocessable("consent_required")
    name = _text(body, "display_name", NAME_MAX)
    phone = _text(body, "work_phone", 32)
    if not PHONE_RE.match(phone):
        raise Unprocessable(
            "invalid_field", field="work_phone", reason="digits, spaces, +, -, ( ), 3–32 of them"
        )
    return name, phone


def _audit(session: Session, user_id: int, action: str, summary: dict[str, Any]) -> None:
    session.execute(
        text("INSERT INTO audit_log (user_id, action, summary) VALUES (:u, :a, CAST(:s AS jsonb))"),
        {"u": user_id, "a": action, "s": json.dumps(summary, ensure_ascii=False, default=str)},
    )


def publish_public_contact(
    *, session: Session, user_id: int, body: dict[str, Any]
) -> PublicContactView:
    """Publish (or replace) ``user_id``'s public contact with their consent, now; 403
    ``not_a_leader`` unless they lead a grid or a building."""
    name, phone = parse_public_contact(body)
    leads = leads_of(session, user_id)
    if not leads:
        raise Forbidden("not_a_leader")
    row = session.execute(
        text(
            "INSERT INTO public_contacts (user_id, display_name, work_phone, consented_at)"
            " VALUES (:u, :n, :p, now())"
            " ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name,"
            " work_phone = EXCLUDED.work_phone, consented_at = now(), updated_at = now()"
            " RETURNING display_name, work_phone, consented_at"
        ),
        {"u": user_id, "n": name, "p": phone},
    ).one()
    contact = PublicContactView(*row)
    _audit(session, user_id, "contact.publish", {**contact.as_dict(), **leads.as_dict()})
    session.commit()
    logger.info("user %s published a public contact (%s)", user_id, leads.as_dict())
    return contact


def withdraw_public_contact(*, session: Session, user_id: int) -> bool:
    """Withdraw ``user_id``'s public contact; False when there was none."""
    gone = session.execute(
        text("DELETE FROM public_contacts WHERE user_id = :u RETURNING consented_at"),
        {"u": user_id},
    ).first()
    if gone is not None:
        _audit(session, user_id, "contact.withdraw", {"consented_at": gone[0]})
    session.commit()
    if gone is not None:
        logger.info("user %s withdrew their public contact", user_id)
    return gone is not None


def set_building_leader(*, session: Session, building_code: str, username: str | None) -> None:
    """Link the building ``building_code``'s leader to the account ``username`` (None:
    unlink), so that they may publish a public contact."""
    user_id = None
    if username is not None:
        user_id = session.scalar(text("SELECT id FROM users WHERE username = :n"), {"n": username})
        if user_id is None:
            raise NotFound("unknown_user", username=username)
    updated = session.execute(
        text("UPDATE buildings SET leader_user_id = :u WHERE code = :c RETURNING id"),
        {"u": user_id, "c": building_code},
    ).first()
    if updated is None:
        raise NotFound("unknown_building", code=building_code)
    session.commit()
