"""Serving: gunicorn with the app, the secret key it needs, and the deadline job the
master runs on a timer (``minqing serve`` / ``minqing demo``; ``minqing escalate`` runs one
cycle of the same job)."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import socket
import threading

import click
from sqlalchemy.orm import Session

from layers.config import Settings
from layers.db import Database
from web.log_redaction import RedactingGunicornLogger

logger = logging.getLogger(__name__)


def secret_key(settings: Settings) -> str:
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
