"""The embedded default database: a project-local PostgreSQL + PostGIS cluster.

With no DATABASE_URL, the CLI and the tests start a cluster of their own on a free loopback
port. As root the server runs as the ``postgres`` system user; when that user cannot reach the
checkout (a mode-700 home, a ``mktemp -d`` clone), the cluster lives in
``/var/lib/minqing/<first 12 hex of sha1(checkout path)>`` with its socket inside it.

Three roles, least privilege (issue 16): ``minqing`` is the cluster's superuser (initdb's; it
creates databases, extensions and the two others, nothing else connects as it);
``minqing_owner`` owns the database and every table in it and runs the migrations;
``minqing_app`` owns nothing and holds only the grants ``layers.grants`` gives it — the web
app, the CLI's services and the tests connect as it. The two are created (and their generated
passwords, kept in ``roles.json`` beside ``cluster.json``, set) on every ``up()``, idempotently,
so a cluster made before they existed gains them without being re-initialised.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SYSTEM_USER = "postgres"
DB_USER = "minqing"  # the cluster's superuser (initdb --username)
OWNER_ROLE = "minqing_owner"  # owns the schema, runs migrations (MIGRATION_DATABASE_URL)
APP_ROLE = "minqing_app"  # owns nothing: the app's grants only (DATABASE_URL)
DB_NAME = "minqing"
SHARED_ROOT = Path("/var/lib/minqing")
PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)
#: shared_buffers: an eighth of the machine's memory, between PostgreSQL's default and 1 GB
#: (the default 128 MB cannot hold the hot indexes of a district with 1M requests)
SHARED_BUFFERS_MIN_MB = 128
SHARED_BUFFERS_MAX_MB = 1024
#: created by the superuser in each database the owner migrates (btree_gist: migration 0004)
EXTENSIONS = ("postgis", "btree_gist", "pgrouting")


class EmbeddedError(RuntimeError):
    """The embedded cluster could not be created, started or stopped; the message says why."""


def shared_buffers_mb() -> int:
    """The server's shared_buffers in MB for this machine (see ``SHARED_BUFFERS_MAX_MB``)."""
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return SHARED_BUFFERS_MIN_MB
    return int(min(max(total_mb // 8, SHARED_BUFFERS_MIN_MB), SHARED_BUFFERS_MAX_MB))


def pg_bin_dir() -> Path:
    """Locate the PostgreSQL 15 server binaries (initdb, pg_ctl)."""
    override = os.environ.get("MINQING_PG_BIN")
    candidates = [override] if override else []
    candidates += list(PG_BIN_CANDIDATES)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise EmbeddedError(
        "PostgreSQL 15 server binaries not found. Install them with: "
        "apt-get install postgresql-15 postgresql-15-postgis-3"
    )


def checkout_hash(checkout: Path) -> str:
    """First 12 hex digits of sha1 of the checkout's absolute path."""
    return hashlib.sha1(str(checkout.resolve()).encode()).hexdigest()[:12]


def _as_user(cmd: Sequence[str], run_as: str | None) -> list[str]:
    return ["runuser", "-u", run_as, "--", *cmd] if run_as else list(cmd)


def user_can_reach(path: Path, user: str) -> bool:
    """Whether ``user`` can traverse every directory down to ``path`` and write into it."""
    probe = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(path), "-a", "-w", str(path)],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def cluster_root_for(checkout: Path, run_as: str | None) -> Path:
    """Where the cluster of ``checkout`` lives (DESIGN §5)."""
    local = checkout.resolve() / "var" / "pg"
    if run_as is None:
        return local
    var = checkout.resolve() / "var"
    # The server user must traverse the checkout; var/ itself is created by us and chowned.
    if var.exists():
        reachable = user_can_reach(var, run_as) or _owned_by(local, run_as)
    else:
        probe = subprocess.run(
            ["runuser", "-u", run_as, "--", "test", "-x", str(checkout.resolve())],
            capture_output=True,
            check=False,
        )
        reachable = probe.returncode == 0
    return local if reachable else SHARED_ROOT / checkout_hash(checkout)


def _owned_by(path: Path, user: str) -> bool:
    import pwd

    try:
        return path.stat().st_uid == pwd.getpwnam(user).pw_uid
    except (FileNotFoundError, KeyError):
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class ClusterState:
    port: int
    password: str


def ensure_roles_sql(passwords: dict[str, str]) -> str:
    """SQL (for a superuser) creating each role of ``passwords`` if missing — LOGIN and
    nothing else: no superuser, no CREATEDB, no CREATEROLE, no replication — and setting its
    password. Idempotent; ``CREATE ROLE`` has no IF NOT EXISTS, hence the DO block.
    (Passwords come from ``secrets.token_urlsafe``: no quote can occur in them.)"""
    statements = []
    for role, password in passwords.items():
        if not role.isidentifier() or "'" in password:
            raise EmbeddedError(f"refusing role {role!r} / a password with a quote")
        statements.append(
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} LOGIN; END IF; "
            f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            f"NOBYPASSRLS PASSWORD '{password}';"
        )
    return "DO $$ BEGIN " + " ".join(statements) + " END $$;"


# Hands the objects of a database made before the owner role existed (tables, sequences not
# tied to a column, views, functions of the public schema that no extension owns) from the
# superuser to the owner; a database already owned by the owner role is left as it is.
ADOPT_SQL = f"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      AND c.relowner <> '{OWNER_ROLE}'::regrole
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO {OWNER_ROLE}',
      CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
        WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.name);
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS name FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.proowner <> '{OWNER_ROLE}'::regrole
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER_ROLE}', r.name);
  END LOOP;
END $$;
"""


class EmbeddedCluster:
    """A PostgreSQL cluster owned by one checkout; every operation is idempotent."""

    def __init__(
        self, checkout: Path, *, root: Path | None = None, run_as: str | None = None
    ) -> None:
        self.checkout = checkout.resolve()
        if run_as is None and os.geteuid() == 0:
            run_as = SYSTEM_USER
        self.run_as = run_as
        self.root = root or cluster_root_for(self.checkout, run_as)
        self.data_dir = self.root / "data"
        self.state_file = self.root / "cluster.json"
        self.roles_file = self.root / "roles.json"
        self.log_file = self.root / "server.log"

    # -- helpers -------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = _as_user([str(pg_bin_dir() / args[0]), *args[1:]], self.run_as)
        logger.debug("running %s", cmd)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, check=False)
        if check and proc.returncode != 0:
            raise EmbeddedError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
            )
        return proc

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _chown(self, path: Path) -> None:
        if self.run_as:
            shutil.chown(path, user=self.run_as, group=self.run_as)

    def read_state(self) -> ClusterState | None:
        try:
            raw = json.loads(self.state_file.read_text())
            return ClusterState(port=int(raw["port"]), password=str(raw["password"]))
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def _write_state(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps({"port": state.port, "password": state.password}))
        os.chmod(self.state_file, 0o600)

    def role_passwords(self, *, create: bool = False) -> dict[str, str]:
        """The owner's and the app's passwords, kept in ``roles.json``; ``create`` (``up()``,
        under the lock) generates the missing ones."""
        try:
            raw = json.loads(self.roles_file.read_text())
        except (FileNotFoundError, ValueError):
            raw = {}
        roles = (OWNER_ROLE, APP_ROLE)
        if not all(isinstance(raw.get(r), str) for r in roles):
            if not create:
                raise EmbeddedError(f"no roles in {self.root}; run `minqing db up` first")
            raw = {r: raw.get(r) or secrets.token_urlsafe(18) for r in roles}
            tmp = self.roles_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(raw))
            os.chmod(tmp, 0o600)
            tmp.replace(self.roles_file)
        return {r: str(raw[r]) for r in roles}

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and self.read_state() is not None

    def url(self, database: str = DB_NAME) -> str:
        """The superuser's URL: creating databases and extensions, nothing else."""
        state = self.read_state()
        if state is None:
            raise EmbeddedError(f"no cluster at {self.root}; run `minqing db up` first")
        return f"postgresql+psycopg://{DB_USER}:{state.password}@127.0.0.1:{state.port}/{database}"

    def role_url(self, role: str, database: str = DB_NAME) -> str:
        """The URL of ``role`` (``OWNER_ROLE`` or ``APP_ROLE``) on ``database``."""
        state = self.read_state()
        if state is None:
            raise EmbeddedError(f"no cluster at {self.root}; run `minqing db up` first")
        password = self.role_passwords()[role]
        return f"postgresql+psycopg://{role}:{password}@127.0.0.1:{state.port}/{database}"

    def owner_url(self, database: str = DB_NAME) -> str:
        """The schema owner's URL: migrations, the demo load (MIGRATION_DATABASE_URL)."""
        return self.role_url(OWNER_ROLE, database)

    def app_url(self, database: str = DB_NAME) -> str:
        """The app's URL: a role that owns nothing (DATABASE_URL)."""
        return self.role_url(APP_ROLE, database)

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> None:
        """Create the cluster once (initdb with a generated password)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.root.parent == SHARED_ROOT:
            os.chmod(SHARED_ROOT, 0o755)
        self._chown(self.root)
        os.chmod(self.root, 0o700)
        if self.initialized:
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made cluster from an interrupted init
        password = secrets.token_urlsafe(18)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        self._chown(pwfile)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                f"--username={DB_USER}",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_state(ClusterState(port=free_port(), password=password))
        logger.info("created PostgreSQL cluster in %s", self.data_dir)

    def running_pid(self) -> int | None:
        """PID of this cluster's live postmaster, clearing a stale pid file if found."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            cmdline = ""
        if "postgres" in cmdline and str(self.data_dir) in cmdline:
            return pid
        logger.warning("removing stale %s (pid %s is not our server)", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        return None

    def up(self, *, timeout_s: float = 60.0) -> str:
        """Create if needed, start if stopped, ensure the roles, the database (owned by the
        owner role) and PostGIS; return the superuser's URL (``owner_url`` / ``app_url``
        for the others)."""
        with self._lock():
            self.init()
            state = self.read_state()
            assert state is not None
            if self.running_pid() is None:
                if port_in_use(state.port):
                    state = ClusterState(port=free_port(), password=state.password)
                    self._write_state(state)
                opts = (
                    f"-p {state.port} -k {self.root} -c listen_addresses=127.0.0.1"
                    f" -c shared_buffers={shared_buffers_mb()}MB"
                    # full-page images after each checkpoint, compressed: random inserts into
                    # big indexes otherwise double the WAL written (and waited for) per commit
                    " -c wal_compression=lz4"
                )
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "start",
                )
                logger.info("started PostgreSQL on 127.0.0.1:%s", state.port)
            self._psql("postgres", ensure_roles_sql(self.role_passwords(create=True)))
            self._ensure_database()
        return self.url()

    def _psql(self, database: str, sql: str) -> str:
        """Run ``sql`` as the superuser over the socket; the SQL goes through stdin, so no
        password it sets shows in the process list."""
        state = self.read_state()
        assert state is not None
        proc = subprocess.run(
            _as_user(
                [
                    "psql",
                    "-h",
                    str(self.root),
                    "-p",
                    str(state.port),
                    "-U",
                    DB_USER,
                    "-d",
                    database,
                    "-XAtq",
                    "-v",
                    "ON_ERROR_STOP=1",
                ],
                self.run_as,
            ),
            input=sql,
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
        )
        if proc.returncode != 0:
            raise EmbeddedError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def _ensure_database(self) -> None:
        owner = self._psql(
            "postgres",
            f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB_NAME}'",
        )
        if not owner:
            self._psql("postgres", f"CREATE DATABASE {DB_NAME} OWNER {OWNER_ROLE}")
        available = self._psql(
            DB_NAME, "SELECT string_agg(name, ',') FROM pg_available_extensions"
        ).split(",")
        if "postgis" not in available:
            raise EmbeddedError(
                "PostGIS is not installed. Install it with: apt-get install postgresql-15-postgis-3"
            )
        # extensions are the superuser's to create (PostGIS is not a trusted extension)
        for ext in EXTENSIONS:
            if ext in available:
                self._psql(DB_NAME, f"CREATE EXTENSION IF NOT EXISTS {ext}")
        if owner and owner != OWNER_ROLE:  # made before the owner role existed
            self._psql("postgres", f"ALTER DATABASE {DB_NAME} OWNER TO {OWNER_ROLE}")
            self._psql(DB_NAME, ADOPT_SQL)
            logger.info("database %s now owned by %s", DB_NAME, OWNER_ROLE)

    def down(self, *, timeout_s: float = 60.0) -> bool:
        """Stop the server if it runs; True if it was running."""
        if not self.data_dir.exists():
            return False
        with self._lock():
            if self.running_pid() is None:
                return False
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout_s)),
                "stop",
            )
            deadline = time.monotonic() + timeout_s
            while self.running_pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            logger.info("stopped PostgreSQL in %s", self.data_dir)
            return True
