"""``PgBackup``: online snapshots of the PostgreSQL store (``pg_dump``) and verified restores.

Snapshot: one connection opens a ``REPEATABLE READ`` transaction and exports its snapshot;
``pg_dump --snapshot`` dumps the store's schema from that very snapshot while the same transaction
counts every table, so the manifest's row counts describe exactly what the dump holds, whatever
the scheduler and the API write meanwhile. The dump is PostgreSQL's custom format, uncompressed,
and gzip-compressed on its way to the file (so ``<name>.db.gz`` is what its name says).

Restore: the file's sha256 against the manifest, decompressed (the dump's sha256 against
``db_sha256``), ``pg_restore --list`` reads its table of contents (every table in the manifest
must have its data there), the schema version must be one this Orion opens. Then ONE transaction
(``psql --single-transaction``): the write lock every Orion writer takes, the live schema renamed
aside (``<schema>_before_restore_<time>``), the dump restored under the old name, every table's
row count and the schema version compared with the manifest — a mismatch raises, the transaction
rolls back and nothing changed. PostgreSQL's DDL is transactional, so the swap is atomic: a reader
sees the old schema or the new one, never a half-restored one. Why a schema and not a database:
the store is a schema (``search_path``) in a database the operator may share with other things;
a database swap needs ``CREATEDB``, a second database to connect to, every session of the old one
ended and a rename outside any transaction. A schema swap needs none of these, and the checks run
before the commit.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

from .._version import __version__
from ..config import orion_home
from ..errors import OrionError
from ..store import dialect
from ..store.files import PRIVATE_FILE, private_dir
from ..store.schema import SCHEMA_VERSION
from .manifest import DATA_SUFFIX, Manifest
from .sqlite_backup import CHUNK, _private, _rejected, file_sha256

APP_PREFIX = "orion:"  # application_name of Orion's store sessions (store/pg_connection.py)
_TOC_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) ")
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ (SCHEMA|COMMENT - SCHEMA|ACL - SCHEMA) ")


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client program (``pg_dump``, ``pg_restore``, ``psql``): in
    ``$ORION_PG_BIN``, else Debian's newest ``/usr/lib/postgresql/<version>/bin``, else ``PATH``."""
    env = os.environ.get("ORION_PG_BIN")
    if env and (Path(env) / name).exists():
        return str(Path(env) / name)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    which = shutil.which(name)
    if which:
        return which
    raise OrionError(
        f"{name} is not installed: PostgreSQL backups need it (apt-get install postgresql-client)"
    )


def split_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """``dsn`` as a conninfo without the password (safe on a command line) and the environment
    that carries the password to the client programs (``PGPASSWORD``: never in argv, where any
    user on the machine could read it)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    d = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    password = d.pop("password", None)
    env = {"PGPASSWORD": password} if password else {}
    return make_conninfo(**d), env


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_data(toc: str) -> dict[str, set[str]]:
    """Tables whose data a ``pg_restore --list`` output holds, by schema."""
    out: dict[str, set[str]] = {}
    for line in toc.splitlines():
        m = _TOC_DATA.match(line)
        if m:
            out.setdefault(m.group(1), set()).add(m.group(2))
    return out


def restore_list(toc: str) -> str:
    """The table of contents without the schema's own entries: the restore creates the schema
    itself (inside its transaction, after the live one is renamed aside)."""
    return "\n".join(line for line in toc.splitlines() if not _TOC_SCHEMA.match(line)) + "\n"


def aside_name(schema: str, now: float) -> str:
    """Where the live schema goes during a restore (PostgreSQL names are at most 63 bytes)."""
    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(now))
    return f"{schema[: 63 - 23]}_before_restore_{stamp}"[:63]


def check_sql(schema: str, manifest: Manifest) -> str:
    """Statements that raise (so the restore's transaction rolls back) when the restored schema's
    row counts or version differ from the manifest's."""
    s = quote_ident(schema)
    out = []
    for table, want in sorted(manifest.tables.items()):
        t = quote_ident(table)
        lit = table.replace("'", "''")
        out.append(
            f"DO $orion$ DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM {s}.{t}; "
            f"IF n <> {int(want)} THEN RAISE EXCEPTION "
            f"'orion-check: table {lit}: % rows, the manifest says {int(want)}', n; "
            "END IF; END $orion$;"
        )
    version = f"{s}.{dialect.VERSION_TABLE}"
    out.append(
        f"DO $orion$ DECLARE v bigint; BEGIN SELECT MAX(version) INTO v FROM {version}; "
        f"IF v IS DISTINCT FROM {int(manifest.schema_version)} THEN "
        "RAISE EXCEPTION 'orion-check: schema version % restored, "
        f"the manifest says {int(manifest.schema_version)}', v; "
        "END IF; END $orion$;"
    )
    return "\n".join(out) + "\n"


def _errors(stderr: str) -> list[str]:
    """The server's error lines from psql's output, without the ``psql:…: ERROR:`` prefix."""
    out = []
    for line in stderr.splitlines():
        if "ERROR:" in line:
            out.append(line.split("ERROR:", 1)[1].strip().replace("orion-check: ", ""))
    return out or [stderr.strip()[-300:] or "psql failed"]


class PgBackup:
    """Backups of the PostgreSQL store named by ``dsn`` (its schema: the ``search_path``'s)."""

    backend = "postgres"

    def __init__(self, dsn: str):
        from ..store.pg_connection import describe

        self.dsn = dsn
        self.where = describe(dsn)

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def _schema(self, conn: Any) -> str:
        """The store's schema: the first of the ``search_path`` that exists, else the first named
        (a dropped store is restored where it was)."""
        row = conn.execute("SELECT current_schema(), current_setting('search_path'), current_user").fetchone()
        if row[0]:
            return str(row[0])
        for part in str(row[1]).split(","):
            name = part.strip().strip('"')
            if name and name != "$user":
                return name
        return "public"

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(self, workdir: Path, *, name: str, now: float) -> tuple[Manifest, Path]:
        """See ``StoreBackup.snapshot``."""
        private_dir(workdir)
        conninfo, env = split_dsn(self.dsn)
        conn = self._connect()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snap = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            schema = self._schema(conn)
            tables = self._counts(conn, schema)
            if "workloads" not in tables:
                raise OrionError(f"there is no Orion store in schema {schema} of {self.where}")
            s = quote_ident(schema)
            version = conn.execute(f"SELECT MAX(version) FROM {s}.{dialect.VERSION_TABLE}").fetchone()[0]
            max_seq = conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {s}.workloads").fetchone()[0]
            server = conn.execute("SHOW server_version").fetchone()[0]
            data = workdir / (name + DATA_SUFFIX)
            cmd = [
                pg_tool("pg_dump"),
                f"--dbname={conninfo}",
                f"--snapshot={snap}",
                "--format=custom",
                "--compress=0",
                f"--schema={quote_ident(schema)}",
            ]
            dump_sha, dump_size = self._dump(cmd, env, data)
            conn.execute("COMMIT")
        finally:
            conn.close()
        manifest = Manifest(
            name=name,
            backend=self.backend,
            created_at=now,
            orion_version=__version__,
            schema_version=int(version or 0),
            tables=tables,
            sha256=file_sha256(data),
            db_sha256=dump_sha,
            size_bytes=data.stat().st_size,
            db_size_bytes=dump_size,
            max_seq=int(max_seq or 0),
            extra={"schema": schema, "format": "pg_dump custom", "server_version": str(server)},
        )
        return manifest, data

    def _counts(self, conn: Any, schema: str) -> dict[str, int]:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema=%s "
                "AND table_type='BASE TABLE' ORDER BY table_name",
                (schema,),
            ).fetchall()
        ]
        s = quote_ident(schema)
        count = "SELECT COUNT(*) FROM {}.{}"
        return {n: int(conn.execute(count.format(s, quote_ident(n))).fetchone()[0]) for n in names}

    def _dump(self, cmd: list[str], env: dict[str, str], data: Path) -> tuple[str, int]:
        """Run ``cmd`` (pg_dump to stdout) into ``data`` gzip-compressed; the dump's sha256 and size."""
        h, size = hashlib.sha256(), 0
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env}
        )
        assert proc.stdout is not None and proc.stderr is not None
        with _private(data) as out:
            with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0) as gz:
                while block := proc.stdout.read(CHUNK):
                    h.update(block)
                    size += len(block)
                    gz.write(block)
            out.flush()
            os.fsync(out.fileno())
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise OrionError(f"pg_dump of {self.where} failed: {err.strip()[-500:]}")
        return h.hexdigest(), size

    # -- verify --------------------------------------------------------------------------------
    def restore_dir(self) -> Path:
        return private_dir(orion_home() / "restore")

    def verify(self, data: Path, manifest: Manifest, *, workdir: Path) -> Path:
        """See ``StoreBackup.verify``: checksum, the dump's table of contents, the schema version.
        The row counts are checked inside the restore's transaction (``install``)."""
        if manifest.backend != self.backend:
            raise _rejected(manifest.name, [wrong_backend(manifest.backend, self.backend)])
        sha = file_sha256(data)
        if sha != manifest.sha256:
            raise _rejected(
                manifest.name,
                [f"sha256 mismatch: the file has {sha[:16]}…, the manifest says {manifest.sha256[:16]}…"],
            )
        out = private_dir(workdir) / f".{manifest.name}.restoring-{os.getpid()}.dump"
        try:
            try:
                h = hashlib.sha256()
                with gzip.open(data, "rb") as gz, _private(out) as f:
                    while block := gz.read(CHUNK):
                        h.update(block)
                        f.write(block)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise _rejected(manifest.name, [f"cannot decompress: {exc}"]) from None
            found = []
            if h.hexdigest() != manifest.db_sha256:
                found.append("the dump inside the file does not match the manifest's db_sha256")
            toc = subprocess.run([pg_tool("pg_restore"), "--list", str(out)], capture_output=True, text=True)
            if toc.returncode != 0:
                found.append(f"pg_restore --list cannot read the dump: {toc.stderr.strip()[-300:]}")
            else:
                schema = str(manifest.extra.get("schema", ""))
                have = table_data(toc.stdout).get(schema, set())
                missing = sorted(set(manifest.tables) - have)
                if missing:
                    found.append(f"the dump has no data for table(s) {', '.join(missing)} of schema {schema}")
            if manifest.schema_version > SCHEMA_VERSION:
                found.append(
                    f"schema version {manifest.schema_version} is newer than this Orion's "
                    f"({SCHEMA_VERSION}): upgrade Orion before restoring it"
                )
            if found:
                raise _rejected(manifest.name, found)
            os.chmod(out, PRIVATE_FILE)
            (out.parent / (out.name + ".manifest.json")).write_text(manifest.to_json())
            return out
        except BaseException:
            out.unlink(missing_ok=True)
            raise

    # -- install -------------------------------------------------------------------------------
    def install(self, verified: Path, *, now: float) -> dict[str, Any]:
        """See ``StoreBackup.install``: one transaction renames the live schema aside, restores
        the dump, checks every count against the manifest, and commits only if all agree."""
        mpath = verified.parent / (verified.name + ".manifest.json")
        try:
            manifest = Manifest.from_json(mpath.read_text())
            return self._install(verified, manifest, now)
        finally:
            verified.unlink(missing_ok=True)
            mpath.unlink(missing_ok=True)

    def _install(self, dump: Path, manifest: Manifest, now: float) -> dict[str, Any]:
        conn = self._connect()
        try:
            target = self._schema(conn)
            exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname=%s", (target,)).fetchone()
        finally:
            conn.close()
        src = str(manifest.extra.get("schema") or target)
        aside = aside_name(target, now) if exists else None
        pre = ["SET lock_timeout = '30s';", f"SELECT pg_advisory_xact_lock({dialect.WRITE_LOCK_KEY});"]
        if aside:
            pre.append(f"ALTER SCHEMA {quote_ident(target)} RENAME TO {quote_ident(aside)};")
        pre.append(f"CREATE SCHEMA {quote_ident(src)};")
        post = [] if src == target else [f"ALTER SCHEMA {quote_ident(src)} RENAME TO {quote_ident(target)};"]
        post.append(check_sql(target, manifest))
        work = dump.parent
        toc = subprocess.run(
            [pg_tool("pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=True
        )
        files = {
            "list": restore_list(toc.stdout),
            "pre.sql": "\n".join(pre) + "\n",
            "post.sql": "\n".join(post),
        }
        paths = {}
        for key, text in files.items():
            paths[key] = work / f"{dump.name}.{key}"
            with _private(paths[key]) as f:
                f.write(text.encode())
        conninfo, env = split_dsn(self.dsn)
        try:
            script = subprocess.Popen(
                [
                    pg_tool("pg_restore"),
                    "--no-owner",
                    "--no-privileges",
                    "-L",
                    str(paths["list"]),
                    "-f",
                    "-",
                    str(dump),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            psql = subprocess.run(
                [
                    pg_tool("psql"),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "--single-transaction",
                    "-d",
                    conninfo,
                    "-f",
                    str(paths["pre.sql"]),
                    "-f",
                    "-",
                    "-f",
                    str(paths["post.sql"]),
                ],
                stdin=script.stdout,
                capture_output=True,
                text=True,
                env={**os.environ, **env},
            )
            assert script.stdout is not None and script.stderr is not None
            script.stdout.close()
            script_err = script.stderr.read().decode(errors="replace")
            if script.wait() != 0:
                raise _rejected(manifest.name, [f"pg_restore failed: {script_err.strip()[-300:]}"])
            if psql.returncode != 0:  # the transaction rolled back: the live schema is untouched
                raise _rejected(manifest.name, _errors(psql.stderr))
        finally:
            for p in paths.values():
                p.unlink(missing_ok=True)
        return {"store": f"{self.where} (schema {target})", "previous": aside and f"schema {aside}"}

    def in_use(self) -> list[str]:
        """Orion's sessions on the store (any machine): ``pg_stat_activity`` by application name."""
        conn = self._connect()
        try:
            schema = self._schema(conn)
            rows = conn.execute(
                "SELECT pid, COALESCE(host(client_addr), 'local') FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
                (APP_PREFIX + schema,),
            ).fetchall()
        finally:
            conn.close()
        return [f"session {r[0]} from {r[1]} on {self.where}" for r in rows]


def wrong_backend(have: str, want: str) -> str:
    """Why a snapshot of one backend is not restored into another."""
    return (
        f"the snapshot was taken from a {have} store and this store is {want}: a snapshot restores "
        f"only into the backend it was taken from"
    )


def dsn_of(store: Any, environ: Optional[dict[str, str]] = None) -> str:
    """The DSN ``store`` (a ``StoreConfig``) names."""
    from ..store.open import resolve_dsn

    return resolve_dsn(store, environ)
