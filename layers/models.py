"""Every mapped class, imported once so ``Base.metadata`` is complete (Alembic, tests)."""

from layers.areas.models import Area
from layers.auth.models import AuthSession, LoginEvent, LoginThrottle, Role, RoleBinding, User
from layers.base import Base
from layers.buildings.models import Building
from layers.circles.models import ServiceCircle
from layers.contacts.models import PublicContact
from layers.drafts.models import AuditEntry, DraftGrid, GridDraft
from layers.grids.models import Generation, Grid
from layers.network.models import NetworkEdge, NetworkNode, NetworkVersion
from layers.ratelimits.models import RateLimit
from layers.requests.models import (
    IdempotencyKey,
    Notification,
    Request,
    RequestEvent,
    RequestOffer,
)
from layers.venues.models import Venue
from layers.volunteers.models import Volunteer

__all__ = [
    "Area",
    "AuditEntry",
    "AuthSession",
    "Base",
    "Building",
    "DraftGrid",
    "Generation",
    "Grid",
    "GridDraft",
    "IdempotencyKey",
    "LoginEvent",
    "LoginThrottle",
    "NetworkEdge",
    "NetworkNode",
    "NetworkVersion",
    "Notification",
    "PublicContact",
    "RateLimit",
    "Request",
    "RequestEvent",
    "RequestOffer",
    "Role",
    "RoleBinding",
    "ServiceCircle",
    "User",
    "Venue",
    "Volunteer",
]
