"""Ray Serve behind the manager's ``Deployer`` interface: one Serve application per model version."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from ..names import NAMESPACE
from ..serving_specs import DeploymentSpec
from .manager import APP_PREFIX, model_route
from .router_config import balancing_config

GPU_POLICY = "orion_ray.serving.gpu_policy:GpuUtilizationPolicy"


def serve_options(spec: DeploymentSpec) -> dict:
    """Serve deployment options of a spec: replicas or autoscaling, and what a replica holds.

    Tensor parallelism reserves one STRICT_PACK bundle set per replica: a CPU bundle for the
    replica actor and one GPU bundle per shard, where vLLM's Ray executor places its workers.
    """
    opts: dict = {"max_ongoing_requests": spec.max_ongoing_requests}
    if spec.autoscaling is not None:
        a = spec.autoscaling
        opts["autoscaling_config"] = {
            "min_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "initial_replicas": (
                a.initial_replicas if a.initial_replicas is not None else max(a.min_replicas, 1)
            ),
            "target_ongoing_requests": a.target_ongoing_requests,
            "downscale_delay_s": a.downscale_delay,
        }
        if a.target_gpu_utilization is not None:  # Serve's policy, raised by the GPU signal
            opts["autoscaling_config"]["policy"] = {
                "policy_function": GPU_POLICY,
                "policy_kwargs": {"target_gpu_utilization": a.target_gpu_utilization},
            }
        if a.min_replicas == 0 and spec.caching is not None and spec.caching.warm_standby is not None:
            # warm standby's idle_unload_after also delays Serve's last step, 1 → 0
            idle = spec.caching.warm_standby.idle_unload_after
            opts["autoscaling_config"]["downscale_to_zero_delay_s"] = idle
    else:
        opts["num_replicas"] = spec.replicas if spec.replicas is not None else 1
    if spec.tensor_parallel > 1:
        opts["placement_group_bundles"] = [{"CPU": 1}] + [{"GPU": 1}] * spec.tensor_parallel
        opts["placement_group_strategy"] = "STRICT_PACK"
        opts["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 0}
    else:
        opts["ray_actor_options"] = {"num_cpus": spec.cpus_per_replica, "num_gpus": spec.gpus_per_replica}
    routing = balancing_config(spec.load_balancing)  # None: Serve's default (power of two)
    if routing is not None:
        opts["request_router_config"] = routing
    return opts


def code_version(spec: DeploymentSpec, restart_nonce: int) -> str:
    """Serve's version of a deployment: new when what a replica runs changes or on a restart, the
    same for a scale — Serve gives a deployment run without one a random version, so every scale
    (and every step of a rolling release) would replace all of its replicas."""
    what = [spec.engine, spec.engine_args, spec.model_id, spec.version, restart_nonce]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ServeDeployer:
    """Deploys through the Serve API of the Ray cluster this process is connected to.

    ``direct_prefix``: also expose each version over HTTP at ``<prefix>/<deployment id>`` (no
    Orion key check there — for the benchmark's baseline only, never in production).
    """

    def __init__(self, direct_prefix: Optional[str] = None):
        self.direct_prefix = direct_prefix
        self._labels: Optional[Any] = None  # replica_status.NodeLabels, made on first use

    def deploy(self, spec: DeploymentSpec, app: str, restart_nonce: int, front: bool = False) -> None:
        """``front``: this version serves the model's own base URL (``model_route``)."""
        from ray import serve

        from serve_apps.llm.replica import build_replica_app

        engine_args = dict(spec.engine_args)
        if spec.engine == "vllm":
            engine_args.setdefault("tensor_parallel", spec.tensor_parallel)
        bound = build_replica_app(
            spec.engine,
            engine_args,
            spec.model_id,
            spec.version,
            restart_nonce=restart_nonce,
            # ``version`` is only taken with Serve's ``_internal`` flag in Ray 2.60
            options={**serve_options(spec), "_internal": True, "version": code_version(spec, restart_nonce)},
            http="gate" if front or not self.direct_prefix else "direct",
            gpu_metered=spec.autoscaling is not None and spec.autoscaling.target_gpu_utilization is not None,
        )
        route = f"{self.direct_prefix}/{spec.id}" if self.direct_prefix else None
        if front:
            route = model_route(spec.model_id)
        serve._run(bound, name=app, route_prefix=route, _blocking=False)

    def delete(self, app: str) -> None:
        from ray import serve

        serve.delete(app, _blocking=False)

    def statuses(self) -> dict[str, dict]:
        from ray import serve

        from serve_apps.llm.replica import DEPLOYMENT_NAME

        out = {}
        for name, app in serve.status().applications.items():
            if not name.startswith(APP_PREFIX):
                continue
            dep = app.deployments.get(DEPLOYMENT_NAME)
            running = dep.replica_states.get("RUNNING", 0) if dep else 0
            message = app.message or (dep.message if dep else "")
            out[name] = {
                "status": str(getattr(app.status, "value", app.status)),
                "message": message,
                "running": running,
                "alive": sum(dep.replica_states.values()) if dep else 0,
            }
        return out

    def targets(self) -> dict[str, int]:
        """Application → target replicas in Serve's controller (autoscaling decisions show here)."""
        from serve_apps.llm.replica import DEPLOYMENT_NAME

        from .replica_status import targets

        return targets(APP_PREFIX, DEPLOYMENT_NAME)

    def placements(self) -> dict[str, dict[tuple[str, str], int]]:
        """Application → running replicas by the (pool, market) of their nodes (usage records
        are priced on them)."""
        from serve_apps.llm.replica import DEPLOYMENT_NAME

        from .replica_status import NodeLabels, placements

        if self._labels is None:
            self._labels = NodeLabels()
        return placements(APP_PREFIX, DEPLOYMENT_NAME, self._labels)

    def replicas(self, app: str) -> Optional[list[dict]]:
        """The live replicas of an application, with restarts and a health probe."""
        from serve_apps.llm.replica import DEPLOYMENT_NAME

        from .replica_status import replicas

        return replicas(app, DEPLOYMENT_NAME)


class RayKv:
    """The manager's state in the GCS key-value store (it survives the actor's restarts, and the
    GCS's own with fault tolerance on)."""

    KEY = b"orion-serving-state"

    def load(self) -> Optional[dict]:
        from ray.experimental import internal_kv

        raw = internal_kv._internal_kv_get(self.KEY, namespace=NAMESPACE)
        return json.loads(raw) if raw else None

    def save(self, state: dict) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(
            self.KEY, json.dumps(state, default=str).encode(), overwrite=True, namespace=NAMESPACE
        )

    def clear(self) -> None:
        """Forget every deployment and release (``orion down``)."""
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(self.KEY, namespace=NAMESPACE)
