"""The deployment manager's serving usage (docs/serving-limits.md): tokens reported by the routers,
replica-hours observed each tick, records cut on a period and handed to the sink (the scheduler
stores them in ``usage_records``), each priced on the pool and market of the nodes its replicas
run on. A mixin of ``DeploymentManager``: it uses the manager's ``deployer``, ``meter``,
``deployments``, ``usage_sink``, ``clock``, ``_event`` and ``_save``."""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..serving_specs import DeploymentSpec, deployment_id
from .usage_meter import UsageMeter

PLACEMENT_EVERY_S = 2.0  # how often replicas' nodes are read (a replica rarely moves)


class UsageHooks:
    deployer: Any
    meter: UsageMeter
    deployments: dict[str, dict]
    usage_sink: Optional[Callable[[list], Any]]
    clock: Callable[[], float]
    _event: Callable[..., Any]
    _save: Callable[[], None]

    def report_usage(self, items: list) -> None:
        """``(tenant, model_id, version, prompt_tokens, completion_tokens)`` of answers a router
        gave since its last report: the tokens of the next usage records."""
        now = self.clock()
        for tenant, model_id, version, prompt, completion in items:
            self.meter.add_tokens(
                deployment_id(model_id, version), str(tenant), int(prompt) + int(completion), now
            )

    _placed_at = -1e18

    def _placements(self, now: float) -> Optional[dict[str, dict]]:
        """Deployment → its running replicas by (pool, market), read from Serve and the nodes'
        labels every ``PLACEMENT_EVERY_S`` (None between reads, or when the deployer cannot say:
        the meter keeps the last proportions)."""
        read = getattr(self.deployer, "placements", None)
        if read is None or now - self._placed_at < PLACEMENT_EVERY_S:
            return None
        self._placed_at = now
        try:
            by_app = read()
        except Exception:  # the controller is restarting: next time
            return None
        from .manager import app_name

        return {dep_id: by_app.get(app_name(dep_id), {}) for dep_id in self.deployments}

    def _observe_usage(self, now: float) -> None:
        placed = self._placements(now)
        for dep_id, rec in self.deployments.items():
            spec: DeploymentSpec = rec["spec"]
            self.meter.observe(
                dep_id,
                now,
                replicas=int(rec.get("running") or 0),
                tenant=spec.tenant_id,
                gpus=spec.gpus(),
                # what Serve reserves for a replica that asks for no CPU (deployer.py): one CPU
                cpus=spec.cpus_per_replica if (spec.cpus_per_replica or spec.gpus()) else 1.0,
                where=placed.get(dep_id) if placed is not None else None,
            )

    def _record_usage(self, now: float) -> None:
        """Once a period: cut the records and hand them (and any left unsent) to the sink."""
        if not self.meter.due(now):
            return
        self.meter.cut(now)
        self._send_usage()
        self._save()  # the marks moved: a restart resumes from here

    def _send_usage(self) -> None:
        pending = self.meter.pending
        if not pending or self.usage_sink is None:
            return
        n = len(pending)
        try:
            self.usage_sink(pending[:n])
        except Exception as exc:  # the scheduler is down or restarting: kept for the next period
            self._event("", "usage_unsent", f"{n} usage record(s) wait: {exc}"[:300])
            return
        self.meter.sent(n)
