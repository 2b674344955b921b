"""Settings shared by the CLI, the web app and the tests, read from the environment once."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """Runtime configuration; pass a modified copy (``with_``) instead of mutating globals."""

    database_url: str | None = None  # the app's role: owns nothing, holds grants
    migration_database_url: str | None = None  # the schema owner's: migrations only
    project_root: Path = PROJECT_ROOT
    timezone: str = "Asia/Shanghai"
    secret_key: str | None = None  # no fallback: create_app refuses to start without one
    default_locale: str = "zh-CN"
    basemap: str = "none"  # none | osm | tianditu | amap
    tianditu_key: str = ""
    api_max_limit: int = 1000
    api_default_limit: int = 100
    bbox_max_deg: float = 2.0
    max_body_bytes: int = 1_000_000
    token_max_age_s: int = 7 * 24 * 3600
    # walking network (一刻钟服务圈): speed 1.2 m/s = 72 m/min; points farther than the snap
    # limit from any path are refused (API) or fall back to straight lines (circles, offers)
    walk_speed_m_per_s: float = 1.2
    walk_snap_limit_m: float = 250.0
    circle_width_m: float = 50.0
    circle_budget_cap_m: float = 5000.0
    # the assignee sees the resident's name and phone until this many days after closure
    assignee_pii_days: float = 7.0
    # signed-in browser sessions (layers/auth/sessions.py): ended after this long without a
    # request, and after this long whatever happens
    session_idle_s: float = 8 * 3600
    session_max_age_s: float = 24 * 3600
    # failed logins (layers/auth/login.py): per account, the first few are free, then each
    # waits twice as long as the last (capped: a delay, never a lock); per address, at most
    # so many failures in a window
    login_free_failures: int = 3
    login_delay_base_s: float = 1.0
    login_delay_max_s: float = 300.0
    login_address_failures: int = 30
    login_address_window_s: float = 900.0
    extra: dict[str, str] = field(default_factory=dict)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from ``MINQING_*`` variables, ``DATABASE_URL`` and
    ``MIGRATION_DATABASE_URL``."""
    env = os.environ if environ is None else environ
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        migration_database_url=env.get("MIGRATION_DATABASE_URL") or None,
        timezone=env.get("MINQING_TIMEZONE", "Asia/Shanghai"),
        secret_key=env.get("MINQING_SECRET_KEY") or None,
        default_locale=env.get("MINQING_LOCALE", "zh-CN"),
        basemap=env.get("MINQING_BASEMAP", "none"),
        tianditu_key=env.get("MINQING_TIANDITU_KEY", ""),
        assignee_pii_days=float(env.get("MINQING_ASSIGNEE_PII_DAYS", "7")),
        session_idle_s=float(env.get("MINQING_SESSION_IDLE_S", 8 * 3600)),
        session_max_age_s=float(env.get("MINQING_SESSION_MAX_AGE_S", 24 * 3600)),
        login_delay_max_s=float(env.get("MINQING_LOGIN_DELAY_MAX_S", 300)),
        login_address_failures=int(env.get("MINQING_LOGIN_ADDRESS_FAILURES", 30)),
    )
