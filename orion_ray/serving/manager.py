"""The deployment manager's logic: deployments (one Serve application per model version), releases
(traffic policy per model), events, stuck detection and the GPU account of serving.

No Ray here: Serve sits behind a ``deployer`` and state persistence behind a ``kv`` passed in, and
the clock is an argument, so tests drive it directly. ``actor.py`` runs it as a detached actor.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict
from typing import Any, Callable, Optional, Protocol

from ..errors import Conflict, NotFound, ValidationError
from ..policy import traffic
from ..policy.resilience import DeploymentHealth, gpu_totals, stuck
from ..serving_specs import DeploymentSpec, ReleaseSpec, ScaleRequest
from . import rolling
from .manager_doubles import LocalManagerClient, MemoryDeployer, MemoryKv  # noqa: F401 (re-exported)
from .manager_front import APP_PREFIX, FrontHooks, app_name, model_route  # noqa: F401 (re-exported)
from .manager_usage import UsageHooks
from .replica_status import replica_view
from .scaling_events import MANUAL, ScalingLog
from .usage_meter import UsageMeter

MAX_EVENTS = 2000
MAX_SAMPLES = 20_000
DETAILS_EVERY_S = 2.0  # how often Serve's targets are read for autoscaling decisions


class Deployer(Protocol):
    """What the manager needs of Ray Serve."""

    def deploy(self, spec: DeploymentSpec, app: str, restart_nonce: int, front: bool = False) -> None: ...
    def delete(self, app: str) -> None: ...
    def statuses(self) -> dict[str, dict]: ...  # app → {"status", "message", "running"}


class Kv(Protocol):
    def load(self) -> Optional[dict]: ...
    def save(self, state: dict) -> None: ...


_SERVE_STATUS = {
    "RUNNING": "healthy",
    "DEPLOYING": "deploying",
    "DEPLOY_FAILED": "failed",
    "UNHEALTHY": "unhealthy",
    "DELETING": "deleting",
    "NOT_STARTED": "pending",
}


def _stats_view(stats: traffic.Stats) -> dict:
    """A version's outcomes as the API shows them (``latency_p95`` in seconds, or null)."""
    return {**asdict(stats), "error_rate": stats.error_rate}


def _clamp(n: int, a: Any) -> int:
    """Replicas Serve keeps when new autoscaling bounds ``a`` apply to ``n`` running."""
    return max(a.min_replicas, min(a.max_replicas, n))


def _replicas(spec: DeploymentSpec) -> int:
    """Replicas a spec starts with (autoscaling: its minimum)."""
    if spec.autoscaling is not None:
        a = spec.autoscaling
        return a.initial_replicas if a.initial_replicas is not None else a.min_replicas
    return spec.replicas if spec.replicas is not None else 1


class DeploymentManager(FrontHooks, UsageHooks):
    """Desired state of every model deployment and release; ``tick`` reconciles and advances."""

    def __init__(
        self,
        deployer: Deployer,
        kv: Optional[Kv] = None,
        clock: Callable[[], float] = time.time,
        room: Optional[Callable[[list, Optional[str]], Any]] = None,
        scaling_sink: Optional[Callable[[list], Any]] = None,
        usage_sink: Optional[Callable[[list], Any]] = None,
        default_caching: Optional[dict] = None,
    ):
        """``room(bundles, tenant_id)`` asks the scheduler to make room for new GPU replicas
        (preempting lower-class batch work); ``None``: replicas wait for free GPUs.
        ``scaling_sink(events)`` stores scaling events (the scheduler's store).
        ``usage_sink(records)`` stores serving usage records (``usage_meter.py``; the scheduler
        writes them to ``usage_records``); ``None``: they wait in the saved state.
        ``default_caching``: ``orion.serving.caching`` when the saved state holds none (a first
        start); once set it is saved state, so a restart keeps the latest ``orion up``'s."""
        self.deployer = deployer
        self.room = room
        self.usage_sink = usage_sink
        self.meter = UsageMeter()
        self.kv = kv or MemoryKv()
        self.clock = clock
        self.deployments: dict[str, dict] = {}  # id → {"spec", "since", "restarts", "nonce", ...}
        self.releases: dict[str, dict] = {}  # model_id → {"spec": ReleaseSpec, "state"}
        self.events: deque = deque(maxlen=MAX_EVENTS)
        self.samples: dict[tuple[str, str], deque] = {}
        self.scaling = ScalingLog(scaling_sink)
        self._details_at = 0.0
        # orion.serving.caching (docs/serving-routing.md)
        self.default_caching: Optional[dict] = default_caching
        self._load()

    def set_default_caching(self, caching: Optional[dict]) -> None:
        """The cluster's default response-cache block (``orion.serving.caching`` of the latest
        ``orion up``), saved with the desired state: an actor restart must not revert it to the
        value the actor was created with."""
        self.default_caching = caching
        self._save()

    def dispatch(self, method: str, *args: Any) -> Any:
        """Run a public method by name, its JSON arguments parsed (how the API calls it)."""
        if method.startswith("_") or method not in _METHODS:
            raise NotFound(f"no manager method {method}")
        if method == "scale":
            args = (args[0], ScaleRequest.model_validate(args[1]))
        elif method == "create":
            args = (DeploymentSpec.model_validate(args[0]),)
        elif method == "set_release":
            args = (ReleaseSpec.model_validate(args[0]),)
        return getattr(self, method)(*args)

    # -- persistence ---------------------------------------------------------------------------
    def _load(self) -> None:
        saved = self.kv.load()
        if not saved:
            return
        for d in saved.get("deployments", []):
            d["spec"] = DeploymentSpec.model_validate(d["spec"])
            self.deployments[d["spec"].id] = d
        for r in saved.get("releases", []):
            self.releases[r["spec"]["model_id"]] = {
                "spec": ReleaseSpec.model_validate(r["spec"]),
                "state": traffic.ReleaseState(**r["state"]),
                **({"rollout": r["rollout"]} if r.get("rollout") else {}),
            }
        self.events.extend(saved.get("events", []))
        self.scaling.load(saved.get("scaling"))
        self.meter.load(saved.get("usage"))
        if "default_caching" in saved:  # absent in state saved before it was
            self.default_caching = saved["default_caching"]

    def _save(self) -> None:
        self.kv.save(
            {
                "deployments": [
                    {**d, "spec": d["spec"].model_dump(mode="json")} for d in self.deployments.values()
                ],
                "releases": [
                    {
                        "spec": r["spec"].model_dump(mode="json"),
                        "state": asdict(r["state"]),
                        "rollout": r.get("rollout"),
                    }
                    for r in self.releases.values()
                ],
                "events": list(self.events)[-200:],
                "scaling": self.scaling.dump(),
                "usage": self.meter.state(),
                "default_caching": self.default_caching,
            }
        )

    def _event(
        self, model_id: str, kind: str, message: str, at: Optional[float] = None, **extra: Any
    ) -> None:
        self.events.append(
            {
                "at": at if at is not None else self.clock(),
                "model_id": model_id,
                "kind": kind,
                "message": message,
                **extra,
            }
        )

    # -- deployments ---------------------------------------------------------------------------
    def create(self, spec: DeploymentSpec) -> dict:
        """Deploy one model version (409 if it exists, or if the model belongs to another tenant)."""
        if spec.id in self.deployments:
            raise Conflict(f"deployment {spec.id} exists (undeploy it, or deploy a new version)")
        for d in self.deployments.values():
            if d["spec"].model_id == spec.model_id and d["spec"].tenant_id != spec.tenant_id:
                raise Conflict(
                    f"model {spec.model_id} belongs to tenant "
                    f"{d['spec'].tenant_id or '(shared)'}; versions share one owner"
                )
        rec = {
            "spec": spec,
            "since": self.clock(),
            "restarts": 0,
            "nonce": 0,
            "status": "pending",
            "message": "",
            "running": 0,
            # one version of a model serves its base URL (one Serve app per route prefix): the
            # first, or a new one when none does (versions deployed before base URLs existed)
            "front": not any(
                d["spec"].model_id == spec.model_id and d.get("front") for d in self.deployments.values()
            ),
        }
        self._make_room(spec, _replicas(spec))
        self._deploy(spec, 0, rec["front"])
        self.deployments[spec.id] = rec
        self._event(
            spec.model_id,
            "deployed",
            f"{spec.id}: engine {spec.engine}, {self._scale_text(spec)}, {spec.gpus():g} GPU per replica",
        )
        self._save()
        return self.view(spec.id)

    def _deploy(self, spec: DeploymentSpec, nonce: int, front: bool = False) -> None:
        """Hand a spec to Serve; a refusal is the request's fault (422), never a 500."""
        try:
            self.deployer.deploy(spec, app_name(spec.id), nonce, front=front)
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                f"Ray Serve refused deployment {spec.id}", [{"field": "spec", "problem": str(exc)[:500]}]
            ) from None

    def _make_room(self, spec: DeploymentSpec, replicas: int) -> None:
        """One GPU account: new GPU replicas get room from lower-class batch work, as a queued
        workload of class ``high`` would (best effort: Serve still places them when it can)."""
        if self.room is None or replicas <= 0 or spec.gpus() <= 0:
            return
        bundle = {"GPU": spec.gpus(), "CPU": spec.cpus_per_replica}
        try:
            got = self.room([bundle] * replicas, spec.tenant_id)
        except Exception as exc:  # the scheduler is down or restarting: replicas simply wait
            self._event(spec.model_id, "room_failed", f"{spec.id}: {exc}"[:300])
            return
        if got and got.get("preempted"):
            self._event(
                spec.model_id,
                "preempted_batch",
                f"{spec.id}: preempted {len(got['preempted'])} batch workload(s) for "
                f"{got.get('made_room', 0)} replica(s)",
            )

    @staticmethod
    def _scale_text(spec: DeploymentSpec) -> str:
        if spec.autoscaling:
            a = spec.autoscaling
            return f"autoscaling {a.min_replicas}..{a.max_replicas}"
        return f"{spec.replicas if spec.replicas is not None else 1} replicas"

    def _get(self, dep_id: str) -> dict:
        rec = self.deployments.get(dep_id)
        if rec is None:
            raise NotFound(f"no deployment {dep_id}")
        return rec

    def view(self, dep_id: str) -> dict:
        """A deployment as the API shows it."""
        rec = self._get(dep_id)
        spec: DeploymentSpec = rec["spec"]
        return {
            "id": dep_id,
            "model_id": spec.model_id,
            "version": spec.version,
            "engine": spec.engine,
            "tenant_id": spec.tenant_id,
            "status": rec["status"],
            "message": rec["message"],
            "running_replicas": rec["running"],
            "alive_replicas": rec.get("alive", rec["running"]),  # starting and stopping ones too
            "restarts": rec["restarts"],
            "app": app_name(dep_id),
            "base_url": f"{model_route(spec.model_id)}/v1" if rec.get("front") else None,
            "gpus_per_replica": spec.gpus(),
            "since": rec["since"],
            "spec": spec.model_dump(mode="json"),
        }

    def list(
        self, model_id: Optional[str] = None, tenant_id: Optional[str] = None, status: Optional[str] = None
    ) -> list[dict]:
        out = [self.view(i) for i in sorted(self.deployments)]
        return [
            d
            for d in out
            if (model_id is None or d["model_id"] == model_id)
            and (tenant_id is None or d["tenant_id"] == tenant_id)
            and (status is None or d["status"] == status)
        ]

    def delete(self, dep_id: str) -> dict:
        """Undeploy a version; refused (409) while a release sends it traffic."""
        rec = self._get(dep_id)
        spec: DeploymentSpec = rec["spec"]
        rel = self.releases.get(spec.model_id)
        last = not any(
            d["spec"].model_id == spec.model_id and i != dep_id for i, d in self.deployments.items()
        )
        # a version is needed while it takes traffic, or while a release may roll back to it
        if (
            rel is not None
            and not last
            and (
                rel["state"].weights.get(spec.version, 0) > 0
                or (
                    rel["spec"].stable == spec.version
                    and rel["state"].phase in (traffic.RUNNING, traffic.TESTING)
                )
            )
        ):
            raise Conflict(
                f"{dep_id} takes traffic in model {spec.model_id}'s release; "
                "change the release first (or undeploy the other versions)"
            )
        self.deployer.delete(app_name(dep_id))
        self._observe_usage(self.clock())
        self.meter.close(dep_id, self.clock())  # its last replica-hours and tokens
        self._send_usage()
        del self.deployments[dep_id]
        self.scaling.forget(dep_id, self.clock())
        if rec.get("front"):
            self._move_front(spec.model_id)
        if not any(d["spec"].model_id == spec.model_id for d in self.deployments.values()):
            self.releases.pop(spec.model_id, None)
        self._event(spec.model_id, "undeployed", dep_id)
        self._save()
        return {"id": dep_id, "status": "deleted"}

    def restart(self, dep_id: str, why: str = "by request") -> dict:
        """Replace every replica (a new nonce makes Serve roll them)."""
        rec = self._get(dep_id)
        rec["nonce"] += 1
        rec["restarts"] += 1
        rec["since"] = self.clock()
        rec["status"] = "deploying"
        self._deploy(rec["spec"], rec["nonce"], rec.get("front", False))
        self._event(rec["spec"].model_id, "restarted", f"{dep_id}: {why}")
        self._save()
        return self.view(dep_id)

    def scale(self, model_id: str, req: ScaleRequest) -> list[dict]:
        """New replica count or autoscaling bounds for a model's versions."""
        recs = [
            r
            for r in self.deployments.values()
            if r["spec"].model_id == model_id and (req.version is None or r["spec"].version == req.version)
        ]
        if not recs:
            raise NotFound(
                f"no deployment of model {model_id}" + (f" version {req.version}" if req.version else "")
            )
        out = []
        self._observe_usage(self.clock())
        for rec in recs:  # replica-hours at the old count are recorded before the count changes
            self.meter.cut(self.clock(), only=rec["spec"].id)
        self._send_usage()
        for rec in recs:
            spec = rec["spec"].model_copy(update={"replicas": req.replicas, "autoscaling": req.autoscaling})
            self._make_room(spec, _replicas(spec) - _replicas(rec["spec"]))
            self._deploy(spec, rec["nonce"], rec.get("front", False))
            before = self.scaling.targets.get(spec.id, rec.get("target", _replicas(rec["spec"])))
            after = req.replicas if req.replicas is not None else _clamp(before, req.autoscaling)
            self.scaling.requested(
                spec.id,
                model_id,
                trigger=MANUAL,
                before=before,
                after=after,
                reason=f"scale: {self._scale_text(spec)}",
                now=self.clock(),
            )
            rec["spec"], rec["target"] = spec, after
            self._event(model_id, "scaled", f"{rec['spec'].id}: {self._scale_text(rec['spec'])}")
            out.append(self.view(rec["spec"].id))
        self._save()
        return out

    # -- releases ------------------------------------------------------------------------------
    def set_release(self, spec: ReleaseSpec) -> dict:
        """Apply a release; every version it names must be deployed (422 naming the one missing)."""
        deployed = {
            d["spec"].version for d in self.deployments.values() if d["spec"].model_id == spec.model_id
        }
        if not deployed:
            raise NotFound(f"no deployment of model {spec.model_id}")
        for v in sorted(spec.versions()):
            if v not in deployed:
                raise ValidationError(
                    "release names a version that is not deployed",
                    [
                        {
                            "field": "versions",
                            "problem": f"{spec.model_id} has no version {v!r} "
                            f"(deployed: {', '.join(sorted(deployed))})",
                        }
                    ],
                )
        now = self.clock()
        rollout_record: Optional[dict] = None
        if spec.replaces_replicas():
            state, events, rollout_record = rolling.begin(self, spec, now)
        else:
            state, events = traffic.start(spec, now)
        self.releases[spec.model_id] = {"spec": spec, "state": state}
        if rollout_record is not None:
            self.releases[spec.model_id]["rollout"] = rollout_record
        for v in spec.versions():
            self.samples.pop((spec.model_id, v), None)
        self._record(events)
        self._save()
        return self.release_view(spec.model_id)

    def rollback(self, model_id: str) -> dict:
        rel = self._release(model_id)
        if "rollout" in rel and rel["state"].phase == traffic.RUNNING:
            rolling.operator_rollback(self, rel, self.clock(), "by request")
        rel["state"], events = traffic.rollback(rel["spec"], rel["state"], self.clock())
        self._record(events)
        self._save()
        return self.release_view(model_id)

    def _release(self, model_id: str) -> dict:
        rel = self.releases.get(model_id)
        if rel is None:
            raise NotFound(f"model {model_id} has no release")
        return rel

    def _record(self, events: list[traffic.Event]) -> None:
        for e in events:
            self._event(e.model_id, e.kind, e.message, at=e.at, weights=dict(e.weights))

    def release_view(self, model_id: str) -> dict:
        """The release as the API shows it. ``stats``: each version's outcomes since the release
        was applied; ``window``: the same since the current step (or testing period) began, the
        evidence ``tick`` judges the candidate on, so a reader sees what a rollback would be
        decided from. Each carries its ``error_rate`` (a fraction) so no client computes it."""
        rel = self._release(model_id)
        spec, state = rel["spec"], rel["state"]
        versions = sorted(spec.versions())
        return {
            "model_id": model_id,
            "strategy": spec.strategy,
            "phase": state.phase,
            "step": state.step,
            "weights": dict(state.weights),
            "stats": {v: _stats_view(self._stats(model_id, v, 0.0)) for v in versions},
            "window": {
                "since": state.since,
                "stats": {v: _stats_view(self._stats(model_id, v, state.since)) for v in versions},
            },
            "spec": spec.model_dump(mode="json"),
        }

    def list_releases(self) -> list[dict]:
        """Every model's release (``release_view``), by model: one call for a page of models
        instead of one per model, and no 404 for the models that have none."""
        return [self.release_view(m) for m in sorted(self.releases)]

    def list_events(self, model_id: Optional[str] = None, limit: int = 100) -> list[dict]:
        out = [e for e in self.events if model_id is None or e["model_id"] == model_id]
        return out[-limit:][::-1]

    # -- outcomes, from the routers ------------------------------------------------------------
    def report(self, samples: list[tuple[str, str, bool, float]]) -> None:
        """``(model_id, version, ok, latency_s)`` outcomes seen by a router since its last report."""
        now = self.clock()
        for model_id, version, ok, latency in samples:
            q = self.samples.setdefault((model_id, version), deque(maxlen=MAX_SAMPLES))
            q.append((now, bool(ok), float(latency)))

    def _stats(self, model_id: str, version: str, since: float) -> traffic.Stats:
        q = self.samples.get((model_id, version), ())
        return traffic.Stats.of((ok, lat) for t, ok, lat in q if t >= since)

    # -- the loop ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Reconcile statuses, restart stuck deployments, advance or roll back releases, and
        record serving usage once a period."""
        if not self.deployments:  # idle Orion: no Serve calls twice a second
            self._record_usage(self.clock())  # what an undeploy left to send
            return
        now = self.clock()
        self.refresh_status()
        self._observe_usage(now)
        self._record_usage(now)
        health = [
            DeploymentHealth(i, r["status"] == "healthy", r["since"], r["spec"].ready_deadline)
            for i, r in self.deployments.items()
        ]
        for dep_id in stuck(health, now):
            rec = self.deployments[dep_id]
            self._event(
                rec["spec"].model_id,
                "stuck",
                f"{dep_id} not healthy {now - rec['since']:.0f}s after deploy "
                f"(status {rec['status']}: {rec['message'][:200]})",
            )
            self.restart(dep_id, "stuck: not healthy within its deadline")
        changed = False
        for model_id, rel in self.releases.items():
            spec, state = rel["spec"], rel["state"]
            if not spec.candidate:
                continue
            if "rollout" in rel:
                changed = rolling.drive(self, rel, now) or changed
                continue
            stats = self._stats(model_id, spec.candidate, state.since)
            rel["state"], events = traffic.evaluate(spec, state, stats, now)
            self._record(events)
            changed = changed or bool(events)
        changed = self._observe_scaling(now) or changed
        if changed:
            self._save()

    def _observe_scaling(self, now: float) -> bool:
        """Serve's targets (every ``DETAILS_EVERY_S``) into scaling events; the outbox flushed."""
        targets: dict[str, Optional[int]] = {}
        details = getattr(self.deployer, "targets", None)
        if details is not None and now - self._details_at >= DETAILS_EVERY_S:
            self._details_at = now
            try:
                targets = details()
            except Exception:  # the controller is restarting: next time
                targets = {}
        before = (len(self.scaling.open), len(self.scaling.outbox))
        for dep_id, rec in self.deployments.items():
            self.scaling.observe(
                dep_id,
                rec["spec"].model_id,
                target=targets.get(app_name(dep_id)),
                running=rec["running"],
                now=now,
                deadline=rec["spec"].ready_deadline,
            )
        sent = self.scaling.flush()
        return bool(sent) or before != (len(self.scaling.open), len(self.scaling.outbox))

    def status(self, dep_id: str) -> dict:
        """A deployment with its replicas: id, node, GPUs, state, restarts, last health check
        (``GET /internal/deployments/{id}/status``)."""
        out = self.view(dep_id)
        spec: DeploymentSpec = self._get(dep_id)["spec"]
        read = getattr(self.deployer, "replicas", None)
        rows = read(app_name(dep_id)) if read is not None else None
        out["replicas"] = [replica_view(r, spec.gpus()) for r in rows] if rows is not None else None
        return out

    def refresh_status(self) -> None:
        statuses = self.deployer.statuses()
        for dep_id, rec in self.deployments.items():
            s = statuses.get(app_name(dep_id))
            if s is None:
                rec["status"], rec["running"] = "pending", 0
                continue
            rec["status"] = _SERVE_STATUS.get(s["status"], s["status"].lower())
            rec["message"], rec["running"] = s.get("message", ""), s.get("running", 0)
            rec["alive"] = s.get("alive", rec["running"])

    # -- what routers and the scheduler read (the routing table: FrontHooks) -----------------
    def gpu_usage(self) -> dict:
        """GPUs that serving replicas hold, per deployment and per tenant (shared models count
        under ``"shared"``). Running replicas count; a deployment not yet running counts what it
        asks for, so a pending scale-up is not promised to batch work meanwhile."""
        by_dep = {}
        for dep_id, rec in self.deployments.items():
            spec: DeploymentSpec = rec["spec"]
            desired = (
                spec.autoscaling.min_replicas
                if spec.autoscaling
                else (spec.replicas if spec.replicas is not None else 1)
            )
            n = max(rec["running"], desired)
            by_dep[dep_id] = (spec.tenant_id or "shared", n, spec.gpus())
        by_tenant = gpu_totals(by_dep)
        return {
            "total": sum(by_tenant.values()),
            "by_tenant": by_tenant,
            "by_deployment": {
                i: {"tenant_id": t, "replicas": n, "gpus_per_replica": g, "gpus": n * g}
                for i, (t, n, g) in by_dep.items()
            },
        }


_METHODS = {
    "create",
    "view",
    "status",
    "list",
    "delete",
    "restart",
    "scale",
    "set_release",
    "rollback",
    "release_view",
    "list_releases",
    "list_events",
    "report",
    "report_usage",
    "routing_table",
    "gpu_usage",
}
