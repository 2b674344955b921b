"""One SQLAlchemy session per request, closed at teardown."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from layers.db import Database


def database() -> Database:
    return current_app.extensions["minqing.db"]


def db_session() -> Session:
    if "db_session" not in g:
        g.db_session = database().sessions()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        s.close()
