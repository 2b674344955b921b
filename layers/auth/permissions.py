"""The permission table: action × role → scope. Every route names one action (DESIGN §7).

Scopes say how far a grant reaches:
- ``all``: everything;
- ``subtree``: the areas the role is bound to and everything below them;
- ``grids``: the grids the role is bound to (by code, so redraws keep bindings);
- ``self``: only the principal's own records (a volunteer's own offers, say).
``ANONYMOUS`` grants need no login at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger(__name__)

Scope = Literal["all", "subtree", "grids", "self"]
ANONYMOUS = "anonymous"
AUTHENTICATED = "authenticated"  # any logged-in account, whatever its roles

ROLES = (
    "admin",
    "planner",
    "street_staff",
    "community_staff",
    "grid_leader",
    "grid_member",
    "volunteer",
)

_STAFF: dict[str, Scope] = {
    "admin": "all",
    "street_staff": "subtree",
    "community_staff": "subtree",
    "grid_leader": "grids",
    "grid_member": "grids",
}

PERMISSIONS: dict[str, dict[str, Scope]] = {
    # platform
    "health.read": {ANONYMOUS: "all"},
    "assets.read": {ANONYMOUS: "all"},
    "auth.login": {ANONYMOUS: "all"},
    "auth.logout": {ANONYMOUS: "all"},
    "auth.whoami": {AUTHENTICATED: "self"},
    # the account page (web/account.py): one's own sessions and password
    "pages.account": {AUTHENTICATED: "self"},
    "auth.password_change": {AUTHENTICATED: "self"},
    "auth.sessions_revoke": {AUTHENTICATED: "self"},  # sign out everywhere
    # map layers without personal data: anyone, residents included
    "layers.read_public": {ANONYMOUS: "all"},
    "pages.district_map": {ANONYMOUS: "all"},
    "pages.service_card": {ANONYMOUS: "all"},
    "pages.resident": {ANONYMOUS: "all"},
    "pages.leader": {"admin": "all", "grid_leader": "grids", "grid_member": "grids"},
    "pages.volunteer": {"volunteer": "self"},
    "volunteers.me": {"volunteer": "self"},
    # layers holding personal data (volunteers, requests)
    "layers.read_personal": {**_STAFF, "planner": "all"},
    # the people's-affairs pipeline (民情流水线, layers/requests)
    "requests.create": {ANONYMOUS: "all"},  # residents submit without an account
    "requests.read": {**_STAFF, "planner": "all", "volunteer": "self"},
    "requests.claim": {"volunteer": "self"},
    "requests.start": {**_STAFF, "volunteer": "self"},
    "requests.resolve": {**_STAFF, "volunteer": "self"},
    "requests.reopen": {k: v for k, v in _STAFF.items() if k != "grid_member"},
    "requests.reject": {k: v for k, v in _STAFF.items() if k != "grid_member"},
    "requests.mark_duplicate": dict(_STAFF),
    "requests.assign": {k: v for k, v in _STAFF.items() if k not in ("grid_leader", "grid_member")},
    "requests.reassign": {k: v for k, v in _STAFF.items() if k != "grid_member"},
    "requests.escalate": dict(_STAFF),
    "requests.reply": dict(_STAFF),
    "requests.decline_offer": {"volunteer": "self"},
    "requests.give_back": {"volunteer": "self"},
    "tickets.read": {ANONYMOUS: "all"},  # the ticket itself is the credential
    "tickets.rate": {ANONYMOUS: "all"},
    "tickets.withdraw": {ANONYMOUS: "all"},
    "categories.read": {ANONYMOUS: "all"},
    "metrics.read": {**_STAFF, "planner": "all"},
    "volunteers.register": {AUTHENTICATED: "self"},
    # a leader's own public contact (layers/contacts): the service checks they lead something
    "contacts.publish": {AUTHENTICATED: "self"},
    # 一刻钟服务圈: coverage figures and gaps hold no personal data (like the buildings and
    # service_circles layers), nearest service points are the resident's question
    "coverage.read": {ANONYMOUS: "all"},
    "nearest.read": {ANONYMOUS: "all"},
    # staff pages (web/staff.py): triage inbox, dashboard (党建地图), its heat points and CSV
    "pages.staff": {
        "admin": "all",
        "planner": "all",
        "street_staff": "subtree",
        "community_staff": "subtree",
    },
    "staff.export": {
        "admin": "all",
        "planner": "all",
        "street_staff": "subtree",
        "community_staff": "subtree",
    },
    # planners redraw grids (layers/drafts): drafts are private to their planner
    "drafts.create": {"planner": "all", "admin": "all"},
    "drafts.read": {"planner": "all", "admin": "all"},
    "drafts.edit": {"planner": "all", "admin": "all"},
    "drafts.publish": {"planner": "all", "admin": "all"},
    "drafts.history": {"planner": "all", "admin": "all"},
    # the planner map (web/planner.py) and the grids of any past generation it compares
    "pages.planner": {"planner": "all", "admin": "all"},
    "generations.read": {"planner": "all", "admin": "all"},
    # the intake bench's floor endpoint (web/bench_floor.py): routed only when
    # MINQING_BENCH_FLOOR=1, never in production
    "bench.floor": {ANONYMOUS: "all"},
}

# Whose staff inbox holds which owner levels (DESIGN §3: escalation goes grid → … → district).
INBOX_LEVELS: dict[str, tuple[str, ...]] = {
    "community_staff": ("community",),
    "street_staff": ("street",),
    "admin": ("community", "street", "district"),
    "planner": ("community", "street", "district"),
}


def inbox_levels(roles: frozenset[str]) -> list[str]:
    """The owner levels a staff inbox of ``roles`` holds."""
    return sorted({lv for r in roles for lv in INBOX_LEVELS.get(r, ())})


def can_hand_off(roles: frozenset[str]) -> bool:
    """Whether ``roles`` may send triaged work to a grid (the inbox's acting roles): read
    from the ``requests.assign`` row, not listed again."""
    return bool(roles & set(PERMISSIONS["requests.assign"]))


# Who sees names and phones unmasked (DESIGN: the assignee, the grid's leader, staff above).
PII_VISIBLE_ROLES = frozenset({"admin", "street_staff", "community_staff", "grid_leader"})


@dataclass(frozen=True)
class Binding:
    role: str
    area_id: int | None = None
    grid_code: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who is asking: an account with its role bindings, or anonymous (user_id None)."""

    user_id: int | None = None
    username: str | None = None
    bindings: tuple[Binding, ...] = field(default_factory=tuple)

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(b.role for b in self.bindings)


@dataclass(frozen=True)
class Grant:
    """What an allowed principal may reach for one action.

    Names and phones are unmasked per role binding, not per account: ``pii`` unmasks all the
    grant reaches (an ``all`` binding of a role in ``PII_VISIBLE_ROLES``); otherwise only the
    subtrees ``pii_area_ids`` and grids ``pii_grid_codes`` of the bindings whose role may see
    them. A community's staff who is also a grid member elsewhere sees names in the community
    and masks in the other grid."""

    everything: bool = False
    area_ids: frozenset[int] = frozenset()  # roots of subtrees
    grid_codes: frozenset[str] = frozenset()
    own: bool = False
    pii: bool = False
    pii_area_ids: frozenset[int] = frozenset()
    pii_grid_codes: frozenset[str] = frozenset()

    def unmasked(self) -> Grant:
        """The part of this grant that sees names and phones (all of it with ``pii``)."""
        if self.pii:
            return Grant(
                everything=self.everything,
                area_ids=self.area_ids,
                grid_codes=self.grid_codes,
                pii=True,
            )
        return Grant(area_ids=self.pii_area_ids, grid_codes=self.pii_grid_codes, pii=True)


def grant_for(action: str, principal: Principal) -> Grant | None:
    """The principal's grant for ``action``, or None when not allowed at all."""
    try:
        table = PERMISSIONS[action]
    except KeyError:
        raise KeyError(f"action {action!r} has no row in the permission table") from None
    if ANONYMOUS in table:
        return Grant(everything=True, pii=bool(principal.roles & PII_VISIBLE_ROLES))
    if not principal.authenticated:
        return None
    if AUTHENTICATED in table:
        return Grant(own=True)
    everything, own, pii_everywhere = False, False, False
    areas: set[int] = set()
    grids: set[str] = set()
    pii_areas: set[int] = set()
    pii_grids: set[str] = set()
    for b in principal.bindings:
        scope = table.get(b.role)
        shown = b.role in PII_VISIBLE_ROLES  # this binding sees names within its own reach
        if scope == "all":
            everything = True
            pii_everywhere = pii_everywhere or shown
        elif scope == "subtree" and b.area_id is not None:
            areas.add(b.area_id)
            if shown:
                pii_areas.add(b.area_id)
        elif scope == "grids" and b.grid_code is not None:
            grids.add(b.grid_code)
            if shown:
                pii_grids.add(b.grid_code)
        elif scope == "self":
            own = True
    if not (everything or areas or grids or own):
        return None
    return Grant(
        everything=everything,
        area_ids=frozenset(areas),
        grid_codes=frozenset(grids),
        own=own,
        pii=pii_everywhere,
        pii_area_ids=frozenset(pii_areas),
        pii_grid_codes=frozenset(pii_grids),
    )
