"""The ``minqing`` command: database, migrations, demo, imports, users, serving (the
gunicorn runner and the deadline job are ``web.serving``)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click

from layers.config import PROJECT_ROOT, settings_from_env
from layers.db import Database, migrate
from web.cli_context import Context, pass_ctx, run_service
from web.cli_users import users
from web.log_redaction import redact_root_handlers
from web.serving import deadline_cycle, ensure_port_free, run_gunicorn, secret_key

logger = logging.getLogger(__name__)


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


main.add_command(users)


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
    settings = c.settings.with_(database_url=url, secret_key=secret_key(c.settings))
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
        settings = c.settings.with_(database_url=url, secret_key=secret_key(c.settings))
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

    _echo_report(run_service(c, import_osm, path=path, progress=progress), as_json)


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

    report = run_service(
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

    report = run_service(
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

    report = run_service(
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
    counts = run_service(c, deadline_cycle)
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

    summary = run_service(c, run)
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

    rows = run_service(c, coverage, level=level, category=category, tier=tier, settings=c.settings)
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
