"""A throwaway PostgreSQL server for the tests (Debian's package): ``initdb`` in a temporary
directory, started once per session on a free 127.0.0.1 port (its unix socket in that directory;
as the ``postgres`` user when the tests run as root, which PostgreSQL refuses), a schema per test,
stopped by its pid at the end.

Missing server binaries skip the tests that need one, with the reason, unless
``ORION_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it), where they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

_schemas = itertools.count(1)


def _bin_dir() -> Optional[Path]:
    env = os.environ.get("ORION_PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running server: ``dsn(schema)`` names a fresh schema in its ``orion`` database."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="orion-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.pid: Optional[int] = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd: str) -> None:
        p = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {p.stdout}\n{p.stderr}")

    def start(self) -> None:
        initdb = str(self.bindir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", "orion", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.base / "log"), "-o", opts, "-w", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self.sql("postgres", "CREATE DATABASE orion")

    def sql(self, db: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(db=db), autocommit=True) as c:
            c.execute(statement)

    def dsn(self, schema: Optional[str] = None, *, db: str = "orion") -> str:
        out = f"host=127.0.0.1 port={self.port} dbname={db} user=orion"
        return out + (f" options='-c search_path={schema}'" if schema else "")

    def fresh_dsn(self) -> str:
        """A new empty schema and the DSN whose sessions use it."""
        schema = f"t{next(_schemas)}"
        self.sql("orion", f"CREATE SCHEMA {schema}")
        return self.dsn(schema)

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # fast shutdown
                for _ in range(300):
                    os.kill(self.pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.base, ignore_errors=True)


def unavailable_reason() -> Optional[str]:
    """Why no server can be started here (None when one can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'orion-ray[postgres]')"
    if _bin_dir() is None:
        return "PostgreSQL's initdb is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (skips, or fails under ORION_REQUIRE_POSTGRES=1)."""
    why = unavailable_reason()
    if why is not None:
        if os.environ.get("ORION_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (ORION_REQUIRE_POSTGRES=1): {why}")
        pytest.skip(why)
    bindir = _bin_dir()
    assert bindir is not None
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class PgByPath:
    """Stands in for ``SQLiteStore`` in a store test: each distinct path a test opens is its own
    schema on the session's server, so closing and opening "the same file" again opens the same
    database, as the SQLite tests expect."""

    def __init__(self, server: PgServer):
        self.server = server
        self.dsns: dict[str, str] = {}

    def dsn_for(self, path: str) -> str:
        if str(path) not in self.dsns:
            self.dsns[str(path)] = self.server.fresh_dsn()
        return self.dsns[str(path)]

    def __call__(self, path: str, synchronous: str = "normal", read_only: bool = False, **kw):
        from orion_ray.store.postgres import PostgresStore

        return PostgresStore(self.dsn_for(path), synchronous, read_only=read_only, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request, monkeypatch) -> Iterator[str]:
    """Runs a store test on both backends: for ``postgres`` the module's ``SQLiteStore`` (and
    ``StoreAccess``'s) opens a schema per path on the session's server."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        opener = PgByPath(server)
        monkeypatch.setattr(request.module, "SQLiteStore", opener, raising=False)
        monkeypatch.setattr("orion_ray.api.store_access.SQLiteStore", opener)
    yield request.param


@pytest.fixture
def sqlite_only(store_backend: str) -> None:
    """A test of SQLite's file itself (WAL, the file's mode, a replaced file): not PostgreSQL's."""
    if store_backend != "sqlite":
        pytest.skip("about SQLite's database file")
