"""The actions bench's setup (not timed): the pool of requests, the accounts, their tokens.

1. ``submit_pool``: fresh requests submitted through the API (anonymous POST
   /api/v1/requests) at random points of the live grids, so each is ``assigned`` at the grid
   level with the offers intake made;
2. ``read_world``: what the plan chooses from (``bench.actions_plan.World``);
3. ``create_accounts``: the accounts the plan names — a grid leader per grid, community staff
   per community, one account per acting volunteer, linked to the volunteer's row — through
   ``layers.auth.service`` (``create_user``, ``bind_role``) with a one-round password hash,
   so thousands of accounts take seconds (a bench password, never a real one);
4. ``login``: a bearer token per account (POST /api/v1/auth/token);
5. ``preclaim``: the claims some units start from (resolve by the assignee, give_back, …).
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import shapely
from sqlalchemy import text
from werkzeug.security import generate_password_hash

from bench.actions_plan import Candidate, Plan, World, account_volunteer
from geo.assign import GridIndex
from layers.auth import service as auth_service
from layers.catalogues import request_categories
from layers.db import Database
from layers.grids.repo import LIVE_GRIDS

logger = logging.getLogger(__name__)

PASSWORD = "bench-password-1"
CHEAP_HASH = "pbkdf2:sha256:1"
TEXTS = ["楼道灯坏了好几天", "屋顶漏水需要维修", "独居老人需要定期探访", "单元门门禁损坏"]
TARGETS_PER_SKILL = 8  # hand-off targets kept per (community, category)

# (path, JSON body, bearer token or None)
Call = tuple[str, dict[str, Any], str | None]


def post_many(port: int, calls: list[Call], *, threads: int = 8) -> list[tuple[int, Any]]:
    """POST each call (JSON body, optional bearer token) from ``threads`` threads, each on
    its own connection; returns (status, decoded body) per call, in order."""
    local = threading.local()

    def one(call: Call) -> tuple[int, Any]:
        path, body, token = call
        headers = {"Content-Type": "application/json", "Accept-Language": "en"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("POST", path, json.dumps(body, ensure_ascii=False).encode(), headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                    local.conn = None
                return resp.status, (json.loads(data) if data else {})
            except (OSError, http.client.HTTPException):
                conn.close()
                local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, calls))


def pool_points(district: dict[str, Any], n: int, seed: int) -> np.ndarray:
    """``n`` (lon, lat) points uniformly in the live grids."""
    rng = np.random.default_rng([seed, 41])
    index = GridIndex(district["grid_geoms"], district["grid_codes"])
    x0, y0, x1, y1 = shapely.total_bounds(district["grid_geoms"])
    out: list[np.ndarray] = []
    got = 0
    while got < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(2 * (n - got) + 16, 2))
        xy = xy[index.assign(xy[:, 0], xy[:, 1]) >= 0][: n - got]
        out.append(xy)
        got += len(xy)
    return np.concatenate(out)


def submit_pool(port: int, district: dict[str, Any], n: int, seed: int) -> list[int]:
    """Submit ``n`` requests through the API; returns the ids of the 201s."""
    rng = np.random.default_rng([seed, 42])
    cats = [c.code for c in request_categories()]
    xy = pool_points(district, n, seed)
    calls: list[Call] = [
        (
            "/api/v1/requests",
            {
                "lon": float(x),
                "lat": float(y),
                "category": cats[int(rng.integers(len(cats)))],
                "text": TEXTS[int(rng.integers(len(TEXTS)))],
            },
            None,
        )
        for x, y in xy
    ]
    answers = post_many(port, calls)
    bad = [(s, d.get("error", {}).get("code")) for s, d in answers if s != 201]
    if bad:
        logger.warning("%d of %d pool submissions failed: %s", len(bad), n, bad[:5])
    return [int(d["id"]) for s, d in answers if s == 201]


def read_world(database: Database, request_ids: list[int]) -> World:
    """The pool as it stands (assigned at the grid level, with offers), the offered
    volunteers' free load slots, hand-off targets and live grids per community."""
    with database.session() as s:
        rows = s.execute(
            text(
                "SELECT r.id, g.code, a.code, r.category, coalesce(array_agg(o.volunteer_id"
                " ORDER BY o.rank) FILTER (WHERE o.volunteer_id IS NOT NULL), '{}')"
                " FROM requests r JOIN grids g ON g.id = r.grid_id"
                " JOIN areas a ON a.id = r.community_id"
                " LEFT JOIN request_offers o ON o.request_id = r.id"
                " WHERE r.id = ANY(:ids) AND r.status = 'assigned' AND r.owner_level = 'grid'"
                " AND r.assignee_id IS NULL GROUP BY r.id, g.code, a.code ORDER BY r.id"
            ),
            {"ids": request_ids},
        ).all()
        candidates = [Candidate(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]
        offered = sorted({v for c in candidates for v in c.offers})
        headroom = dict(
            s.execute(
                text(
                    "SELECT id, load_limit - active_load FROM volunteers"
                    " WHERE id = ANY(:ids) AND active AND user_id IS NULL"
                ),
                {"ids": offered},
            ).all()
        )
        communities = sorted({c.community_code for c in candidates})
        # always available, free, never offered a pool request: they only ever receive work
        target_rows = s.execute(
            text(
                "SELECT code, skill, id FROM (SELECT a.code, skill, v.id, row_number() OVER"
                " (PARTITION BY a.code, skill ORDER BY v.id) AS n FROM volunteers v"
                " JOIN areas a ON a.id = v.community_id, unnest(v.skills) AS skill"
                " WHERE a.code = ANY(:comms) AND v.active AND v.availability = '{}'::jsonb"
                " AND v.active_load < v.load_limit AND v.user_id IS NULL"
                " AND v.id NOT IN (SELECT unnest(CAST(:offered AS bigint[])))) t"
                " WHERE n <= :per ORDER BY code, skill, id"
            ),
            {"comms": communities, "offered": offered, "per": TARGETS_PER_SKILL},
        ).all()
        grid_rows = s.execute(
            text(
                "SELECT a.code, g.code FROM grids g JOIN areas a ON a.id = g.community_id"
                f" WHERE {LIVE_GRIDS} AND a.code = ANY(:comms) ORDER BY g.code"
            ),
            {"comms": communities},
        ).all()
    targets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for comm, skill, vid in target_rows:
        targets[(comm, skill)].append(vid)
    grids: dict[str, list[str]] = defaultdict(list)
    for comm, code in grid_rows:
        grids[comm].append(code)
    return World(candidates, headroom, dict(targets), dict(grids))


@contextmanager
def cheap_password_hash() -> Iterator[None]:
    """``create_user`` hashes with one PBKDF2 round inside this block (bench accounts only;
    the server checks whatever method the stored hash names)."""
    cheap = functools.partial(generate_password_hash, method=CHEAP_HASH)
    with mock.patch.object(auth_service, "generate_password_hash", cheap):
        yield


def create_accounts(database: Database, plan: Plan, world: World) -> dict[str, int]:
    """Create the plan's accounts (``Plan.roles``; volunteers linked to their row); returns
    username -> user id."""
    roles = plan.roles(world)
    volunteers = plan.volunteers()
    with database.session() as s:
        with cheap_password_hash():
            for name, (role, where) in sorted(roles.items()):
                auth_service.create_user(session=s, username=name, password=PASSWORD)
                auth_service.bind_role(session=s, username=name, role=role, **where)
        users = dict(
            s.execute(
                text("SELECT username, id FROM users WHERE username = ANY(:n)"),
                {"n": sorted(roles)},
            ).all()
        )
        s.execute(
            text(
                "UPDATE volunteers v SET user_id = x.u FROM unnest(CAST(:v AS bigint[]),"
                " CAST(:u AS bigint[])) AS x(v, u) WHERE v.id = x.v"
            ),
            {"v": list(volunteers.values()), "u": [users[n] for n in volunteers]},
        )
        s.commit()
    return users


def login(port: int, usernames: list[str]) -> dict[str, str]:
    """A bearer token per account."""
    answers = post_many(
        port,
        [("/api/v1/auth/token", {"username": n, "password": PASSWORD}, None) for n in usernames],
    )
    bad = [(n, s) for n, (s, _) in zip(usernames, answers, strict=True) if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} logins failed, e.g. {bad[:3]}")
    return {n: d["token"] for n, (_, d) in zip(usernames, answers, strict=True)}


def page_versions(database: Database, request_ids: list[int]) -> dict[int, str]:
    """The version each request's page shows staff once the setup is done (the detail's
    ETag): staff act from a page and send it back as If-Match, as the leader and staff pages
    do; a volunteer's claim from the offers list sends none."""
    from layers.pipeline.runner import version_tag
    from layers.requests.entity import REQUESTS, load_request

    with database.session() as s:
        return {
            rid: version_tag(REQUESTS.version(s, load_request(s, rid, lock=False)))
            for rid in request_ids
        }


def preclaim(port: int, plan: Plan, tokens: dict[str, str]) -> list[tuple[int, int, str]]:
    """Claim the requests of the units that start claimed; returns the failures (request,
    status, code) — those units are taken out of the plan."""
    units = [u for u in plan.units if u.preclaim is not None]
    answers = post_many(
        port,
        [
            (f"/api/v1/requests/{u.request_id}/claim", {}, tokens[account_volunteer(u.preclaim)])
            for u in units
        ],
    )
    failed = [
        (u.request_id, st, (d.get("error") or {}).get("code"))
        for u, (st, d) in zip(units, answers, strict=True)
        if st != 200
    ]
    if failed:
        logger.warning("%d setup claims failed: %s", len(failed), failed[:5])
        gone = {r for r, _, _ in failed}
        plan.units = [u for u in plan.units if u.request_id not in gone]
    return failed
