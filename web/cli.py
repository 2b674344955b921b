"""The ``minqing`` command: database, migrations, demo, imports, users, serving."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path

import click
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from layers.config import PROJECT_ROOT, Settings, settings_from_env
from layers.db import Database, check_reachable, migrate
from layers.embedded import APP_ROLE, EmbeddedCluster, EmbeddedError
from layers.errors import MinqingError
from web.log_redaction import RedactingGunicornLogger, redact_root_handlers

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """民情 Minqing: GIS grid management for urban communities."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact_root_handlers()  # a request's path may hold a resident's ticket
    ctx.obj = Context(settings_from_env())


# -- database -----------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The embedded PostgreSQL + PostGIS cluster (ignored when DATABASE_URL is set)."""


_owner_option = click.option(
    "--owner", is_flag=True, help="The schema owner's URL (migrations) instead of the app's."
)


@db.command("up")
@_owner_option
@pass_ctx
def db_up(c: Context, owner: bool) -> None:
    """Create (once) and start the cluster; print the app's URL."""
    click.echo(c.require_migration_url() if owner else c.database_url())


@db.command("down")
@pass_ctx
def db_down(c: Context) -> None:
    """Stop the embedded cluster."""
    if c.settings.database_url:
        click.echo("DATABASE_URL is set: nothing to stop.")
        return
    click.echo("stopped" if c.cluster.down() else "not running")


@db.command("url")
@_owner_option
@pass_ctx
def db_url(c: Context, owner: bool) -> None:
    """Print the app's database URL (starting the embedded cluster if needed)."""
    click.echo(c.require_migration_url() if owner else c.database_url())


@main.command("migrate")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def migrate_cmd(c: Context, revision: str) -> None:
    """Upgrade the schema to REVISION as its owner (MIGRATION_DATABASE_URL) and give the app's
    role (DATABASE_URL) its grants."""
    migrate(c.require_migration_url(), revision, app_role=c.app_role())
    click.echo(f"schema at {revision}")


# -- users --------------------------------------------------------------------------------
@main.group()
def users() -> None:
    """Accounts and role bindings."""


def _run_service(c: Context, fn, **kw):
    database = c.database()
    try:
        with database.session() as s:
            return fn(session=s, **kw)
    except MinqingError as exc:
        raise click.ClickException(exc.message("en")) from exc
    finally:
        database.engine.dispose()


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

    _run_service(
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

    _run_service(
        c, bind_role, username=username, role=role, area_code=area_code, grid_code=grid_code
    )
    click.echo(f"bound {username} as {role}")


@users.command("deactivate")
@click.argument("username")
@pass_ctx
def users_deactivate(c: Context, username: str) -> None:
    """Deactivate an account (its sessions and tokens stop working)."""
    from layers.auth.service import set_active

    _run_service(c, set_active, username=username, active=False)
    click.echo(f"deactivated {username}")


@users.command("activate")
@click.argument("username")
@pass_ctx
def users_activate(c: Context, username: str) -> None:
    """Reactivate an account."""
    from layers.auth.service import set_active

    _run_service(c, set_active, username=username, active=True)
    click.echo(f"activated {username}")


@users.command("reset-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@pass_ctx
def users_reset_password(c: Context, username: str, password: str) -> None:
    """Set a new password; earlier tokens are revoked."""
    from layers.auth.service import reset_password

    _run_service(c, reset_password, username=username, password=password)
    click.echo(f"password reset for {username}")


@users.command("building-leader")
@click.argument("building_code")
@click.argument("username", required=False)
@pass_ctx
def users_building_leader(c: Context, building_code: str, username: str | None) -> None:
    """Link BUILDING_CODE's leader (楼栋长) to the account USERNAME, so that they may publish
    a public contact (no USERNAME: unlink)."""
    from layers.contacts.service import set_building_leader

    _run_service(c, set_building_leader, building_code=building_code, username=username)
    click.echo(f"{building_code}: leader {username or '(none)'}")


@users.command("list")
@pass_ctx
def users_list(c: Context) -> None:
    """List accounts with their roles."""
    from layers.auth.service import list_users

    for user, bindings in _run_service(c, list_users):
        roles = ", ".join(
            b.role_code
            + (f"@{b.grid_code}" if b.grid_code else "")
            + (f"@area:{b.area_id}" if b.area_id else "")
            for b in bindings
        )
        state = "" if user.active else " (inactive)"
        click.echo(f"{user.username}{state}\t{user.display_name}\t{roles}")


# -- serving ------------------------------------------------------------------------------
def _secret_key(settings: Settings) -> str:
    """MINQING_SECRET_KEY, or one generated once and kept under var/ (shared by workers,
    readable by this user only): ``serve`` and ``demo`` never run on a key anyone knows."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.project_root / "var" / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    key = path.read_text().strip()
    if not key:
        raise click.ClickException(f"{path} is empty: remove it or set MINQING_SECRET_KEY")
    return key


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"port {port} on {host} is already in use ({exc.strerror}); is another "
                f"`minqing serve` running? Choose another port with --port."
            ) from exc


JOB_APPLICATION_NAME = "minqing-deadline-job"  # how the job's connection shows in pg_stat_activity


def deadline_cycle(*, session: Session) -> dict[str, int]:
    """One cycle of the deadline job: escalate what is overdue, auto-close what was never
    rated, purge old idempotency keys and ended rate-limit windows, and re-home requests a
    publish raced with."""
    from layers.drafts.publish import rehome_stragglers
    from layers.ratelimits.service import purge_expired
    from layers.requests.service import run_escalations

    counts = run_escalations(session=session)
    counts["rehomed"] = rehome_stragglers(session=session)["count"]
    counts["expired_rate_limits"] = purge_expired(session=session)
    return counts


def deadline_timer(database_url: str, every_s: float) -> threading.Event:
    """Run the deadline job every ``every_s`` seconds in a daemon thread; set the event to
    stop. The job is idempotent, so a second server doing the same is harmless."""
    stop = threading.Event()

    def loop() -> None:
        # One connection, pinged at each checkout: after a database restart (or the backend
        # being terminated) the dead connection is replaced before the cycle, not by failing it.
        database = Database.from_url(
            database_url,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "application_name": JOB_APPLICATION_NAME},
        )
        while not stop.wait(every_s):
            try:
                with database.session() as s:
                    counts = deadline_cycle(session=s)
                if any(counts.values()):
                    logger.info("deadline job: %s", counts)
            except Exception:  # keep the timer alive through a database restart
                logger.exception("deadline job failed; retrying in %s s", every_s)
        database.engine.dispose()

    threading.Thread(target=loop, name="minqing-deadline-job", daemon=True).start()
    return stop


def run_gunicorn(
    settings: Settings, *, host: str, port: int, workers: int, escalate_every_s: float = 60.0
) -> None:
    """Serve the app under gunicorn until interrupted; each worker builds its own engine.

    The master also runs the deadline job on a timer (``escalate_every_s``; 0 turns it off).
    """
    from gunicorn.app.base import BaseApplication

    from web import create_app

    def when_ready(_server: object) -> None:
        if escalate_every_s > 0 and settings.database_url:
            deadline_timer(settings.database_url, escalate_every_s)

    def post_worker_init(worker: object) -> None:
        """Warm the worker's offer caches (walking graph, volunteer snaps) before it serves."""
        from layers.requests.offers import warm_caches

        try:
            with worker.wsgi.extensions["minqing.db"].session() as session:  # type: ignore[attr-defined]
                warm_caches(session=session)
        except Exception:  # a cold cache is slower, not wrong: serve anyway
            logger.exception("warming the offer caches failed")
        # The app, graph and caches live as long as the worker: keep them out of the cyclic
        # garbage collector, whose full passes over them stalled requests for ~100 ms.
        gc.freeze()

    class _Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            # tickets in /t/<ticket> and /api/v1/tickets/<ticket> are logged as <ticket:hash>
            self.cfg.set("logger_class", RedactingGunicornLogger)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("when_ready", when_ready)
            self.cfg.set("post_worker_init", post_worker_init)

        def load(self):
            return create_app(settings)

    ensure_port_free(host, port)
    click.echo(f"Minqing on http://{host}:{port}/  (Ctrl-C to stop)")
    _Server().run()


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--escalate-every",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between runs of the deadline job (0: off, e.g. when cron runs it).",
)
@pass_ctx
def serve(c: Context, host: str, port: int, workers: int, escalate_every: float) -> None:
    """Run the web app under gunicorn."""
    ensure_port_free(host, port)
    url = c.database_url()
    owner_url = c.migration_url()
    if owner_url is not None:
        migrate(owner_url, app_role=c.app_role())
    else:
        logger.info("no MIGRATION_DATABASE_URL: serving the schema as it is (minqing migrate)")
    settings = c.settings.with_(database_url=url, secret_key=_secret_key(c.settings))
    run_gunicorn(settings, host=host, port=port, workers=workers, escalate_every_s=escalate_every)


@main.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-serve", is_flag=True, help="Load the demo district and exit.")
@pass_ctx
def demo(c: Context, host: str, port: int, workers: int, no_serve: bool) -> None:
    """Start the database, load the demo district and serve it; Ctrl-C stops everything."""
    if not no_serve:
        ensure_port_free(host, port)
    started_here = not c.settings.database_url and c.cluster.running_pid() is None
    owner_pid = os.getpid()  # gunicorn forks workers inside this frame: only we stop the db
    url = c.database_url()
    try:
        owner_url = c.require_migration_url()
        migrate(owner_url, app_role=c.app_role())
        _load_demo(owner_url)  # a setup step, like the migrations: as the owner
        if no_serve:
            return
        settings = c.settings.with_(database_url=url, secret_key=_secret_key(c.settings))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        run_gunicorn(settings, host=host, port=port, workers=workers)
    finally:
        if started_here and not no_serve and os.getpid() == owner_pid:
            c.cluster.down()
            click.echo("database stopped")


def _load_demo(url: str) -> None:
    try:
        from data.demo import load_demo
    except ImportError:
        click.echo("demo district builder not available yet: serving an empty district")
        return
    database = Database.from_url(url)
    try:
        summary = load_demo(database=database)
        click.echo(f"demo district ready: {summary}")
    finally:
        database.engine.dispose()


# -- imports (filled by the importers) ------------------------------------------------------
@main.group("import")
def import_group() -> None:
    """Import OSM, GeoJSON / GeoPackage / Shapefile / CSV files and requests."""


_progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar (default: when stderr is a terminal).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
_crs_option = click.option(
    "--crs", default=None, help="Source CRS: EPSG:xxxx | wgs84 | gcj02 | bd09."
)


def _echo_report(report, as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        click.echo(report.format())


@import_group.command("osm")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_progress_option
@_json_option
@pass_ctx
def import_osm_cmd(c: Context, path: Path, progress: bool | None, as_json: bool) -> None:
    """Buildings, venues and the walking network from an OSM file (.osm / .osm.pbf)."""
    from layers.importers.service import import_osm

    _echo_report(_run_service(c, import_osm, path=path, progress=progress), as_json)


@import_group.command("file")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--layer",
    required=True,
    help="areas | grids | buildings | venues | volunteers | network.",
)
@_crs_option
@click.option("--lon-col", default=None, help="CSV longitude column (found by name if absent).")
@click.option("--lat-col", default=None, help="CSV latitude column (found by name if absent).")
@click.option("--code-col", default=None, help="Column holding codes (areas, grids, buildings).")
@click.option("--name-col", default=None, help="Column holding names.")
@click.option("--source-layer", default=None, help="Layer inside a GeoPackage.")
@click.option("--snap-m", default=0.5, show_default=True, type=click.FloatRange(min=0))
@click.option(
    "--tolerance-m",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="How far (m) an area / grid may stick out of its parent.",
)
@_progress_option
@_json_option
@pass_ctx
def import_file_cmd(
    c: Context,
    path: Path,
    layer: str,
    crs: str | None,
    lon_col: str | None,
    lat_col: str | None,
    code_col: str | None,
    name_col: str | None,
    source_layer: str | None,
    snap_m: float,
    tolerance_m: float,
    progress: bool | None,
    as_json: bool,
) -> None:
    """GeoJSON / GeoPackage / Shapefile (.shp or .zip) / CSV into a layer, converted to WGS84."""
    from layers.importers.service import import_file

    report = _run_service(
        c,
        import_file,
        path=path,
        layer=layer,
        crs=crs,
        lon_col=lon_col,
        lat_col=lat_col,
        code_col=code_col,
        name_col=name_col,
        source_layer=source_layer,
        snap_m=snap_m,
        tolerance_m=tolerance_m,
        progress=progress,
    )
    _echo_report(report, as_json)


@import_group.command("network")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_crs_option
@click.option(
    "--snap-m",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Line ends closer than this (m) become one node.",
)
@click.option("--source-layer", default=None, help="Layer inside a GeoPackage.")
@_progress_option
@_json_option
@pass_ctx
def import_network_cmd(
    c: Context,
    path: Path,
    crs: str | None,
    snap_m: float,
    source_layer: str | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """A road-line file as the walking network (replaces the current one as a new version)."""
    from layers.importers.service import import_network

    report = _run_service(
        c,
        import_network,
        path=path,
        crs=crs,
        snap_m=snap_m,
        source_layer=source_layer,
        progress=progress,
    )
    _echo_report(report, as_json)


@import_group.command("requests")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_crs_option
@click.option("--lon-col", default=None, help="CSV longitude column (found by name if absent).")
@click.option("--lat-col", default=None, help="CSV latitude column (found by name if absent).")
@click.option("--strict", is_flag=True, help="Refuse the whole file if any row cannot be imported.")
@_json_option
@pass_ctx
def import_requests_cmd(
    c: Context,
    path: Path,
    crs: str | None,
    lon_col: str | None,
    lat_col: str | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Historical requests (CSV / GeoJSON: lon, lat, category, text, created_at[, status,
    resolved_at, closed_at, rating]) with their events, in one transaction; re-runs skip the
    rows already imported."""
    from layers.importers.requests_bulk import import_requests

    report = _run_service(
        c,
        import_requests,
        path=path,
        crs=crs,
        lon_col=lon_col,
        lat_col=lat_col,
        tz=c.settings.timezone,
        strict=strict,
    )
    _echo_report(report, as_json)


def project_root() -> Path:
    return PROJECT_ROOT


# -- the pipeline's deadline job --------------------------------------------------------------
@main.command("escalate")
@pass_ctx
def escalate_cmd(c: Context) -> None:
    """Run the deadline job once: escalate overdue requests one level, auto-close resolved
    requests unrated for 7 days. Idempotent; safe from cron every minute."""
    counts = _run_service(c, deadline_cycle)
    click.echo(
        f"escalated {counts['escalated']}, auto-closed {counts['auto_closed']}, "
        f"expired idempotency keys {counts['expired_keys']}, re-homed {counts['rehomed']}"
    )


# -- 一刻钟服务圈 ------------------------------------------------------------------------------
@main.group("circles")
def circles_group() -> None:
    """Walking-network service circles and coverage of required facilities."""


@circles_group.command("build")
@click.option("--category", default=None, help="Venue category code (default: all required).")
@click.option("--tier", default=None, help="Life-circle tier, e.g. 15min (default: all).")
@click.option(
    "--unit",
    type=click.Choice(["m", "min"]),
    default="m",
    show_default=True,
    help="Budgets from the catalogue's metres, or the tier's minutes x walking speed.",
)
@pass_ctx
def circles_build(c: Context, category: str | None, tier: str | None, unit: str) -> None:
    """Rebuild the walking graph and the stored service circles."""
    from layers.circles.graph_cache import rebuild
    from layers.circles.service import build_circles

    def run(*, session):
        rebuild(session)
        return build_circles(session, category=category, tier=tier, unit=unit, settings=c.settings)

    summary = _run_service(c, run)
    click.echo(
        f"{summary['circles']} circles ({summary['network']} network, {summary['buffer']} "
        f"buffer) on network version {summary['network_version']}"
    )


@circles_group.command("coverage")
@click.option("--level", type=click.Choice(["grid", "community", "street"]), default="community")
@click.option("--category", default=None)
@click.option("--tier", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def circles_coverage(
    c: Context, level: str, category: str | None, tier: str | None, as_json: bool
) -> None:
    """Shares of homes and households with each required facility within each tier."""
    import json

    from layers.coverage.service import coverage

    rows = _run_service(c, coverage, level=level, category=category, tier=tier, settings=c.settings)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    click.echo("level\tcode\tname\tcategory\ttier\tbuildings\tcovered\thouseholds\tcovered")
    for r in rows:
        share_b = "-" if r["buildings_share"] is None else f"{100 * r['buildings_share']:.1f}%"
        share_h = "-" if r["households_share"] is None else f"{100 * r['households_share']:.1f}%"
        click.echo(
            f"{r['level']}\t{r['code']}\t{r['name']}\t{r['category']}\t{r['tier']}\t"
            f"{r['buildings']}\t{share_b}\t{r['households']}\t{share_h}"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
