"""``minqing users``: accounts, role bindings and building leaders."""

from __future__ import annotations

import logging

import click

from web.cli_context import Context, pass_ctx, run_service

logger = logging.getLogger(__name__)


# -- users --------------------------------------------------------------------------------
@click.group()
def users() -> None:
    """Accounts and role bindings."""


@users.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", "display_name", default=None, help="Display name (姓名).")
@click.option("--phone", default=None)
@pass_ctx
def users_create(
    c: Context, username: str, password: str, display_name: str | None, phone: str | None
) -> None:
    """Create an account."""
    from layers.auth.service import create_user

    run_service(
        c,
        create_user,
        username=username,
        password=password,
        display_name=display_name,
        phone=phone,
    )
    click.echo(f"created {username}")


@users.command("bind")
@click.argument("username")
@click.argument("role")
@click.option("--area", "area_code", default=None, help="Area code (street / community).")
@click.option("--grid", "grid_code", default=None, help="15-digit grid code.")
@pass_ctx
def users_bind(
    c: Context, username: str, role: str, area_code: str | None, grid_code: str | None
) -> None:
    """Give USERNAME the ROLE over an area, a grid or everything."""
    from layers.auth.service import bind_role

    run_service(
        c, bind_role, username=username, role=role, area_code=area_code, grid_code=grid_code
    )
    click.echo(f"bound {username} as {role}")


@users.command("deactivate")
@click.argument("username")
@pass_ctx
def users_deactivate(c: Context, username: str) -> None:
    """Deactivate an account (its sessions and tokens stop working)."""
    from layers.auth.service import set_active

    run_service(c, set_active, username=username, active=False)
    click.echo(f"deactivated {username}")


@users.command("activate")
@click.argument("username")
@pass_ctx
def users_activate(c: Context, username: str) -> None:
    """Reactivate an account."""
    from layers.auth.service import set_active

    run_service(c, set_active, username=username, active=True)
    click.echo(f"activated {username}")


@users.command("reset-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@pass_ctx
def users_reset_password(c: Context, username: str, password: str) -> None:
    """Set a new password; earlier tokens are revoked."""
    from layers.auth.service import reset_password

    run_service(c, reset_password, username=username, password=password)
    click.echo(f"password reset for {username}")


@users.command("building-leader")
@click.argument("building_code")
@click.argument("username", required=False)
@pass_ctx
def users_building_leader(c: Context, building_code: str, username: str | None) -> None:
    """Link BUILDING_CODE's leader (楼栋长) to the account USERNAME, so that they may publish
    a public contact (no USERNAME: unlink)."""
    from layers.contacts.service import set_building_leader

    run_service(c, set_building_leader, building_code=building_code, username=username)
    click.echo(f"{building_code}: leader {username or '(none)'}")


@users.command("list")
@pass_ctx
def users_list(c: Context) -> None:
    """List accounts with their roles."""
    from layers.auth.service import list_users

    for user, bindings in run_service(c, list_users):
        roles = ", ".join(
            b.role_code
            + (f"@{b.grid_code}" if b.grid_code else "")
            + (f"@area:{b.area_id}" if b.area_id else "")
            for b in bindings
        )
        state = "" if user.active else " (inactive)"
        click.echo(f"{user.username}{state}\t{user.display_name}\t{roles}")
