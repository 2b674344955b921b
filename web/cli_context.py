"""What every ``minqing`` command shares: the resolved settings and database URLs
(``Context``, passed with ``pass_ctx``) and running a service function in one session."""

from __future__ import annotations

import logging

import click
from sqlalchemy.engine import make_url

from layers.config import Settings
from layers.db import Database, check_reachable
from layers.embedded import APP_ROLE, EmbeddedCluster, EmbeddedError
from layers.errors import MinqingError

logger = logging.getLogger(__name__)


class Context:
    """Resolved settings plus, when we started it, the embedded cluster to stop later.

    Two URLs (issue 16, least privilege): the app's (``DATABASE_URL``, or the embedded
    cluster's ``minqing_app``), a role that owns nothing, for serving and every service
    command; and the schema owner's (``MIGRATION_DATABASE_URL``, or the embedded cluster's
    ``minqing_owner``) for migrations and the demo load only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster = EmbeddedCluster(settings.project_root)
        self._cluster_up = False

    def _embedded(self, start: bool) -> None:
        if start and not self._cluster_up:
            try:
                self.cluster.up()
            except EmbeddedError as exc:
                raise click.ClickException(str(exc)) from exc
            self._cluster_up = True

    def database_url(self, *, start: bool = True) -> str:
        """The app's URL: DATABASE_URL if set (checked reachable), else the embedded
        cluster's app role."""
        if self.settings.database_url:
            url, where = self.settings.database_url, "DATABASE_URL"
        else:
            self._embedded(start)
            url, where = self._cluster_url(self.cluster.app_url), "the embedded database"
        return _reachable(url, where)

    def migration_url(self, *, start: bool = True) -> str | None:
        """The schema owner's URL: MIGRATION_DATABASE_URL if set, else the embedded
        cluster's owner role; None when only DATABASE_URL is set (the app's role cannot
        migrate)."""
        if self.settings.migration_database_url:
            url, where = self.settings.migration_database_url, "MIGRATION_DATABASE_URL"
        elif self.settings.database_url:
            return None
        else:
            self._embedded(start)
            url, where = self._cluster_url(self.cluster.owner_url), "the embedded database"
        return _reachable(url, where)

    def require_migration_url(self) -> str:
        url = self.migration_url()
        if url is None:
            raise click.ClickException(
                "MIGRATION_DATABASE_URL is not set: migrations run as the schema's owner, while"
                " DATABASE_URL is the app's role, which owns nothing. Set MIGRATION_DATABASE_URL"
                " (on a server with one role only, to the same URL as DATABASE_URL)."
            )
        return url

    def app_role(self) -> str:
        """The role the app connects as, which the migrations grant to."""
        if self.settings.database_url:
            return str(make_url(self.settings.database_url).username)
        return APP_ROLE

    def _cluster_url(self, fn) -> str:
        try:
            return fn()
        except EmbeddedError as exc:
            raise click.ClickException(str(exc)) from exc

    def database(self) -> Database:
        return Database.from_url(self.database_url())


def _reachable(url: str, where: str) -> str:
    try:
        check_reachable(url)
    except MinqingError as exc:
        raise click.ClickException(
            f"cannot reach {where} ({_redact(url)}): {exc.details.get('reason', exc)}"
        ) from exc
    return url


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


pass_ctx = click.make_pass_decorator(Context)


def run_service(c: Context, fn, **kw):
    database = c.database()
    try:
        with database.session() as s:
            return fn(session=s, **kw)
    except MinqingError as exc:
        raise click.ClickException(exc.message("en")) from exc
    finally:
        database.engine.dispose()
