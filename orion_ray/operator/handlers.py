"""Kopf handlers of ``aiworkloads.orion.veritasstack.io``: thin wrappers of ``Reconciler``.

Importing this module registers them (kopf's registry is global). Configuration comes from the
environment (``OperatorConfig.from_env``); the Orion key from a file mounted from a Secret
(``ORION_API_KEY_FILE``) or ``ORION_API_KEY`` (a ``secretKeyRef``), never from the command line,
and it is never logged.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import kopf

from ..errors import OrionError
from . import mapping
from .orion_api import OrionApi
from .reconcile import Reconciler

GROUP, VERSION, PLURAL = "orion.veritasstack.io", "v1", "aiworkloads"
FINALIZER = "orion.veritasstack.io/finalizer"
log = logging.getLogger("orion.operator")


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs to know; every field has an environment variable."""

    url: str
    api_key: str
    tenant_mode: str = "namespace"  # ORION_OPERATOR_TENANTS: namespace | spec
    sync_s: float = 10.0  # ORION_OPERATOR_SYNC_S: the status timer's interval
    delete_grace_s: float = 300.0  # ORION_OPERATOR_DELETE_GRACE_S: see on_delete

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> "OperatorConfig":
        """From ``ORION_URL``, ``ORION_API_KEY_FILE`` or ``ORION_API_KEY``, ``ORION_OPERATOR_*``."""
        env = dict(os.environ if env is None else env)
        key = env.get("ORION_API_KEY", "")
        if env.get("ORION_API_KEY_FILE"):
            key = Path(env["ORION_API_KEY_FILE"]).read_text().strip()
        if not env.get("ORION_URL") or not key:
            raise ValueError("the operator needs ORION_URL and ORION_API_KEY_FILE (or ORION_API_KEY)")
        mode = env.get("ORION_OPERATOR_TENANTS", "namespace")
        if mode not in ("namespace", "spec"):
            raise ValueError("ORION_OPERATOR_TENANTS is namespace or spec")
        return cls(
            url=env["ORION_URL"],
            api_key=key,
            tenant_mode=mode,
            sync_s=float(env.get("ORION_OPERATOR_SYNC_S", "10")),
            delete_grace_s=float(env.get("ORION_OPERATOR_DELETE_GRACE_S", "300")),
        )

    def __repr__(self) -> str:  # the key never reaches a log line through a repr
        return f"OperatorConfig(url={self.url!r}, tenant_mode={self.tenant_mode!r}, sync_s={self.sync_s})"


_state: dict[str, Any] = {}


def configure(config: OperatorConfig) -> None:
    """Set the configuration the handlers use (before the operator starts)."""
    _state["config"] = config
    _state.pop("reconciler", None)


def _config() -> OperatorConfig:
    if "config" not in _state:
        _state["config"] = OperatorConfig.from_env()
    return _state["config"]


def _reconciler() -> Reconciler:
    if "reconciler" not in _state:
        cfg = _config()
        # few retries: a pass that cannot reach Orion fails fast and kopf retries it with backoff
        api = OrionApi(cfg.url, cfg.api_key, timeout=30.0, max_retries=2)
        _state["reconciler"] = Reconciler(api, tenant_mode=cfg.tenant_mode)
    return _state["reconciler"]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ours(spec: Any, **_: Any) -> bool:
    return mapping.is_ours(dict(spec or {}))


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # leader election (kopf's peering): with several replicas the one of the highest priority
    # handles everything and the others freeze until its peering record lapses; the priority is
    # random per process so no two replicas tie (a tie would let both run)
    settings.peering.priority = random.randint(1, 2**31 - 1)
    settings.posting.level = logging.WARNING


def _apply(spec: Any, meta: Any, status: Any, patch: kopf.Patch) -> None:
    m = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "generation": meta.get("generation"),
    }
    out = _reconciler().apply(spec=dict(spec or {}), meta=m, status=dict(status or {}), now=_now())
    for key, value in out.items():
        patch.status[key] = value


@kopf.on.resume(GROUP, VERSION, PLURAL, when=_ours)
@kopf.on.create(GROUP, VERSION, PLURAL, when=_ours)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", when=_ours)
def on_change(spec: Any, meta: Any, status: Any, patch: kopf.Patch, **_: Any) -> None:
    """Create, resume or a spec change: one step towards the spec (the timer does the rest)."""
    _apply(spec, meta, status, patch)


@kopf.timer(GROUP, VERSION, PLURAL, interval=float(os.environ.get("ORION_OPERATOR_SYNC_S", "10")), when=_ours)
def sync(spec: Any, meta: Any, status: Any, patch: kopf.Patch, **_: Any) -> None:
    """Mirror Orion's status, advance a rollout, recreate a lost record."""
    if meta.get("deletionTimestamp"):
        return
    _apply(spec, meta, status, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_ours)
def on_delete(spec: Any, meta: Any, status: Any, logger: Any, **_: Any) -> None:
    """Cancel or undeploy; the finalizer is always released. Orion's 404 is success. Any other
    failure (Orion down, a key refused) is retried for ``delete_grace_s`` after the deletion was
    asked; then the finalizer is released anyway with a warning event naming what may remain in
    Orion — a stuck namespace deletion is worse than a record an admin cancels by hand."""
    try:
        ns = meta.get("namespace") or "default"
        body = dict(spec or {})
        _reconciler().delete(spec=body, status=dict(status or {}), namespace=ns, name=meta.get("name") or "")
    except OrionError as exc:
        asked = meta.get("deletionTimestamp")
        since = _age_s(asked) if asked else 0.0
        if since < _config().delete_grace_s:
            raise kopf.TemporaryError(f"Orion did not take the cancel: {exc}", delay=10) from None
        left = (dict(status or {})).get("orionId")
        logger.warning(f"released without Orion's confirmation after {since:.0f}s; {left} may remain")


def _age_s(stamp: str) -> float:
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
