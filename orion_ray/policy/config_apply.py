"""What a region does with a config snapshot (pure): read it, validate every section, and turn the
diff into actions (docs/regions-config.md).

A snapshot is applied whole or not at all, so everything that can refuse it happens here, before
anything is swapped: the hash, the version against the applied one (``config_snapshot.plan_apply``:
stale or forked versions are refused) and every section's values, each problem as
``{field, reason}``. An *empty* section means "not managed by the control plane": the region keeps
its own (``orion.yaml``) setting for it, so a control plane that only publishes tenants does not wipe
a region's pools.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..config import PolicyConfig, TenantConfig
from ..worker_pools import WorkerPool
from . import config_snapshot as cfg

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _problem(field_: str, reason: str) -> dict[str, str]:
    return {"field": field_, "reason": reason}


def read_snapshot(raw: Any) -> cfg.Snapshot:
    """A snapshot as the control plane serves it — ``{version, sha256, text}`` (canonical text) or
    ``{version, sha256, body}`` — with its hash verified; ``SnapshotError`` names the field."""
    if not isinstance(raw, Mapping):
        raise cfg.SnapshotError("snapshot: a JSON object with version, sha256 and body")
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise cfg.SnapshotError("version: an integer of 1 or more")
    sha = raw.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise cfg.SnapshotError("sha256: 64 lowercase hex digits")
    if isinstance(raw.get("text"), str):
        return cfg.verify(version, sha, raw["text"])
    body = raw.get("body")
    if not isinstance(body, Mapping):
        raise cfg.SnapshotError("body: a mapping of section → settings")
    snap = cfg.build(body, version=version)  # canonical form, absent sections empty
    if snap.sha256 != sha:
        raise cfg.SnapshotError("sha256: does not match the snapshot's body")
    return snap


@dataclass(frozen=True)
class Validated:
    """Every section parsed; ``None`` for an empty section (the region keeps its own)."""

    tenants: Optional[list[TenantConfig]] = None
    policy: Optional[PolicyConfig] = None
    pools: Optional[list[WorkerPool]] = None
    templates: Optional[dict[str, dict[str, Any]]] = None
    prices: Optional[dict[str, float]] = None
    refused: list[dict[str, str]] = field(default_factory=list)


def _errors(prefix: str, exc: PydanticValidationError) -> list[dict[str, str]]:
    return [
        _problem(".".join([prefix, *(str(p) for p in e.get("loc", ()))]).rstrip("."), e.get("msg", ""))
        for e in exc.errors()
    ]


def _named(section: str, name: str, value: Any, model: type[BaseModel], key: str) -> Any:
    """``value`` (one entry of ``section``) parsed as ``model`` with its name as ``key``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{section}.{name}: a mapping of settings")
    if key in value and value[key] != name:
        raise ValueError(f"{section}.{name}.{key}: {value[key]!r} differs from the entry's name")
    return model.model_validate({**value, key: name})


def _section(body: Mapping[str, Any], name: str, refused: list[dict[str, str]]) -> dict[str, Any]:
    value = body.get(name) or {}
    if not isinstance(value, Mapping):
        refused.append(_problem(name, "a mapping of name → settings"))
        return {}
    return dict(value)


def _tenants(body: Mapping[str, Any], refused: list[dict[str, str]]) -> Optional[list[TenantConfig]]:
    out = []
    for name, value in sorted(_section(body, "tenants", refused).items()):
        try:
            out.append(_named("tenants", name, value, TenantConfig, "id"))
        except PydanticValidationError as exc:
            refused.extend(_errors(f"tenants.{name}", exc))
        except ValueError as exc:
            refused.append(_problem(f"tenants.{name}", str(exc)))
    return out or None


def _quotas(
    body: Mapping[str, Any], tenant_ids: Sequence[str], refused: list[dict[str, str]]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for tenant, amounts in sorted(_section(body, "quotas", refused).items()):
        where = f"quotas.{tenant}"
        if tenant not in tenant_ids:
            refused.append(_problem(where, "no such tenant (in the snapshot's tenants or the region's)"))
            continue
        if not isinstance(amounts, Mapping):
            refused.append(_problem(where, "a mapping of resource → amount"))
            continue
        good: dict[str, float] = {}
        for res, amount in amounts.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
                refused.append(_problem(f"{where}.{res}", f"{amount!r} is not a number"))
            elif amount < 0:
                refused.append(_problem(f"{where}.{res}", "must not be negative"))
            else:
                good[str(res)] = float(amount)
        out[tenant] = good
    return out


def _pools(body: Mapping[str, Any], refused: list[dict[str, str]]) -> Optional[list[WorkerPool]]:
    out = []
    for name, value in sorted(_section(body, "pools", refused).items()):
        try:
            out.append(_named("pools", name, value, WorkerPool, "name"))
        except PydanticValidationError as exc:
            refused.extend(_errors(f"pools.{name}", exc))
        except ValueError as exc:
            refused.append(_problem(f"pools.{name}", str(exc)))
    return out or None


def _templates(body: Mapping[str, Any], refused: list[dict[str, str]]) -> Optional[dict[str, dict[str, Any]]]:
    """Cluster templates (Ray cluster-launcher documents): mappings; the keys the launcher needs
    to be of the right type are checked, the rest is the launcher's to judge."""
    out = {}
    for name, value in sorted(_section(body, "templates", refused).items()):
        where = f"templates.{name}"
        if not isinstance(value, Mapping):
            refused.append(_problem(where, "a mapping (a Ray cluster-launcher document)"))
            continue
        mw = value.get("max_workers")
        if mw is not None and (isinstance(mw, bool) or not isinstance(mw, int) or mw < 0):
            refused.append(_problem(f"{where}.max_workers", "a non-negative integer"))
        types = value.get("available_node_types")
        if types is not None and not isinstance(types, Mapping):
            refused.append(_problem(f"{where}.available_node_types", "a mapping of node type → settings"))
        out[name] = dict(value)
    return out or None


def _prices(body: Mapping[str, Any], refused: list[dict[str, str]]) -> Optional[dict[str, float]]:
    """``{instance type or "gpu:<type>" or "cpu": $ per hour}``."""
    out = {}
    for name, value in sorted(_section(body, "prices", refused).items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            refused.append(_problem(f"prices.{name}", f"{value!r} is not a number ($ per hour)"))
        elif value < 0:
            refused.append(_problem(f"prices.{name}", "must not be negative"))
        else:
            out[name] = float(value)
    return out or None


def validate(body: Mapping[str, Any], *, current_tenants: Sequence[str] = ()) -> Validated:
    """Every section of ``body`` parsed; ``refused`` lists every problem (empty: applicable).

    Quotas override the quota of a tenant in the snapshot's tenants (or, if that section is empty,
    of a tenant the region already has)."""
    refused: list[dict[str, str]] = []
    tenants = _tenants(body, refused)
    ids = [t.id for t in tenants] if tenants is not None else list(current_tenants)
    quotas = _quotas(body, ids, refused)
    if quotas and tenants is None:
        refused.append(_problem("quotas", "quotas need the tenants section (the tenants they apply to)"))
    if tenants is not None:
        tenants = [t.model_copy(update={"quota": quotas[t.id]}) if t.id in quotas else t for t in tenants]
    policy = None
    policies = _section(body, "policies", refused)
    if policies:
        try:
            policy = PolicyConfig.model_validate(policies)
        except PydanticValidationError as exc:
            refused.extend(_errors("policies", exc))
    return Validated(
        tenants=tenants,
        policy=policy,
        pools=_pools(body, refused),
        templates=_templates(body, refused),
        prices=_prices(body, refused),
        refused=refused,
    )


def tenant_keys(
    tenants: Sequence[TenantConfig], current_keys: Mapping[str, str]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The key hashes (sha256 → tenant) after the swap: a tenant's hashes from the snapshot, else
    the ones it has now (a snapshot need not repeat hashes, and never carries keys); a hash
    claimed by two tenants is refused."""
    ids = {t.id for t in tenants}
    given = {t.id for t in tenants if t.api_key_sha256}
    keys = {h: t for h, t in current_keys.items() if t in ids and t not in given}
    refused = []
    for t in tenants:
        for h in t.api_key_sha256:
            if keys.get(h, t.id) != t.id:
                refused.append(_problem(f"tenants.{t.id}.api_key_sha256", f"also a key of {keys[h]}"))
            keys[h] = t.id
    return keys, refused


def retire(pool: Mapping[str, Any]) -> dict[str, Any]:
    """A removed pool as the autoscaler keeps it: no new nodes (``max_size`` 0), and its idle
    nodes released after ``idle_s`` — nodes running work keep it to the end (drained, not killed)."""
    return {**pool, "min_size": 0, "max_size": 0, "schedule": [], "retired": True}


def pool_plan(
    old: Optional[Sequence[Mapping[str, Any]]],
    new: Optional[Sequence[Mapping[str, Any]]],
    *,
    busy: Mapping[str, int] = {},
) -> dict[str, Any]:
    """What the autoscaler runs after the swap, from the pools before (``None``: the region's own)
    and the snapshot's (``None``: back to the region's own): ``added``, ``changed``, ``removed``
    names, and ``pools`` — the new list plus each removed pool retired while ``busy`` (pool → its
    nodes now) says it still has nodes."""
    before = {str(p["name"]): dict(p) for p in old or [] if not p.get("retired")}
    retired_before = {str(p["name"]): dict(p) for p in old or [] if p.get("retired")}
    after = {str(p["name"]): dict(p) for p in new or []}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(
        n for n in set(before) & set(after) if cfg.canonical(before[n]) != cfg.canonical(after[n])
    )
    keep = {**retired_before, **{n: retire(before[n]) for n in removed}}
    retiring = sorted(n for n in keep if n not in after and busy.get(n, 1) > 0)
    # back to the region's own pools: its autoscaler no longer knows the managed ones, so their
    # nodes are neither grown nor released by it (nothing running is killed either way)
    pools = None if new is None else [after[n] for n in sorted(after)] + [keep[n] for n in retiring]
    return {"added": added, "changed": changed, "removed": removed, "retiring": retiring, "pools": pools}
