"""A region applies a control plane's config snapshot without a restart (docs/regions-config.md).

``apply_config_snapshot`` refuses first (hash, stale or forked version, every section's values —
``policy/config_apply.py``), then swaps every section with no ``await`` in between, so no cycle
runs on half a configuration: tenants and their quotas, the policy, the worker pools the
autoscaler reads from ``autoscaler_view`` on its next step, cluster templates and prices. The
applied record (version, hash, body, effective pools) is written last: a crash in the middle leaves
the old version reported, the control plane sees the drift and the region applies it again (the
apply is idempotent), so a restarted region always reports what it runs.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..policy import config_apply as ca
from ..policy import config_snapshot as cfg
from . import policy_bridge as bridge

APPLIED = "config_applied"  # the settings row of the applied snapshot


def _snapshot_of(record: Optional[dict[str, Any]]) -> Optional[cfg.Snapshot]:
    if not record or not record.get("version"):
        return None
    return cfg.Snapshot(version=int(record["version"]), sha256=str(record["sha256"]), body=record["body"])


class ConfigApplyMixin:
    """``apply_config_snapshot`` and ``applied_config`` of a ``Scheduler`` (``self``)."""

    store: Any
    book: Any
    tenants: Any
    clock: Callable[[], float]
    fair: Any
    planner: Any
    policy: Any
    policy_config: Any
    autoscaler_status: dict[str, Any]

    def _applied_record(self) -> Optional[dict[str, Any]]:
        if not hasattr(self, "_config_applied"):
            self._config_applied: Optional[dict[str, Any]] = self.store.get_setting(APPLIED, None)
        return self._config_applied

    def pools_config(self) -> Optional[dict[str, Any]]:
        """The worker pools the autoscaler runs, if a snapshot manages them: ``{version, pools}``."""
        rec = self._applied_record()
        if not rec or rec.get("pools") is None:
            return None
        return {"version": rec.get("pools_version", rec["version"]), "pools": rec["pools"]}

    def config_overridden(self, who: str) -> None:
        """A local ``orion reload`` / ``orion up`` replaced tenants or policy: the applied version no
        longer describes what runs, so it is reported as 0 and the control plane's next push
        applies again (the control plane's configuration wins in a managed region)."""
        rec = self._applied_record()
        if rec and rec.get("version"):
            rec = {**rec, "version": 0, "overridden": {"by": who, "at": self.clock()}}
            self.store.put_setting(APPLIED, rec)
            self._config_applied = rec

    async def applied_config(self) -> dict[str, Any]:
        """The applied snapshot: version and hash (0 and "" when none), when, by section the names it
        sets, the pools the autoscaler runs (removed ones still draining: ``retiring``), templates
        and prices."""
        rec = self._applied_record() or {}
        body = rec.get("body") or {}
        return {
            "version": int(rec.get("version") or 0),
            "sha256": str(rec.get("sha256") or "") if rec.get("version") else "",
            "last_version": int(rec.get("last_version") or rec.get("version") or 0),
            "applied_at": rec.get("at"),
            "overridden": rec.get("overridden"),
            "sections": {s: sorted(body.get(s) or {}) for s in cfg.SECTIONS},
            "pools": [p["name"] for p in rec.get("pools") or []],
            "retiring": list(rec.get("retiring") or []),
            "autoscaler_pools": sorted(p.get("pool", "") for p in self.autoscaler_status.get("pools", [])),
            "templates": dict(body.get("templates") or {}),
            "prices": dict(body.get("prices") or {}),
        }

    async def apply_config_snapshot(self, snapshot: dict) -> dict[str, Any]:
        """Apply ``{version, sha256, body|text}`` whole or not at all. The answer: ``outcome``
        (``applied``, ``unchanged``, ``invalid``, ``stale``), ``applied: {version, sha256}`` (what
        runs now), ``changed: {section: [names]}`` and ``refused: [{field, reason}]``."""
        rec = self._applied_record()
        current = _snapshot_of(rec)
        running = {"version": current.version, "sha256": current.sha256} if current else None

        def refuse(outcome: str, problems: list[dict[str, str]]) -> dict[str, Any]:
            return {"outcome": outcome, "applied": running, "changed": {}, "refused": problems}

        try:
            snap = ca.read_snapshot(snapshot)
        except cfg.SnapshotError as exc:
            return refuse("invalid", [_from_error(exc)])
        try:
            plan = cfg.plan_apply(current, snap)
        except cfg.SnapshotError as exc:
            return refuse("stale", [_from_error(exc)])
        if current is not None and snap.version == current.version:  # the same bytes (plan_apply checked)
            return {"outcome": "unchanged", "applied": running, "changed": {}, "refused": []}
        checked = ca.validate(snap.body, current_tenants=sorted(self.tenants.tenants))
        keys: dict[str, str] = {}
        problems = list(checked.refused)
        if checked.tenants is not None:
            keys, more = ca.tenant_keys(checked.tenants, self.tenants.keys)
            problems += more
        if problems:
            return refuse("invalid", problems)
        busy = {p.get("pool", ""): int(p.get("current", 0)) for p in self.autoscaler_status.get("pools", [])}
        pools = ca.pool_plan(
            (rec or {}).get("pools"),
            [p.model_dump(mode="json", exclude_defaults=True) for p in checked.pools]
            if checked.pools is not None
            else None,
            busy=busy,
        )
        # -- the swap: no await from here to the end, so the loop sees all of it or none of it --
        if checked.tenants is not None:
            self.tenants.configure(
                [t.model_dump(mode="json", exclude={"api_key_sha256"}) for t in checked.tenants], keys
            )
        if checked.policy is not None:
            self.store.put_setting("policy", checked.policy.model_dump(mode="json"))
            self.policy_config = checked.policy
            self.fair.half_life_s = checked.policy.fair_share_half_life_s
        self.policy = bridge.settings_from(self.tenants.tenants.values(), self.policy_config)
        self.planner.invalidate()  # quotas and order may have changed: the next pass is a full one
        self.book.version += 1
        changed = {s: sorted({*d["added"], *d["removed"], *d["changed"]}) for s, d in plan.changes.items()}
        new_rec = {
            "version": snap.version,
            "sha256": snap.sha256,
            "last_version": snap.version,
            "body": snap.body,
            "at": self.clock(),
            "pools": pools["pools"],
            "pools_version": snap.version,
            "retiring": pools["retiring"],
        }
        self.store.put_setting(APPLIED, new_rec)  # last: what is reported is what runs
        self._config_applied = new_rec
        self.store.audit(
            "control-plane",
            "apply_config_snapshot",
            None,
            {"version": snap.version, "sha256": snap.sha256, "from": plan.from_version, "changed": changed},
            self.clock(),
        )
        return {
            "outcome": "applied",
            "applied": {"version": snap.version, "sha256": snap.sha256},
            "changed": changed,
            "refused": [],
            "pools": {k: pools[k] for k in ("added", "changed", "removed", "retiring")},
        }


def _from_error(exc: cfg.SnapshotError) -> dict[str, str]:
    """A ``SnapshotError`` ("field: reason") as a refusal."""
    text = str(exc)
    field, _, reason = text.partition(": ")
    return {"field": field if reason else "snapshot", "reason": reason or text}
