"""Backups as operations: take one (to a directory or S3, with retention), list them, restore one.

Used by ``orion backup`` / ``orion restore`` (the CLI, reading the store file directly), by the
API replica (``POST /admin/v1/backups``, on the head where the file is) and by the scheduled
snapshots of the ``orion-backup`` actor: the same code each time.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..backup_config import BackupConfig
from ..config import OrionConfig, orion_home
from .base import RestoreRefused, SnapshotRejected, StoreBackup, backup_for
from .manifest import Manifest, snapshot_name, to_prune
from .targets import (
    LocalTarget,
    S3Target,
    Target,
    data_name,
    manifest_name,
    open_target,
    s3_client,
    snapshots,
)

log = logging.getLogger("orion.backup")


def default_dir(cfg: BackupConfig) -> str:
    return str(Path(cfg.dir).expanduser()) if cfg.dir else str(orion_home() / "backups")


def targets_of(cfg: BackupConfig, to: Optional[str] = None) -> list[Target]:
    """Where a backup goes: ``to`` when given, else the configured directory and (if set) S3."""
    if to:
        s3 = cfg.s3
        region, endpoint = (s3.region, s3.endpoint_url) if s3 else (None, None)
        return [open_target(to, region=region, endpoint_url=endpoint)]
    out: list[Target] = [LocalTarget(default_dir(cfg))]
    if cfg.s3 is not None:
        out.append(S3Target(cfg.s3.bucket, cfg.s3.prefix, s3_client(cfg.s3.region, cfg.s3.endpoint_url)))
    return out


def take_backup(
    config: OrionConfig,
    *,
    to: Optional[str] = None,
    now: Optional[float] = None,
    keep: Optional[int] = None,
    backup: Optional[StoreBackup] = None,
) -> dict[str, Any]:
    """Snapshot the store, copy it to each target (manifest last), then keep the ``keep`` newest
    there (``backup.keep``). Returns the manifest's summary with where it went."""
    cfg = config.orion.backup
    backup = backup or backup_for(config.orion.store)
    now = time.time() if now is None else now
    name = snapshot_name(now, secrets.token_hex(2))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orion-backup-") as tmp:
        manifest, data = backup.snapshot(Path(tmp), name=name, now=now)
        mpath = Path(tmp) / manifest_name(name)
        mpath.write_text(manifest.to_json())
        places, pruned = [], []
        for target in targets_of(cfg, to):
            target.put(data, data_name(name))
            target.put(mpath, manifest_name(name))
            places.append(target.describe())
            pruned += prune(target, keep if keep is not None else cfg.keep)
    out = manifest.summary()
    out.update({"targets": places, "pruned": pruned, "duration_s": round(time.perf_counter() - t0, 3)})
    return out


def prune(target: Target, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest snapshots of ``target`` (data first, manifest last:
    an interrupted prune leaves a snapshot unlisted, never listed without its data)."""
    gone = to_prune(snapshots(target), keep)
    for name in gone:
        target.delete(data_name(name))
        target.delete(manifest_name(name))
    return gone


def list_backups(config: OrionConfig, *, at: Optional[str] = None) -> dict[str, Any]:
    """Snapshots per target, newest first, and the newest one's age."""
    items: list[dict[str, Any]] = []
    for target in targets_of(config.orion.backup, at):
        for name in reversed(snapshots(target)):
            try:
                m = Manifest.from_json(target.read_text(manifest_name(name)))
            except (OSError, ValueError) as exc:
                items.append({"name": name, "target": target.describe(), "error": str(exc)})
                continue
            items.append({**m.summary(), "target": target.describe(), "created_at_s": m.created_at})
    newest = max((i["created_at_s"] for i in items if "created_at_s" in i), default=None)
    return {
        "items": items,
        "last_success_timestamp": newest,
        "age_s": None if newest is None else round(max(0.0, time.time() - newest), 3),
    }


def _locate(ref: str, config: OrionConfig, source: Optional[str], tmp: Path) -> tuple[Path, Manifest]:
    """The snapshot ``ref`` (a file, or a name in ``source`` / the configured targets) as a local
    data file and its manifest."""
    p = Path(ref).expanduser()
    if p.exists() and p.is_file():
        base = str(p)
        for suffix in (".manifest.json", ".db.gz"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        data, mpath = Path(base + ".db.gz"), Path(base + ".manifest.json")
        if not mpath.exists():
            raise SnapshotRejected(
                f"snapshot {ref}: no manifest next to it ({mpath.name})",
                [{"field": "snapshot", "problem": "manifest missing"}],
            )
        return data, _manifest(mpath.read_text(), ref)
    for target in targets_of(config.orion.backup, source):
        try:
            text = target.read_text(manifest_name(ref))
        except FileNotFoundError:
            continue
        local = tmp / data_name(ref)
        target.get(data_name(ref), local)
        return local, _manifest(text, ref)
    raise FileNotFoundError(f"no snapshot {ref!r} (a file, or a name listed by `orion backups`)")


def _manifest(text: str, ref: str) -> Manifest:
    try:
        return Manifest.from_json(text)
    except ValueError as exc:
        why = [{"field": "manifest", "problem": str(exc)}]
        raise SnapshotRejected(f"snapshot {ref}: {exc}", why) from None


def refuse_if_running(backup: StoreBackup, running: Callable[[], Optional[str]]) -> None:
    """``RestoreRefused`` when Orion runs (``running()`` says why) or a process holds the store."""
    why = running()
    holders = backup.in_use()
    if why or holders:
        reason = why or f"the store is open in {', '.join(holders)}"
        raise RestoreRefused(
            f"Orion is running against the store ({reason}): run `orion down` first; "
            "a restore never swaps a store under a running scheduler",
            [{"field": "store", "problem": "in use"}],
        )


def restore(
    ref: str,
    config: OrionConfig,
    *,
    source: Optional[str] = None,
    running: Callable[[], Optional[str]] = lambda: None,
    confirm: Callable[[str], bool] = lambda _msg: False,
    backup: Optional[StoreBackup] = None,
    now: Optional[float] = None,
) -> dict[str, Any]:
    """Verify the snapshot ``ref`` completely, then swap it in as the store (see
    ``StoreBackup.install``). Refuses while Orion runs; asks ``confirm`` before the swap."""
    backup = backup or backup_for(config.orion.store)
    refuse_if_running(backup, running)
    with tempfile.TemporaryDirectory(prefix="orion-restore-") as tmp:
        data, manifest = _locate(ref, config, source, Path(tmp))
        if manifest.backend != backup.backend:  # checked before anything else is read from it
            from .pg_backup import wrong_backend

            why = wrong_backend(manifest.backend, backup.backend)
            problem = [{"field": "backend", "problem": why}]
            raise SnapshotRejected(f"snapshot {manifest.name} is refused: {why}", problem)
        verified = backup.verify(data, manifest, workdir=backup.restore_dir())
        try:
            taken = manifest.summary()["created_at"]
            where = getattr(backup, "where", None) or config.orion.store.resolved_path()
            question = (
                f"replace the store {where} with snapshot {manifest.name} "
                f"({manifest.tables.get('workloads', 0)} workloads, taken {taken})?"
            )
            if not confirm(question):
                raise RestoreRefused("not confirmed: pass --yes", [{"field": "yes", "problem": "required"}])
            refuse_if_running(backup, running)  # again: nothing may have started meanwhile
            done = backup.install(verified, now=time.time() if now is None else now)
        except BaseException:
            verified.unlink(missing_ok=True)
            raise
    return {**manifest.summary(), **done, "verified": True}
