"""``orion-api``: the REST app as a Ray Serve application with a FastAPI ingress."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, Callable, Optional

import ray
from ray import serve

from ..config import PolicyConfig, RateLimit
from ..control import credential
from ..errors import SchedulerUnavailable
from ..scheduler.actor import get_scheduler
from .app import build_app
from .auth import KeyRing
from .store_access import StoreAccess

APP_NAME = "orion-api"
HEAD_RESOURCE = "node:__internal_head__"  # what ``ray_runtime.head_node_id`` looks for too


async def _awaitable(ref):
    """An ObjectRef (or a test's awaitable) as a coroutine, so ``wait_for`` can cancel it."""
    return await ref


# Calls that must answer quickly whatever the default: /health is polled by load balancers, an
# ack only improves an answer the store already has, explain falls back to its stored parts.
SHORT_TIMEOUTS_S = {"health": 5.0, "ack": 2.0, "explain": 3.0, "keyring": 2.0}


class ActorBackend:
    """The scheduler actor behind the API. Every call has a timeout; a dead, restarting or
    silent actor becomes a 503 with ``Retry-After``, and a handle whose actor died is resolved
    again by name on the next call (a restarted or redeployed scheduler is found)."""

    def __init__(
        self,
        handle=None,
        *,
        timeout_s: float = 10.0,
        resolve: Optional[Callable[[], Any]] = None,
        control_token: Optional[str] = None,
    ):
        self._handle = handle
        self._token = control_token  # the control plane's credential: the actor refuses calls without it
        self.timeout_s = timeout_s
        self._resolve = resolve or get_scheduler

    def _actor(self):
        if self._handle is None:
            try:
                self._handle = self._resolve()
            except ValueError:
                raise SchedulerUnavailable("the scheduler actor is not running", retry_after=2) from None
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        timeout = min(self.timeout_s, SHORT_TIMEOUTS_S.get(method, self.timeout_s))
        try:
            ref = getattr(self._actor(), method).remote(*args, **credential(self._token))
            return await asyncio.wait_for(_awaitable(ref), timeout)
        except asyncio.TimeoutError:
            raise SchedulerUnavailable(
                f"the scheduler did not answer {method} within {timeout:g}s", retry_after=2
            ) from None
        except ray.exceptions.ActorUnavailableError as exc:  # restarting: the handle stays good
            raise SchedulerUnavailable(
                f"the scheduler is restarting ({type(exc).__name__})", retry_after=1
            ) from None
        except ray.exceptions.RayActorError as exc:  # died: find it again by name next time
            self._handle = None
            raise SchedulerUnavailable(
                f"the scheduler is restarting ({type(exc).__name__})", retry_after=1
            ) from None

    async def notify(self) -> None:
        """Fire and forget: new rows are in the store (the scheduler tails it anyway)."""
        try:
            self._actor().notify.remote(**credential(self._token))
        except SchedulerUnavailable:
            pass

    async def ack(self, workload_id, tenant_id=None):
        return await self._call("ack", workload_id, tenant_id)

    async def submit(self, spec, tenant_id, who=None):
        return await self._call("submit", spec, tenant_id, who)

    async def get(self, workload_id, tenant_id=None):
        return await self._call("get", workload_id, tenant_id)

    async def list(self, status=None, tenant_id=None, limit=50, cursor=None):
        return await self._call("list", status, tenant_id, limit, cursor)

    async def cancel(self, workload_id, tenant_id=None, who=None):
        return await self._call("cancel", workload_id, tenant_id, who)

    async def logs(self, workload_id, tenant_id=None):
        return await self._call("logs", workload_id, tenant_id)

    async def health(self):
        return await self._call("health")

    async def explain(self, workload_id, tenant_id=None):
        return await self._call("explain", workload_id, tenant_id)

    async def queue(self, tenant_id=None):
        return await self._call("queue", tenant_id)

    async def tenant_list(self):
        return await self._call("tenant_list")

    async def fragmentation(self):
        return await self._call("fragmentation")

    async def configure_tenants(self, tenants, keys, admins=None, who="admin", policy=None):
        return await self._call("configure_tenants", tenants, keys, admins, who, policy)

    async def metrics_text(self):
        return await self._call("metrics_text")

    async def pipeline_submit(self, body, tenant_id="default", who=None):
        return await self._call("pipeline_submit", body, tenant_id, who)

    async def pipeline_status(self, submission_id, tenant_id=None):
        return await self._call("pipeline_status", submission_id, tenant_id)

    async def pipeline_cancel(self, submission_id, tenant_id=None, who=None):
        return await self._call("pipeline_cancel", submission_id, tenant_id, who)

    async def pipeline_retry(self, submission_id, tenant_id=None, who=None):
        return await self._call("pipeline_retry", submission_id, tenant_id, who)

    async def pipeline_logs(self, submission_id, node, attempt=None, tenant_id=None):
        return await self._call("pipeline_logs", submission_id, node, attempt, tenant_id)

    async def pipeline_lineage(self, submission_id, tenant_id=None):
        return await self._call("pipeline_lineage", submission_id, tenant_id)

    async def workers(self):
        return await self._call("workers")

    async def pipeline_output(self, submission_id, node, name, tenant_id=None, max_bytes=0):
        return await self._call("pipeline_output", submission_id, node, name, tenant_id, max_bytes)

    async def pipeline_items(self, submission_id, node_id, after=-1, limit=100, state=None, tenant_id=None):
        return await self._call("pipeline_items", submission_id, node_id, after, limit, state, tenant_id)

    async def schedule_call(self, op, args, tenant_id=None, who=None):
        return await self._call("schedule_call", op, args, tenant_id, who)

    async def keyring(self):
        return await self._call("keyring")

    async def apply_config_snapshot(self, snapshot):
        return await self._call("apply_config_snapshot", snapshot)

    async def applied_config(self):
        return await self._call("applied_config")

    async def audit_log(self, limit=100, cursor=None):
        return await self._call("audit_log", limit, cursor)

    async def nodes(self, include_ended=True):
        return await self._call("nodes", include_ended)

    async def cordon(self, node_id, who="admin", reason=None):
        return await self._call("cordon", node_id, who, reason)

    async def uncordon(self, node_id, who="admin"):
        return await self._call("uncordon", node_id, who)

    async def drain(self, node_id, who="admin", deadline_s=None, reason=None):
        return await self._call("drain", node_id, who, deadline_s, reason)

    async def gpu_utilization(self):
        return await self._call("gpu_utilization")

    async def infrastructure_health(self):
        return await self._call("infrastructure_health")

    async def scaling_events(self, limit=100, cursor=None, kind=None, pool=None):
        return await self._call("scaling_events", limit, cursor, kind, pool)

    async def resources_available(self):
        return await self._call("resources_available")


def store_access_factory(
    path: str,
    synchronous: str,
    max_queue_size: int,
    policy: Optional[dict],
    *,
    busy_timeout_ms: int = 2000,
    read_busy_timeout_ms: int = 50,
    store_config: Optional[dict] = None,
) -> Callable[[], StoreAccess]:
    """What the replica calls (on first use) to open the store: reads read-only, writes of
    submissions in one transaction. The replica runs on the head, where the file is."""

    def make() -> StoreAccess:
        return StoreAccess(
            path,
            synchronous=synchronous,
            max_queue_size=max_queue_size,
            policy=PolicyConfig.model_validate(policy) if policy else None,
            busy_timeout_ms=busy_timeout_ms,
            read_busy_timeout_ms=read_busy_timeout_ms,
            store_config=store_config,
        )

    return make


def build_api_app(
    admin_key_hashes: list[str],
    max_body_bytes: int,
    capacity: Optional[dict] = None,
    pools: Optional[list] = None,
    *,
    store: Optional[dict] = None,
    max_queue_size: int = 10_000,
    policy: Optional[dict] = None,
    actor_timeout_s: float = 10.0,
    extra_routes: Optional[Callable[[Any], None]] = None,
    rate_limit: Optional[dict] = None,
    control_token: Optional[str] = None,
    control_token_home: Optional[str] = None,
    replicas: int = 1,
    observability: Optional[dict] = None,
    backup: Optional[dict] = None,
):
    """The bound Serve application (deploy with ``serve.run(..., name=APP_NAME)``);
    ``capacity`` is ``orion.capacity`` (``provider: ec2`` mounts the capacity routes).
    ``store`` is ``orion.store`` with its path resolved: the replica then reads and writes
    submissions there (pinned to the head node, which holds the file); without it every route
    asks the scheduler. ``extra_routes(app)`` adds routes (the benchmark's no-op ones).
    ``rate_limit`` is ``orion.api.rate_limit`` (None: its defaults). The control plane's
    credential is ``control_token``, or read in the replica from ``control_token_home`` (the
    ORION_HOME holding ``orion up``'s token file, on the head): Serve keeps an application's
    arguments in Ray's internal KV, which workload code can read, so ``orion up`` passes the
    directory, never the token. ``replicas`` is ``orion.api.replicas``.
    ``observability`` is ``{"tracing": orion.tracing, "logging": orion.logging}``, set up in
    the replica (docs/tracing.md)."""
    from ..autoscaler.capacity_service import capacity_backend

    def token() -> Optional[str]:
        """The credential, read where the replica runs (never carried in the app's arguments)."""
        if control_token is None and control_token_home is not None:
            from pathlib import Path

            from ..control import read_token

            return read_token(Path(control_token_home))
        return control_token

    factory = None
    if store and store.get("path"):
        factory = store_access_factory(
            store["path"],
            store.get("synchronous", "normal"),
            max_queue_size,
            policy,
            busy_timeout_ms=int(store.get("busy_timeout_ms", 2000)),
            read_busy_timeout_ms=int(store.get("loop_busy_timeout_ms", 50)),
            store_config=store if store.get("backend") == "postgres" else None,
        )
    app = build_app(
        KeyRing(admin_key_hashes),
        None,
        max_body_bytes,
        backend_factory=lambda: ActorBackend(timeout_s=actor_timeout_s, control_token=token()),
        capacity_backend=capacity_backend(capacity or {}, pools or []),
        access_factory=factory,
        rate_limit=RateLimit.model_validate(rate_limit or {}),
    )
    app.state.control_token = token  # the serving manager's client takes it from here
    app.state.api_replicas = replicas  # each replica's serving limiter holds 1/replicas of a limit
    if backup is not None and factory is not None:  # /admin/v1/backups: the store file is here
        from ..config import OrionConfig

        app.state.backup_config = OrionConfig.model_validate({"orion": {"store": store, "backup": backup}})
    if extra_routes is not None:
        extra_routes(app)
    options: dict[str, Any] = {"num_cpus": 0}
    # next to the SQLite file, and where the token file is (both on the head node only)
    if factory is not None or (control_token is None and control_token_home is not None):
        options["resources"] = {HEAD_RESOURCE: 0.001}

    @serve.deployment(name="OrionAPI", num_replicas=1, max_ongoing_requests=1000, ray_actor_options=options)
    @serve.ingress(app)
    class OrionAPI:
        """The API replica; routes live on the FastAPI app."""

        def __init__(self) -> None:
            if observability:  # tracing and log format in the replica's own process
                from ..log_format import setup_process
                from ..observability_config import LoggingConfig, TracingConfig

                setup_process(
                    SimpleNamespace(
                        tracing=TracingConfig.model_validate(observability.get("tracing") or {}),
                        logging=LoggingConfig.model_validate(observability.get("logging") or {}),
                    ),
                    service="orion-api",
                )

        def __del__(self) -> None:
            """Serve calls this when it stops the replica (``serve.delete``, a scale-down, ``orion
            down``) before it kills the process: the spans still buffered are written first."""
            from .. import tracing

            tracing.flush()

        async def verify_key(self, key_hash: str) -> dict:
            """A model replica's first hop verifying a key by its hash (the key never travels)."""
            p = await app.state.key_principal(key_hash)
            if p is None:
                return {"valid": False, "tenant_id": None}
            limit = app.state.rate_limiter.limit_of(p.tenant_id) if p.tenant_id else None
            serving = None
            if p.tenant_id:
                from ..serving.limits_gate import limiter_of

                got = limiter_of(app.state).limits_of(p.tenant_id)
                serving = got.model_dump() if got is not None else None
            return {
                "valid": True,
                "tenant_id": p.tenant_id,
                "rate_limit": limit.model_dump() if limit else None,  # enforced at the first hop too
                "serving_limits": serving,  # the tenant's whole limits (the hop keeps its own share)
            }

        async def serving_report(self, samples: list) -> None:
            """Outcomes seen by a first hop, passed on to the serving manager with this
            replica's credential (model replicas hold none)."""
            from ..serving.routes import report_outcomes

            report_outcomes(app, samples)

        async def serving_usage(self, items: list) -> None:
            """Token counts of a first hop's answers, passed on to the serving manager (its usage
            records) with this replica's credential."""
            from ..serving.routes import report_usage

            report_usage(app, items)

    return OrionAPI.options(num_replicas=replicas).bind()
