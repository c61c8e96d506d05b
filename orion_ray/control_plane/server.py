"""The control-plane process: the REST app over its own store, and the loop that never dies.

One process, no Ray: the control plane holds no compute, so it needs no Ray cluster. uvicorn
serves ``control_plane/routes.py``'s routes plus the workload routes (``workloads.py``); a thread runs the
loop every second — ``tick()`` (silent regions become lost, their runs redispatched or failed),
``redispatch()`` and the dispatcher — logging and carrying on after any error. One re-entrant lock
serialises the service between the API's threads and the loop; the dispatcher's HTTP calls to
regions happen outside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from fastapi import FastAPI, Header

from ..api.auth import KeyRing, Principal, hash_key
from ..policy.global_quota import GlobalQuota
from ..store.sqlite import SQLiteStore
from .dispatcher import Dispatcher
from .routes import build_control_plane_app
from .runs import RunBook
from .service import ControlPlane
from .workloads import install_workloads

log = logging.getLogger("orion.control_plane")
REGION_KEYS = "region-keys.json"  # sha256 of a region key → the one region it speaks for
CREDENTIALS = "credentials.json"  # the admin key and URL (0600)
SETTINGS = "control-plane.json"  # optional settings (docs/regions.md, "Running regions locally")


class LockedPlane:
    """``ControlPlane`` with every call under ``lock``; a status batch also feeds the run view."""

    def __init__(self, plane: ControlPlane, book: RunBook, lock: threading.RLock) -> None:
        self._plane, self._book, self._lock = plane, book, lock

    def __getattr__(self, name: str) -> Any:
        v = getattr(self._plane, name)
        if not callable(v):
            return v

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return v(*args, **kwargs)

        return locked

    def status(self, name: str, changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Record the contiguous changes in the view (idempotent by sequence), then apply them."""
        with self._lock:
            last = self._plane.region(name).status_seq
            run: list[Mapping[str, Any]] = []
            for c in sorted(changes, key=lambda c: int(c["seq"])):
                if int(c["seq"]) <= last:
                    continue
                if int(c["seq"]) != last + 1:
                    break
                run.append(c)
                last += 1
            self._book.record(name, run)
            return self._plane.status(name, changes)

    def resync(self, name: str, through_seq: int, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """A region's full listing: into the view as of ``through_seq`` (a replay changes nothing),
        then reconciled (``ControlPlane.resync``)."""
        with self._lock:
            if through_seq > self._plane.region(name).status_seq:
                self._book.record(name, [{**c, "seq": through_seq} for c in items])
            return self._plane.resync(name, through_seq, items)


def load_settings(home: Path) -> dict[str, Any]:
    """``control-plane.json`` under ``home`` (missing: the defaults)."""
    try:
        return dict(json.loads((home / SETTINGS).read_text()))
    except FileNotFoundError:
        return {}


def read_region_keys(home: Path) -> dict[str, str]:
    """The region keys' hashes, each to the region it speaks for."""
    try:
        return {str(h): str(n) for h, n in json.loads((home / REGION_KEYS).read_text()).items()}
    except (FileNotFoundError, ValueError):
        return {}


class ControlPlaneProcess:
    """The app, the service and the loop of one control plane rooted at ``home``."""

    def __init__(self, home: Path, *, settings: Optional[dict[str, Any]] = None) -> None:
        self.home = home
        s = settings if settings is not None else load_settings(home)
        self.store = SQLiteStore(str(home / "control-plane.db"))
        quotas = {
            t: GlobalQuota(
                t, q.get("concurrent", {}), q.get("gpu_hours", {}), float(q.get("window_s", 86_400))
            )
            for t, q in (s.get("quotas") or {}).items()
        }
        self.plane = ControlPlane(
            self.store,
            quotas=quotas,
            lost_timeout_s=float(s.get("region_lost_timeout_s", 60.0)),
            launch_budget_s=float(s.get("launch_budget_s", 900.0)),
        )
        self.book = RunBook(self.store)
        self.lock = threading.RLock()
        self.dispatcher = Dispatcher(
            self.plane, self.book, self.lock, timeout_s=float(s.get("dispatch_timeout_s", 10.0))
        )
        self.loop_s = float(s.get("loop_s", 1.0))
        self.region_keys: dict[str, str] = read_region_keys(home)
        creds = json.loads((home / CREDENTIALS).read_text())
        tenant_hashes = {
            hash_key(os.environ[t["api_key_env"]]): t["id"]
            for t in s.get("tenants", [])
            if t.get("api_key_env") in os.environ
        }
        self.keyring = KeyRing([hash_key(creds["api_key"])], tenant_hashes)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.app = self._build()

    def _build(self) -> FastAPI:
        locked = LockedPlane(self.plane, self.book, self.lock)
        app = build_control_plane_app(locked, self.keyring, self.region_keys)  # type: ignore[arg-type]
        keyring, keys = self.keyring, self.region_keys

        def principal(authorization: Optional[str] = Header(None)) -> Principal:
            return keyring.authenticate(authorization)

        def region_caller(name: str, authorization: Optional[str] = Header(None)) -> str:
            from ..errors import Forbidden

            if authorization and authorization.lower().startswith("bearer "):
                owner = keys.get(hash_key(authorization[7:].strip()))
                if owner is not None:
                    if owner != name:
                        raise Forbidden(f"this key speaks for region {owner}, not {name}")
                    return name
            if not keyring.authenticate(authorization).is_admin:
                raise Forbidden("an admin key or the region's key is required")
            return name

        install_workloads(
            app,
            self.plane,
            self.book,
            self.lock,
            principal=principal,
            region_caller=region_caller,
            wake=self._wake.set,
        )

        @app.get("/health", tags=["operations"])
        def health() -> dict[str, Any]:
            """The process answers and its store is readable."""
            self.store.ping()
            return {"status": "ok", "role": "control-plane", "regions": len(self.plane.regions)}

        return app

    def step(self) -> dict[str, Any]:
        """One pass of the loop: losses, placements, sends."""
        fresh = read_region_keys(self.home)  # keys added by `orion control-plane region-key`
        if fresh != self.region_keys:
            self.region_keys.clear()
            self.region_keys.update(fresh)
        with self.lock:
            lost = self.plane.tick()
            for run_id, reason in lost["failed"]:
                self.book.set_reason(run_id, reason)
            placed = self.plane.redispatch()
        sent = self.dispatcher.send_all()
        return {"lost": lost, "placed": placed, "sent": sent}

    def loop(self) -> None:
        """``step`` every ``loop_s`` (or at once when a submission wakes it), until stopped; an
        error is logged and the next pass runs (a control loop that never dies)."""
        while not self._stop.is_set():
            try:
                out = self.step()
                if out["lost"]["lost"] or out["sent"]:
                    log.info("control plane step: %s", out)
            except Exception:
                log.exception("control-plane step failed; continuing")
            self._wake.wait(self.loop_s)
            self._wake.clear()

    def stop(self) -> None:
        """Stop the loop after its current pass."""
        self._stop.set()
        self._wake.set()


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m orion_ray.control_plane.server --home H --port P`` (what `orion control-plane
    up` starts)."""
    p = argparse.ArgumentParser(prog="orion-control-plane")
    p.add_argument("--home", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    proc = ControlPlaneProcess(Path(a.home))
    t = threading.Thread(target=proc.loop, name="control-plane-loop", daemon=True)
    t.start()
    started = time.time()
    try:
        uvicorn.run(proc.app, host=a.host, port=a.port, log_level="warning")
    finally:
        proc.stop()
        t.join(timeout=5)
        log.info("control plane stopped after %.0f s", time.time() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
