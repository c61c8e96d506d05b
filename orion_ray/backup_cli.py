"""``orion backup``, ``orion backups`` and ``orion restore``.

They read the store file directly (the CLI runs where the store is: the head), so ``orion
backup`` works whether or not Orion is up; ``orion restore`` refuses while it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Optional


def _config(path: Optional[str]):
    from .cluster import config_path_in_use
    from .config import load_config

    return load_config(path or config_path_in_use())


def orion_running() -> Optional[str]:
    """Why Orion counts as running on this machine (None: it does not): the Ray head ``orion
    up`` started is alive, or Litestream is streaming the store."""
    from .cluster import _alive, _read_state

    state = _read_state()
    if state.get("started") and _alive(state.get("pid")):
        return f"its Ray head, pid {state['pid']}, is alive"
    if _alive(state.get("litestream_pid")):
        return f"its replica (litestream, pid {state['litestream_pid']}) is running"
    return None


def _show(obj: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(obj, indent=2, default=str))
        return
    for k, v in obj.items():
        print(f"{k:<16} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")


def cmd_backup(a) -> int:
    from .backup.service import take_backup

    _show(take_backup(_config(a.config), to=a.to), a.output)
    return 0


def cmd_backups(a) -> int:
    from .backup.service import list_backups

    got = list_backups(_config(a.config), at=a.at)
    if a.output == "json":
        _show(got, "json")
        return 0
    print(f"{'NAME':<34} {'CREATED':<26} {'WORKLOADS':>9} {'BYTES':>10}  TARGET")
    for i in got["items"]:
        if "error" in i:
            print(f"{i['name']:<34} unreadable manifest: {i['error']}")
            continue
        row = f"{i['name']:<34} {i['created_at']:<26} {i['workloads']:>9} {i['size_bytes']:>10}"
        print(f"{row}  {i['target']}")
    return 0


def _confirm(yes: bool) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return input(question + " [y/N] ").strip().lower() in ("y", "yes")

    return ask


def cmd_restore(a) -> int:
    cfg = _config(a.config)
    if a.from_replica:
        from .backup.replica import restore_from_replica

        got = restore_from_replica(cfg, running=orion_running, confirm=_confirm(a.yes))
    else:
        if not a.snapshot:
            raise SystemExit("give a SNAPSHOT (a name from `orion backups`, or a file), or --from-replica")
        from .backup.service import restore

        got = restore(a.snapshot, cfg, source=a.source, running=orion_running, confirm=_confirm(a.yes))
    _show(got, a.output)
    if a.output != "json":
        print("restored; start Orion with `orion up` (it resumes from the restored store)")
    return 0


def add_commands(sub: Any, out: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """``backup``, ``backups``, ``restore`` on the ``orion`` parser."""
    b = out(sub.add_parser("backup", help="snapshot the store now (online, consistent), with retention"))
    b.add_argument("--to", help="DIR or s3://bucket/prefix (default: backup.dir, and backup.s3 if set)")
    b.add_argument("--config", help="orion.yaml (default: the one `orion up` used)")
    b.set_defaults(fn=cmd_backup)
    ls = out(sub.add_parser("backups", help="list snapshots, newest first"))
    ls.add_argument("--at", help="DIR or s3://bucket/prefix (default: the configured ones)")
    ls.add_argument("--config")
    ls.set_defaults(fn=cmd_backups)
    r = out(sub.add_parser("restore", help="verify a snapshot, then swap it in as the store (Orion down)"))
    r.add_argument("snapshot", nargs="?", help="a snapshot name (see `orion backups`) or its file")
    r.add_argument("--from", dest="source", help="DIR or s3://bucket/prefix holding the snapshot")
    r.add_argument(
        "--from-replica", action="store_true", help="restore the Litestream replica's newest state"
    )
    r.add_argument("--yes", "-y", action="store_true", help="do not ask before replacing the store")
    r.add_argument("--config")
    r.set_defaults(fn=cmd_restore)
