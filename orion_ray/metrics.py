"""Orion's metrics: Prometheus text for ``/metrics`` and, optionally, Ray's own metrics pipeline.

One ``OrionMetrics`` per process role (the scheduler actor, each API replica). Each instance has its
own ``CollectorRegistry`` (never the global one), so tests and several instances never share state.
The API replica serves its own text merged with the scheduler actor's (``merge_exposition``).

With ``ray_mirror=True`` every value is also recorded through ``ray.util.metrics`` when the process
is a connected Ray worker or driver; Ray exports them on each node's metrics endpoint as
``ray_orion_…`` (counters may carry a ``_total`` suffix there too). ``ray`` is imported only then,
so this module imports without Ray.

Every metric is declared once, in ``METRICS``; both back ends are built from that table.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("orion.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the Content-Type of ``render()``'s text

# Buckets in seconds. Workload times span 10 ms to a day; cycle phases are sub-millisecond to seconds.
DURATION_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
)
PHASE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
PLACEMENT_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNMATCHED_ROUTE = "unmatched"  # route label of requests no route matched (404s, 413s before routing)


@dataclass(frozen=True)
class MetricSpec:
    """One metric. ``name`` is the family name: counters are exposed as ``name + "_total"``."""

    kind: str  # "counter" | "gauge" | "histogram"
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


_MODEL = ("model", "version")  # a served model version's labels
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "counter",
        "orion_workload_transitions",
        "Workload status changes, by the new status.",
        ("tenant", "priority", "status"),
    ),
    MetricSpec("gauge", "orion_workloads", "Workloads currently in each status.", ("tenant", "status")),
    MetricSpec("gauge", "orion_queue_depth", "Queued workloads.", ("tenant", "priority")),
    MetricSpec(
        "histogram",
        "orion_workload_wait_seconds",
        "Time from submission to running.",
        ("tenant",),
        DURATION_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "orion_workload_run_seconds",
        "Time from running to a final status.",
        ("tenant", "status"),
        DURATION_BUCKETS,
    ),
    MetricSpec(
        "histogram",
        "orion_scheduler_cycle_phase_seconds",
        "Duration of each phase of a scheduling cycle.",
        ("phase",),
        PHASE_BUCKETS,
    ),
    MetricSpec("counter", "orion_scheduler_cycles", "Scheduling cycles run."),
    MetricSpec("counter", "orion_scheduler_admitted", "Workloads admitted by scheduling cycles."),
    MetricSpec(
        "gauge",
        "orion_scheduler_last_cycle_timestamp_seconds",
        "Unix time at which the last scheduling cycle ended.",
    ),
    MetricSpec("gauge", "orion_scheduler_up", "1 while the scheduler's loop runs, else 0."),
    MetricSpec("counter", "orion_workload_retries", "Retries after a failed run.", ("tenant",)),
    MetricSpec("counter", "orion_workload_preemptions", "Running workloads preempted.", ("tenant",)),
    MetricSpec(
        "histogram",
        "orion_placement_ready_seconds",
        "Time from placement group creation to readiness.",
        (),
        PLACEMENT_BUCKETS,
    ),
    MetricSpec(
        "counter",
        "orion_placement_readiness_timeouts",
        "Placement groups not ready within the configured timeout.",
    ),
    MetricSpec("gauge", "orion_gpu_free", "Free GPUs (fractions summed), by GPU type.", ("gpu_type",)),
    MetricSpec(
        "gauge",
        "orion_gpu_stranded",
        "Free GPU capacity the expected request mix could not use (fragmentation), by GPU type, in GPUs.",
        ("gpu_type",),
    ),
    MetricSpec(
        "counter",
        "orion_placement_bundles",
        "Bundles placed, by whether Ray's placement matched the engine's choice at the "
        "node and at the GPU level.",
        ("level", "matched"),
    ),
    MetricSpec(
        "gauge",
        "orion_nodes",
        "Nodes in each lifecycle state (terminated and lost: those still remembered).",
        ("status",),
    ),
    MetricSpec(
        "gauge",
        "orion_pool_nodes",
        "Nodes of each worker pool: current and the autoscaler's target.",
        ("pool", "kind"),
    ),
    # pipelines (issue 16; orion_ray/pipelines/ops_metrics.py)
    MetricSpec("gauge", "orion_pipeline_runs", "Pipeline runs in each state.", ("status",)),
    MetricSpec(
        "gauge", "orion_pipeline_nodes", "Nodes of unfinished pipeline runs in each state.", ("state",)
    ),
    MetricSpec("gauge", "orion_pipeline_tasks_queued", "Pipeline node workloads in the scheduler's queue."),
    MetricSpec(
        "histogram",
        "orion_pipeline_node_seconds",
        "A pipeline node's time from its first launch to its end, by its end state.",
        ("status",),
        DURATION_BUCKETS,
    ),
    MetricSpec(
        "counter",
        "orion_pipeline_node_retries",
        "Pipeline node attempts retried, by the failure's kind (user or system).",
        ("kind",),
    ),
    # the single-writer lease (docs/high-availability.md; scheduler/lease_host.py)
    MetricSpec("gauge", "orion_scheduler_lease_held", "1 while this scheduler holds the writer lease."),
    MetricSpec("gauge", "orion_scheduler_lease_token", "The fencing token of this scheduler's lease."),
    MetricSpec(
        "counter", "orion_scheduler_lease_lost", "Times this scheduler lost its lease and stopped acting."
    ),
    MetricSpec(
        "histogram",
        "orion_api_request_seconds",
        "API request latency.",
        ("route", "method", "status"),
        API_BUCKETS,
    ),
    # cost (issue 18; docs/cost.md, orion_ray/scheduler/cost_host.py)
    MetricSpec(
        "gauge",
        "orion_cost_ratio_to_baseline",
        "A tenant's cost so far today over the median of its trailing 7 days (alert above 1.5).",
        ("tenant",),
    ),
    MetricSpec("gauge", "orion_spot_share", "Spot GPU-hours over all batch GPU-hours, trailing 7 days."),
    # the serving response cache (issue 15; docs/serving-routing.md, orion_ray/serving/caching.py)
    MetricSpec("counter", "orion_serving_cache_hits", "Answers served from the cache.", _MODEL),
    MetricSpec("counter", "orion_serving_cache_misses", "Cacheable requests not in the cache.", _MODEL),
    MetricSpec(
        "counter",
        "orion_serving_cache_evictions",
        "Response-cache entries dropped (expired or least recently used).",
        _MODEL,
    ),
    MetricSpec("gauge", "orion_serving_cache_bytes", "Bytes in a version's response cache.", _MODEL),
    # serving limits and token usage (issue 15 item 6; docs/serving-limits.md)
    MetricSpec(
        "counter",
        "orion_serving_prompt_tokens",
        "Prompt tokens of model answers, by calling tenant and model.",
        ("tenant", "model"),
    ),
    MetricSpec(
        "counter",
        "orion_serving_completion_tokens",
        "Completion tokens of model answers, by calling tenant and model.",
        ("tenant", "model"),
    ),
    MetricSpec(
        "counter",
        "orion_serving_limited",
        "Serving requests refused (429) by a tenant's serving limit, by tenant and limit.",
        ("tenant", "limit"),
    ),
)
SPECS: dict[str, MetricSpec] = {s.name: s for s in METRICS}


class OrionMetrics:
    """Orion's metrics, in a registry of their own. All methods are cheap and thread-safe."""

    def __init__(self, ray_mirror: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._prom: dict[str, Any] = {}
        for s in METRICS:
            cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[s.kind]
            extra = {"buckets": s.buckets} if s.kind == "histogram" else {}
            self._prom[s.name] = cls(s.name, s.help, s.labels, registry=self.registry, **extra)
        self._mirror: Optional[_RayMirror] = _RayMirror() if ray_mirror else None
        self._gauge_keys: dict[str, set[tuple[str, ...]]] = {}
        self._gauge_lock = threading.Lock()

    # == workloads =================================================================================
    def transition(self, tenant: str, priority: str, status: str) -> None:
        """A workload moved to ``status`` (call from the scheduler's ``_set``)."""
        self._inc("orion_workload_transitions", 1, (tenant, priority, status))

    def set_workloads(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Current workloads per ``(tenant, status)``; label sets absent from ``counts`` become 0."""
        self._set_all("orion_workloads", counts)

    def set_queue_depth(self, depths: Mapping[tuple[str, str], int]) -> None:
        """Queued workloads per ``(tenant, priority)``; label sets absent from ``depths`` become 0."""
        self._set_all("orion_queue_depth", depths)

    def wait_time(self, tenant: str, seconds: float) -> None:
        """Submission → running, observed when a workload starts running."""
        self._observe("orion_workload_wait_seconds", seconds, (tenant,))

    def run_time(self, tenant: str, status: str, seconds: float) -> None:
        """Running → ``status`` (completed, failed, cancelled, preempted, queued on retry)."""
        self._observe("orion_workload_run_seconds", seconds, (tenant, status))

    def retry(self, tenant: str) -> None:
        """A failed run goes back to the queue for another attempt."""
        self._inc("orion_workload_retries", 1, (tenant,))

    def preemption(self, tenant: str) -> None:
        """A running workload of ``tenant`` was preempted."""
        self._inc("orion_workload_preemptions", 1, (tenant,))

    # == scheduler =================================================================================
    def cycle(self, phases_ms: Mapping[str, float], admitted: int) -> None:
        """One scheduling cycle (``Scheduler.last_cycle``'s ``phases_ms`` and ``admitted``).

        Call it for every cycle, empty ones included: the last-cycle timestamp shows a stalled loop.
        """
        for phase, ms in phases_ms.items():
            self._observe("orion_scheduler_cycle_phase_seconds", ms / 1000.0, (phase,))
        self._inc("orion_scheduler_cycles", 1, ())
        self._inc("orion_scheduler_admitted", admitted, ())
        self._set("orion_scheduler_last_cycle_timestamp_seconds", time.time(), ())

    def scheduler_up(self, up: bool) -> None:
        """Whether the scheduler's loop is running (``orion_scheduler_up`` 1 or 0)."""
        self._set("orion_scheduler_up", 1.0 if up else 0.0, ())

    def lease(self, held: bool, token: int, *, lost: bool = False) -> None:
        """The scheduler's lease: held or not, its fencing token, and a loss (counted)."""
        self._set("orion_scheduler_lease_held", 1.0 if held else 0.0, ())
        self._set("orion_scheduler_lease_token", float(token), ())
        if lost:
            self._inc("orion_scheduler_lease_lost", 1, ())

    def placement_ready(self, seconds: float) -> None:
        """A placement group became ready ``seconds`` after it was requested."""
        self._observe("orion_placement_ready_seconds", seconds, ())

    def readiness_timeout(self) -> None:
        """A placement group was not ready within ``placement_ready_timeout_s``."""
        self._inc("orion_placement_readiness_timeouts", 1, ())

    def set_fragmentation(self, by_type: Mapping[str, Mapping[str, float]]) -> None:
        """Free and stranded GPUs per GPU type (``fragmentation_summary()['by_gpu_type']``)."""
        self._set_all("orion_gpu_free", {(t,): v["free_gpus"] for t, v in by_type.items()})
        self._set_all("orion_gpu_stranded", {(t,): v["stranded_gpus"] for t, v in by_type.items()})

    def set_nodes(self, counts: Mapping[str, int]) -> None:
        """Nodes per lifecycle status (``NodeBook.counts()``)."""
        self._set_all("orion_nodes", {(k,): v for k, v in counts.items()})

    def set_pools(self, pools: list) -> None:
        """Per pool, ``current`` and ``target`` from the autoscaler's last report."""
        values = {}
        for p in pools:
            values[(p["pool"], "current")] = p["current"]
            values[(p["pool"], "target")] = p["target"]
        self._set_all("orion_pool_nodes", values)

    def set_cost(self, ratios: Mapping[str, float], spot_share: Optional[float]) -> None:
        """The cost gauges: ratio to baseline per tenant (tenants without a baseline are left
        out) and the spot share of batch GPU-hours (0 without batch GPU work)."""
        self._set_all("orion_cost_ratio_to_baseline", {(t,): r for t, r in ratios.items()})  # type: ignore[dict-item]
        self._set("orion_spot_share", float(spot_share or 0.0), ())

    def placement_followed(self, level: str, matched: bool, count: int = 1) -> None:
        """``count`` bundles whose ``level`` ("node" or "gpu") did or did not follow the engine."""
        self._inc("orion_placement_bundles", count, (level, "true" if matched else "false"))

    # == serving ===================================================================================
    def serving_tokens(self, tenant: str, model: str, prompt: int, completion: int) -> None:
        """Tokens of one model answer (its ``usage``), for the calling tenant."""
        self._inc("orion_serving_prompt_tokens", prompt, (tenant, model))
        self._inc("orion_serving_completion_tokens", completion, (tenant, model))

    def serving_limited(self, tenant: str, limit: str) -> None:
        """A request refused by ``limit`` (``requests_per_second`` or ``tokens_per_minute``)."""
        self._inc("orion_serving_limited", 1, (tenant, limit))

    # == API =======================================================================================
    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One API request. ``route`` is the route template (``/api/v1/workloads/{workload_id}``)
        or ``UNMATCHED_ROUTE``, never the raw path, so the label set stays bounded."""
        self._observe("orion_api_request_seconds", seconds, (route, method.upper(), str(status)))

    def serving_cache(self, model: str, version: str, kind: str, n: int = 1) -> None:
        """A response-cache event of a model version: ``hit``, ``miss``, ``eviction`` (counted
        ``n`` times) or ``bytes`` (``n`` is the cache's new size)."""
        if kind == "bytes":
            self._set("orion_serving_cache_bytes", float(n), (model, version))
        elif kind in ("hit", "miss", "eviction"):
            name = {"hit": "hits", "miss": "misses", "eviction": "evictions"}[kind]
            self._inc(f"orion_serving_cache_{name}", n, (model, version))

    def pipelines(
        self,
        *,
        runs: Mapping[str, int],
        nodes: Mapping[str, int],
        queued: int,
        retries: Mapping[str, int],
        durations: Iterable[tuple[str, float]],
    ) -> None:
        """The pipeline gauges, and the retries and node durations seen since the last call."""
        self._set_all("orion_pipeline_runs", {(k,): v for k, v in runs.items()})
        self._set_all("orion_pipeline_nodes", {(k,): v for k, v in nodes.items()})
        self._set("orion_pipeline_tasks_queued", float(queued), ())
        for kind, n in retries.items():
            self._inc("orion_pipeline_node_retries", n, (kind,))
        for status, seconds in durations:
            self._observe("orion_pipeline_node_seconds", seconds, (status,))

    # == exposition ================================================================================
    def render(self) -> str:
        """This instance's metrics in the Prometheus text exposition format."""
        return generate_latest(self.registry).decode("utf-8")

    # == internals =================================================================================
    def _inc(self, name: str, value: float, labels: tuple[str, ...]) -> None:
        if value <= 0:
            return
        _child(self._prom[name], labels).inc(value)
        self._mirrored(name, value, labels)

    def _observe(self, name: str, value: float, labels: tuple[str, ...]) -> None:
        value = max(0.0, float(value))  # clock skew must not make a negative duration
        _child(self._prom[name], labels).observe(value)
        self._mirrored(name, value, labels)

    def _set(self, name: str, value: float, labels: tuple[str, ...]) -> None:
        _child(self._prom[name], labels).set(value)
        self._mirrored(name, value, labels)

    def _set_all(self, name: str, values: Mapping[tuple[str, ...], int]) -> None:
        new = {tuple(str(x) for x in k): v for k, v in values.items()}
        with self._gauge_lock:
            for gone in self._gauge_keys.get(name, set()) - set(new):
                self._set(name, 0.0, gone)
            for key, v in new.items():
                self._set(name, float(v), key)
            self._gauge_keys[name] = self._gauge_keys.get(name, set()) | set(new)

    def _mirrored(self, name: str, value: float, labels: tuple[str, ...]) -> None:
        if self._mirror is not None:
            self._mirror.record(SPECS[name], value, labels)


def _child(metric: Any, labels: tuple[str, ...]) -> Any:
    return metric.labels(*[str(v) for v in labels]) if labels else metric


class _RayMirror:
    """Records into ``ray.util.metrics`` while Ray is initialized in this process; never raises.

    Ray metrics live per process, so their objects are shared by all instances of the process.
    """

    _objects: dict[str, Any] = {}

    def record(self, spec: MetricSpec, value: float, labels: tuple[str, ...]) -> None:
        ray = sys.modules.get("ray")  # not imported → not initialized: nothing to mirror to
        if ray is None or not ray.is_initialized():
            return
        try:
            metric = self._objects.get(spec.name)
            if metric is None:
                metric = self._make(spec)
            tags = {k: str(v) for k, v in zip(spec.labels, labels)} or None
            if spec.kind == "counter":
                metric.inc(value, tags=tags)
            elif spec.kind == "gauge":
                metric.set(value, tags=tags)
            else:
                metric.observe(value, tags=tags)
        except Exception as exc:  # metrics must never break scheduling or a request
            log.warning("mirroring %s into Ray failed: %s: %s", spec.name, type(exc).__name__, exc)

    def _make(self, spec: MetricSpec) -> Any:
        from ray.util import metrics as ray_metrics

        if spec.kind == "histogram":
            obj = ray_metrics.Histogram(
                spec.name, spec.help, boundaries=list(spec.buckets), tag_keys=spec.labels
            )
        else:
            cls = ray_metrics.Counter if spec.kind == "counter" else ray_metrics.Gauge
            obj = cls(spec.name, spec.help, tag_keys=spec.labels)
        self._objects[spec.name] = obj
        return obj


def workload_counts(
    workloads: Iterable[Any],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """``(by (tenant, status), queued by (tenant, priority))`` of objects with ``tenant_id``,
    ``status`` and ``priority`` (enums or strings): the arguments of ``set_workloads`` and
    ``set_queue_depth``."""
    by_status: dict[tuple[str, str], int] = {}
    queued: dict[tuple[str, str], int] = {}
    for w in workloads:
        status, priority = _str(w.status), _str(w.priority)
        by_status[(w.tenant_id, status)] = by_status.get((w.tenant_id, status), 0) + 1
        if status == "queued":
            queued[(w.tenant_id, priority)] = queued.get((w.tenant_id, priority), 0) + 1
    return by_status, queued


def _str(v: Any) -> str:
    return str(getattr(v, "value", v))


def route_label(scope: Mapping[str, Any]) -> str:
    """The route template of an ASGI request once routing has run, else ``UNMATCHED_ROUTE``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class ApiMetricsMiddleware:
    """Pure ASGI middleware recording ``api_request`` for every HTTP request.

    ``app.add_middleware(ApiMetricsMiddleware, metrics=m)`` — added last, it is the outermost
    user middleware and also sees 413s of the body-size limit and 500s of unhandled errors.
    """

    def __init__(self, app: Any, metrics: OrionMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.api_request(
                route_label(scope), scope.get("method", "GET"), status, time.perf_counter() - start
            )


def merge_exposition(*texts: str) -> str:
    """Several Prometheus texts as one: families of the same name are merged, and a sample with
    the same name and labels in a later text replaces the earlier one. A family whose type
    conflicts with an earlier one of the same name is dropped."""
    families: dict[str, Any] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            have = families.get(fam.name)
            if have is None:
                families[fam.name] = fam
            elif have.type == fam.type:
                samples = {(s.name, tuple(sorted(s.labels.items()))): s for s in have.samples}
                samples.update({(s.name, tuple(sorted(s.labels.items()))): s for s in fam.samples})
                have.samples = list(samples.values())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(list(families.values())))
    return generate_latest(registry).decode("utf-8")


class _Static:
    """A collector that yields fixed, already-parsed families."""

    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self) -> list:
        return self._families
