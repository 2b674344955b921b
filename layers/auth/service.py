"""Accounts and role bindings. Keyword-only functions; each owns its transaction."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from layers.areas.models import Area
from layers.auth.models import Role, RoleBinding, User
from layers.auth.permissions import Binding, Principal
from layers.errors import BadRequest, Conflict, NotFound
from layers.grids.models import Grid

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8


def check_new_password(password: str) -> None:
    """400 ``password_too_short`` unless ``password`` is long enough for a new password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest("password_too_short", min=MIN_PASSWORD_LENGTH)


def get_user(*, session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound("unknown_user", username=username)
    return user


def create_user(
    *,
    session: Session,
    username: str,
    password: str,
    display_name: str | None = None,
    phone: str | None = None,
) -> User:
    """Create an account with a hashed password."""
    check_new_password(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict("user_exists", username=username)
    user = User(
        username=username,
        password_hash=generate_password_hash(password),
        display_name=display_name or username,
        phone=phone,
    )
    session.add(user)
    session.commit()
    logger.info("created user %s", username)
    return user


def bind_role(
    *,
    session: Session,
    username: str,
    role: str,
    area_code: str | None = None,
    grid_code: str | None = None,
) -> RoleBinding:
    """Give ``username`` a role over an area (subtree), a grid (by code) or everything."""
    user = get_user(session=session, username=username)
    role_row = session.get(Role, role)
    if role_row is None:
        available = ", ".join(session.scalars(select(Role.code).order_by(Role.code)))
        raise BadRequest("unknown_role", role=role, available=available)
    area_id = None
    if role_row.scope_kind == "area":
        if area_code is None:
            raise BadRequest("scope_mismatch", role=role, scope="area (--area CODE)")
        area_id = session.scalar(select(Area.id).where(Area.code == area_code))
        if area_id is None:
            raise NotFound("unknown_area", code=area_code)
    elif role_row.scope_kind == "grid":
        if grid_code is None:
            raise BadRequest("scope_mismatch", role=role, scope="grid (--grid CODE)")
        if session.scalar(select(Grid.id).where(Grid.code == grid_code).limit(1)) is None:
            raise NotFound("unknown_grid", code=grid_code)
    elif area_code or grid_code:
        raise BadRequest("scope_mismatch", role=role, scope="nothing (global role)")
    binding = session.scalar(
        select(RoleBinding).where(
            RoleBinding.user_id == user.id,
            RoleBinding.role_code == role,
            RoleBinding.area_id.is_(None) if area_id is None else RoleBinding.area_id == area_id,
            RoleBinding.grid_code.is_(None)
            if grid_code is None
            else RoleBinding.grid_code == grid_code,
        )
    )
    if binding is None:
        binding = RoleBinding(
            user_id=user.id,
            role_code=role,
            area_id=area_id,
            grid_code=grid_code if role_row.scope_kind == "grid" else None,
        )
        session.add(binding)
    session.commit()
    return binding


def set_active(*, session: Session, username: str, active: bool) -> User:
    """Deactivate (or reactivate) an account; its tokens stop working at once."""
    user = get_user(session=session, username=username)
    user.active = active
    user.token_version += 1
    session.commit()
    return user


def reset_password(*, session: Session, username: str, password: str) -> User:
    """Set a new password and invalidate every token issued before."""
    check_new_password(password)
    user = get_user(session=session, username=username)
    user.password_hash = generate_password_hash(password)
    user.token_version += 1
    session.commit()
    return user


def load_principal(*, session: Session, user_id: int, token_version: int) -> Principal | None:
    """The principal for a session or token, or None if the account changed since."""
    user = session.get(User, user_id)
    if user is None or not user.active or user.token_version != token_version:
        return None
    principal = _principal(session, user)
    # the request's own principal, read again by what its answer offers (principal_of)
    session.info.setdefault(_PRINCIPALS, {})[user.id] = principal
    return principal


def principal_of(*, session: Session, user_id: int) -> Principal | None:
    """The principal of an active account as it is now (its role bindings), or None; for
    layers that know only the acting user's id (what a request's detail offers them). The
    signed-in principal of a web request is not read twice (``load_principal`` keeps it)."""
    cached = session.info.get(_PRINCIPALS, {}).get(user_id)
    if cached is not None:
        return cached
    user = session.get(User, user_id)
    if user is None or not user.active:
        return None
    return _principal(session, user)


_PRINCIPALS = "minqing.principals"  # session.info key: principals read in this session


def _principal(session: Session, user: User) -> Principal:
    rows = session.execute(
        select(RoleBinding.role_code, RoleBinding.area_id, RoleBinding.grid_code).where(
            RoleBinding.user_id == user.id
        )
    ).all()
    return Principal(
        user_id=user.id,
        username=user.username,
        bindings=tuple(Binding(role=r, area_id=a, grid_code=g) for r, a, g in rows),
    )


def list_users(*, session: Session) -> list[tuple[User, list[RoleBinding]]]:
    users = session.scalars(select(User).order_by(User.username)).all()
    out = []
    for u in users:
        bindings = session.scalars(
            select(RoleBinding).where(RoleBinding.user_id == u.id).order_by(RoleBinding.id)
        ).all()
        out.append((u, list(bindings)))
    return out
